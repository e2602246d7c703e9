// SPDX-License-Identifier: BSD-3-Clause
// tls_session.h — one GnuTLS session over a connected socket, non-blocking: every call returns at once,
// saying whether it finished or which readiness of the socket it waits for. Callers bring the waiting (Asio
// in nbdsnapd's NBD connections, poll(2) with a deadline in tls_stream.h).
//
// The session reads from recv_fd and writes to send_fd (the same descriptor, or a duplicate of it) with
// MSG_DONTWAIT, so it never blocks whatever the descriptor's flags, and never raises SIGPIPE.
// Thread-safety: none. GnuTLS allows one thread sending while another receives, but a TLS 1.3 key update
// received makes the receiving call send; so callers use a session from one thread at a time (nbdsnapd
// takes a per-connection lock around each call: they are short, as nothing here waits).
// Retrying: after want_read/want_write, call the same function again with the same arguments once the socket
// is ready (GnuTLS requires the same data for a send it has started).
#pragma once

#include <cstddef>
#include <memory>
#include <string>

#include "peer_identity.h"
#include "status.h"
#include "tls_credentials.h"

namespace nbdsnap {

struct TlsFailureContext;  // tls_failure.h

class TlsSession {
 public:
  enum class Io { ok, want_read, want_write, closed, failed };

  // A session with `credentials` (server or client endpoint). server_name (client only): the host the
  // server's certificate must name; empty skips the name check (the CA still must sign it).
  static Status create(std::shared_ptr<const TlsCredentials> credentials, int recv_fd, int send_fd,
                       const std::string& server_name, std::unique_ptr<TlsSession>& out);
  ~TlsSession();
  TlsSession(const TlsSession&) = delete;
  TlsSession& operator=(const TlsSession&) = delete;

  // Runs the TLS handshake on; ok once it finished and the peer passed verification (a server certificate
  // signed by the CA and naming server_name; a client certificate signed by the CA under verify_peer).
  // failed (closed when the peer hung up): error() says why in words an administrator acts on (the PSK file
  // and user, the CA file, the certificate's dates; tls_failure.h), GnuTLS's text in parentheses.
  Io handshake();
  // Decrypted bytes into buffer: ok with got > 0, closed at the peer's close_notify or end of file.
  Io receive(void* buffer, size_t capacity, size_t& got);
  // Encrypts and sends at most one record of data: ok with sent > 0 (less than length is normal).
  Io send(const void* data, size_t length, size_t& sent);
  // Sends close_notify (best effort, once).
  void bye();
  // Decrypted bytes GnuTLS holds that receive() returns without reading the socket.
  bool has_buffered_input() const;

  const std::string& error() const { return error_; }
  // After a failed handshake(): the failure's kind for counting refusals ("with a wrong PSK", tls_failure.h);
  // empty when the peer went before saying anything GnuTLS could judge.
  const std::string& failure_kind() const { return failure_kind_; }
  // Client: the server closed the connection during the handshake without an alert (not a refusal:
  // kTlsClosedByServer in tls_failure.h), which is worth trying again.
  bool closed_by_server_in_handshake() const { return closed_by_server_in_handshake_; }
  // The fatal alert the peer sent ("Certificate is bad"), empty when it sent none.
  const std::string& peer_alert() const { return peer_alert_; }
  // Who the peer authenticated as (after handshake() returned ok).
  const PeerIdentity& peer() const { return peer_; }
  // Client: what to check when the server hung up right after the handshake (TLS 1.3 lets a client finish
  // before the server has checked the client's certificate), as error() says for a refused handshake.
  std::string refused_after_handshake() const;
  // "TLS1.3/AES-256-GCM/PSK" for logs.
  std::string describe() const;

 private:
  TlsSession(std::shared_ptr<const TlsCredentials> credentials, std::string server_name)
      : credentials_(std::move(credentials)), server_name_(std::move(server_name)) {}
  Io result_of(int rc, const char* what);
  bool verify_and_identify();
  TlsFailureContext failure_context() const;
  // Server: tells the client it is refused, with the alert that says why (best effort, never waits).
  void send_refusal_alert(int alert);
  void record_peer_alert();

  std::shared_ptr<const TlsCredentials> credentials_;  // GnuTLS keeps pointers into them
  std::string server_name_;
  void* session_ = nullptr;  // gnutls_session_t
  int recv_fd_ = -1;
  int send_fd_ = -1;
  bool said_bye_ = false;
  std::string error_;
  std::string failure_kind_;
  bool closed_by_server_in_handshake_ = false;
  std::string peer_alert_;
  PeerIdentity peer_;
  PskLookup psk_lookup_;  // server: the identity the client offered (for explaining a failure)
};

}  // namespace nbdsnap
