// SPDX-License-Identifier: BSD-3-Clause
// tls_channel.h — the TLS side of one NBD connection after STARTTLS: its GnuTLS session, the lock every call
// on it takes, and the Asio waits for the socket's readiness.
//
// Threads: the connection's reader (the I/O thread) receives, and whichever thread holds the connection's
// sender role sends (connection.cpp), so two threads may use the session at once. Each call on the session
// takes session_mutex_ (a leaf lock); calls never block (tls_session.h), so the lock is held for one
// record's encryption or decryption at most. Waiting for the socket happens outside the lock, on the I/O
// thread. Every wait ends when the socket is shut down (the handshake deadline, abort), so all are bounded.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include <asio.hpp>

#include "mutex.h"
#include "tls_credentials.h"
#include "tls_session.h"

namespace nbdsnap {

using NbdSocket = asio::generic::stream_protocol::socket;

class TlsChannel {
 public:
  // A server session reading the socket and writing to send_fd (a duplicate of it, see connection.h).
  static Status create(std::shared_ptr<const TlsCredentials> credentials, NbdSocket& socket, int send_fd,
                       std::unique_ptr<TlsChannel>& out);

  // The TLS handshake and the client's verification; false with error() on failure. I/O thread.
  asio::awaitable<bool> handshake(NbdSocket& socket);
  // At least one byte into buffer; 0 at the end of the stream or on failure. I/O thread.
  asio::awaitable<size_t> read_some(NbdSocket& socket, uint8_t* buffer, size_t capacity);
  // All of data; false on failure. I/O thread, while no other thread sends (the handshake phase).
  asio::awaitable<bool> write_all(NbdSocket& socket, const uint8_t* data, size_t length);
  // One non-blocking send (at most one record) for the sender role; any thread. After want_read/want_write
  // the same call must be made again once the socket is ready.
  TlsSession::Io send(const uint8_t* data, size_t length, size_t& sent) EXCLUDES(session_mutex_);
  // close_notify before an orderly close (best effort). REQUIRES: nobody sends any more.
  void bye() EXCLUDES(session_mutex_);

  std::string error() const EXCLUDES(session_mutex_);
  // After a failed handshake: its kind, for counting refusals (tls_session.h).
  std::string failure_kind() const EXCLUDES(session_mutex_);
  const PeerIdentity& peer() const { return peer_; }  // set by handshake()
  const std::string& description() const { return description_; }

 private:
  explicit TlsChannel(std::unique_ptr<TlsSession> session) : session_(std::move(session)) {}
  asio::awaitable<bool> wait(NbdSocket& socket, TlsSession::Io io);

  mutable Mutex session_mutex_;  // a leaf lock: see above
  std::unique_ptr<TlsSession> session_ PT_GUARDED_BY(session_mutex_);
  PeerIdentity peer_;        // I/O thread, written once by handshake()
  std::string description_;  // likewise
};

}  // namespace nbdsnap
