// SPDX-License-Identifier: BSD-3-Clause
// tls_handshaker.h — runs the TLS handshakes of a listener's new TCP connections on one thread, so that a
// connection that never authenticates costs a descriptor and a GnuTLS session, not a thread (the remote
// control listener's pre-authentication stage, control_socket.h).
//
// Bounds: at most max_pending connections wait for their handshake; a new one beyond that closes the oldest
// waiting one at once (an idle flood then cannot lock out a real client, whose handshake takes milliseconds).
// Each connection gets `timeout` for its whole handshake and is closed when it passes. Failures, time-outs
// and evictions are refusals a peer can repeat at will: they go to the listener's RefusalLog with the peer's
// HOST:PORT (the first of each kind in full, then counted), whose summaries this thread writes when due.
// Thread-safety: add() and stop() from any thread; the callbacks run on the handshaker's thread.
#pragma once

#include <chrono>
#include <cstddef>
#include <functional>
#include <list>
#include <memory>
#include <string>
#include <thread>

#include "mutex.h"
#include "refusal_log.h"
#include "tls_session.h"
#include "tls_stream.h"

namespace nbdsnap {

class TlsHandshaker {
 public:
  // A connection that completed its handshake and verification: the callee owns fd and stream from now on.
  using Authenticated =
      std::function<void(int fd, const std::string& peer_address, std::unique_ptr<TlsStream>)>;

  // `refusals` outlives the handshaker.
  TlsHandshaker(size_t max_pending, std::chrono::milliseconds timeout, Authenticated authenticated,
                RefusalLog& refusals)
      : max_pending_(max_pending),
        timeout_(timeout),
        authenticated_(std::move(authenticated)),
        refusals_(refusals) {}
  ~TlsHandshaker();  // stop()
  TlsHandshaker(const TlsHandshaker&) = delete;
  TlsHandshaker& operator=(const TlsHandshaker&) = delete;

  // Starts the thread; false with `error` when it cannot.
  bool start(std::string& error);
  // Takes fd (closing it in every case) and runs `session`'s handshake on it. peer_address: "HOST:PORT".
  void add(int fd, const std::string& peer_address, std::unique_ptr<TlsSession> session) EXCLUDES(mutex_);
  // Closes every waiting connection and joins the thread; no callback runs after it returns.
  void stop() EXCLUDES(mutex_);
  // Connections waiting for their handshake now (tests, logs).
  size_t pending() const EXCLUDES(mutex_);

 private:
  struct Pending {
    int fd;
    std::string peer_address;
    std::unique_ptr<TlsSession> session;
    std::chrono::steady_clock::time_point deadline;
    TlsSession::Io waiting_for = TlsSession::Io::want_read;
  };
  void run() EXCLUDES(mutex_);
  // Takes new connections in and closes the oldest beyond max_pending_; false once stopping.
  bool take_incoming(std::list<Pending>& active) EXCLUDES(mutex_);
  // One handshake step for a connection its socket says is ready; true when it is finished (either way).
  bool step(Pending& pending);
  void finished(size_t count) EXCLUDES(mutex_);
  void wake();

  const size_t max_pending_;
  const std::chrono::milliseconds timeout_;
  const Authenticated authenticated_;
  RefusalLog& refusals_;
  int wake_fd_ = -1;  // an eventfd: add() and stop() wake the poll
  std::thread thread_;
  mutable Mutex mutex_;                             // a leaf lock
  std::list<Pending> incoming_ GUARDED_BY(mutex_);  // added, not yet polled by the thread
  size_t count_ GUARDED_BY(mutex_) = 0;             // incoming_ plus those the thread holds
  bool stopping_ GUARDED_BY(mutex_) = false;
};

}  // namespace nbdsnap
