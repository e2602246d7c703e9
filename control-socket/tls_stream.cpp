// SPDX-License-Identifier: BSD-3-Clause
// tls_stream.cpp — poll(2)-bounded waits around a non-blocking TlsSession (see tls_stream.h).
#include "tls_stream.h"

#include <poll.h>

#include <algorithm>
#include <cerrno>
#include <climits>

namespace nbdsnap {

bool TlsStream::wait_for(TlsSession::Io io, SteadyDeadline deadline, const char* what) {
  const short events = io == TlsSession::Io::want_write ? POLLOUT : POLLIN;
  for (;;) {
    const auto left =
        std::chrono::ceil<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) break;
    pollfd entry{fd_, events, 0};
    const int ready = ::poll(&entry, 1, int(std::min<long long>(left.count(), INT_MAX)));
    if (ready > 0) return true;  // also on POLLHUP/POLLERR: the next call says what happened
    if (ready < 0 && errno != EINTR) {
      error_ = std::string(what) + ": poll failed";
      return false;
    }
  }
  timed_out_ = true;
  error_ = std::string(what) + ": timed out";
  return false;
}

bool TlsStream::fail(TlsSession::Io io) {
  error_ = io == TlsSession::Io::closed && session_->error().empty() ? "the peer closed the connection"
                                                                     : session_->error();
  return false;
}

bool TlsStream::handshake(SteadyDeadline deadline) {
  timed_out_ = false;
  for (;;) {
    const TlsSession::Io io = session_->handshake();
    if (io == TlsSession::Io::ok) return true;
    if (io != TlsSession::Io::want_read && io != TlsSession::Io::want_write) return fail(io);
    if (!wait_for(io, deadline, "TLS handshake")) return false;
  }
}

bool TlsStream::write_all(std::string_view data, SteadyDeadline deadline) {
  timed_out_ = false;
  while (!data.empty()) {
    size_t sent = 0;
    const TlsSession::Io io = session_->send(data.data(), data.size(), sent);
    if (io == TlsSession::Io::ok) {
      data.remove_prefix(sent);
      continue;
    }
    if (io != TlsSession::Io::want_read && io != TlsSession::Io::want_write) return fail(io);
    if (!wait_for(io, deadline, "TLS send")) return false;  // retried with the same data, as GnuTLS requires
  }
  return true;
}

ssize_t TlsStream::read_some(char* buffer, size_t capacity, SteadyDeadline deadline) {
  timed_out_ = false;
  for (;;) {
    size_t got = 0;
    const TlsSession::Io io = session_->receive(buffer, capacity, got);
    if (io == TlsSession::Io::ok) return ssize_t(got);
    if (io == TlsSession::Io::closed) return 0;
    if (io == TlsSession::Io::failed) {
      fail(io);
      return -1;
    }
    if (!wait_for(io, deadline, "TLS receive")) return -1;
  }
}

}  // namespace nbdsnap
