// SPDX-License-Identifier: BSD-3-Clause
// tls_stream.h — blocking use of a TlsSession with a deadline on every wait (poll(2) on the descriptor), for
// threads that serve or use one connection each: the control server's TLS clients and the CLI's TLS client.
//
// Every call returns by its deadline: false (or -1) with timed_out() set when it passed. A descriptor shut
// down by another thread (the control server's stop()) wakes a wait at once: the call then fails.
// Thread-safety: one thread at a time.
#pragma once

#include <chrono>
#include <cstddef>
#include <memory>
#include <string>
#include <string_view>

#include <sys/types.h>

#include "tls_session.h"

namespace nbdsnap {

using SteadyDeadline = std::chrono::steady_clock::time_point;

class TlsStream {
 public:
  // fd is the session's descriptor; it stays the caller's to close.
  TlsStream(std::unique_ptr<TlsSession> session, int fd) : session_(std::move(session)), fd_(fd) {}

  // The TLS handshake and the peer's verification.
  bool handshake(SteadyDeadline deadline);
  bool write_all(std::string_view data, SteadyDeadline deadline);
  // Some bytes (> 0), 0 at the end of the stream, -1 on failure or when the deadline passed.
  ssize_t read_some(char* buffer, size_t capacity, SteadyDeadline deadline);
  // close_notify, best effort.
  void bye() { session_->bye(); }

  // Whether the last call failed because its deadline passed (a later call may still succeed: a receive that
  // timed out with nothing read leaves the session as it was).
  bool timed_out() const { return timed_out_; }
  // What failed (timeouts included).
  const std::string& error() const { return error_; }
  const TlsSession& session() const { return *session_; }

 private:
  // Waits until the socket is ready for what `io` asks; false when the deadline passed.
  bool wait_for(TlsSession::Io io, SteadyDeadline deadline, const char* what);
  bool fail(TlsSession::Io io);

  std::unique_ptr<TlsSession> session_;
  int fd_;
  bool timed_out_ = false;
  std::string error_;
};

}  // namespace nbdsnap
