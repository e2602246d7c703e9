// SPDX-License-Identifier: BSD-3-Clause
// tls_channel.cpp — GnuTLS calls under the session lock, socket waits through Asio (see tls_channel.h).
#include "tls_channel.h"

namespace nbdsnap {

Status TlsChannel::create(std::shared_ptr<const TlsCredentials> credentials, NbdSocket& socket, int send_fd,
                          std::unique_ptr<TlsChannel>& out) {
  std::unique_ptr<TlsSession> session;
  if (Status s = TlsSession::create(std::move(credentials), socket.native_handle(), send_fd, "", session);
      !s) {
    return s;
  }
  out.reset(new TlsChannel(std::move(session)));
  return Status::ok();
}

asio::awaitable<bool> TlsChannel::wait(NbdSocket& socket, TlsSession::Io io) {
  if (io != TlsSession::Io::want_read && io != TlsSession::Io::want_write) co_return false;
  asio::error_code ec;
  co_await socket.async_wait(
      io == TlsSession::Io::want_write ? asio::socket_base::wait_write : asio::socket_base::wait_read,
      asio::redirect_error(asio::use_awaitable, ec));
  co_return !ec;  // a closed socket ends the wait with an error; a shut-down one makes the next call fail
}

asio::awaitable<bool> TlsChannel::handshake(NbdSocket& socket) {
  for (;;) {
    TlsSession::Io io;
    {
      MutexLock lock(session_mutex_);
      io = session_->handshake();
      if (io == TlsSession::Io::ok) {
        peer_ = session_->peer();
        description_ = session_->describe();
      }
    }
    if (io == TlsSession::Io::ok) co_return true;
    const bool ready = co_await wait(socket, io);
    if (!ready) co_return false;
  }
}

asio::awaitable<size_t> TlsChannel::read_some(NbdSocket& socket, uint8_t* buffer, size_t capacity) {
  for (;;) {
    size_t got = 0;
    TlsSession::Io io;
    {
      MutexLock lock(session_mutex_);
      io = session_->receive(buffer, capacity, got);
    }
    if (io == TlsSession::Io::ok) co_return got;
    const bool ready = co_await wait(socket, io);
    if (!ready) co_return 0;
  }
}

asio::awaitable<bool> TlsChannel::write_all(NbdSocket& socket, const uint8_t* data, size_t length) {
  while (length > 0) {
    size_t sent = 0;
    const TlsSession::Io io = send(data, length, sent);
    if (io == TlsSession::Io::ok) {
      data += sent;
      length -= sent;
      continue;
    }
    const bool ready = co_await wait(socket, io);
    if (!ready) co_return false;
  }
  co_return true;
}

TlsSession::Io TlsChannel::send(const uint8_t* data, size_t length, size_t& sent) {
  MutexLock lock(session_mutex_);
  return session_->send(data, length, sent);
}

void TlsChannel::bye() {
  MutexLock lock(session_mutex_);
  session_->bye();
}

std::string TlsChannel::error() const {
  MutexLock lock(session_mutex_);
  return session_->error();
}

std::string TlsChannel::failure_kind() const {
  MutexLock lock(session_mutex_);
  return session_->failure_kind().empty() ? "closed before the TLS handshake ended"
                                          : session_->failure_kind();
}

}  // namespace nbdsnap
