// SPDX-License-Identifier: BSD-3-Clause
// tls_session.cpp — a non-blocking GnuTLS session and the peer's identity (see tls_session.h).
#include "tls_session.h"

#include <arpa/inet.h>
#include <poll.h>
#include <sys/socket.h>

#include <cerrno>
#include <utility>

#include <gnutls/gnutls.h>
#include <gnutls/x509.h>

#include "tls_failure.h"

namespace nbdsnap {

namespace {

gnutls_session_t native(void* session) {
  return static_cast<gnutls_session_t>(session);
}

// The session's transport: the two descriptors, used with MSG_DONTWAIT so no call ever blocks.
struct Transport {
  int recv_fd;
  int send_fd;
  uint64_t received = 0;  // bytes the peer sent (a peer that sent none is no TLS client at all)
};

ssize_t pull(gnutls_transport_ptr_t ptr, void* buffer, size_t length) {
  auto* transport = static_cast<Transport*>(ptr);
  const ssize_t got = ::recv(transport->recv_fd, buffer, length, MSG_DONTWAIT);
  if (got > 0) transport->received += uint64_t(got);
  return got;
}

ssize_t vec_push(gnutls_transport_ptr_t ptr, const giovec_t* iov, int count) {
  auto* transport = static_cast<Transport*>(ptr);
  msghdr message{};
  message.msg_iov = const_cast<iovec*>(iov);
  message.msg_iovlen = size_t(count);
  return ::sendmsg(transport->send_fd, &message, MSG_DONTWAIT | MSG_NOSIGNAL);
}

// GnuTLS asks whether data waits (TLS 1.3 post-handshake messages); it must never block here.
int pull_timeout(gnutls_transport_ptr_t ptr, unsigned int) {
  auto* transport = static_cast<Transport*>(ptr);
  pollfd entry{transport->recv_fd, POLLIN, 0};
  return ::poll(&entry, 1, 0);
}

// The alert that tells a client why its handshake failed: for a PSK, the identity or the key (RFC 8446
// 4.2.11: a binder that does not match is decrypt_error); else GnuTLS's own mapping of its error.
int refusal_alert(int rc, const PskLookup& psk) {
  if (psk.happened) return psk.known ? GNUTLS_A_DECRYPT_ERROR : GNUTLS_A_UNKNOWN_PSK_IDENTITY;
  int level = 0;
  const int alert = gnutls_error_to_alert(rc, &level);
  return alert >= 0 ? alert : GNUTLS_A_HANDSHAKE_FAILURE;
}

// The alert for a peer certificate refused with verification `status` bits.
int certificate_alert(unsigned status) {
  if (status & GNUTLS_CERT_EXPIRED) return GNUTLS_A_CERTIFICATE_EXPIRED;
  if (status & GNUTLS_CERT_REVOKED) return GNUTLS_A_CERTIFICATE_REVOKED;
  if (status & GNUTLS_CERT_SIGNER_NOT_FOUND) return GNUTLS_A_UNKNOWN_CA;
  return GNUTLS_A_BAD_CERTIFICATE;
}

std::string datum_text(const gnutls_datum_t& datum) {
  return std::string(reinterpret_cast<const char*>(datum.data), datum.size);
}

}  // namespace

Status TlsSession::create(std::shared_ptr<const TlsCredentials> credentials, int recv_fd, int send_fd,
                          const std::string& server_name, std::unique_ptr<TlsSession>& out) {
  const bool server = credentials->endpoint() == TlsEndpoint::server;
  std::unique_ptr<TlsSession> session(new TlsSession(std::move(credentials), server_name));
  gnutls_session_t native_session = nullptr;
  if (int rc = gnutls_init(&native_session, (server ? GNUTLS_SERVER : GNUTLS_CLIENT) | GNUTLS_NONBLOCK);
      rc < 0) {
    return {Errc::no_memory, std::string("TLS session: ") + gnutls_strerror(rc)};
  }
  session->session_ = native_session;
  const TlsCredentials& creds = *session->credentials_;
  int rc = gnutls_priority_set(native_session, static_cast<gnutls_priority_t>(creds.priority()));
  if (rc >= 0 && creds.has_x509())
    rc = gnutls_credentials_set(native_session, GNUTLS_CRD_CERTIFICATE, creds.x509());
  if (rc >= 0 && creds.has_psk()) rc = gnutls_credentials_set(native_session, GNUTLS_CRD_PSK, creds.psk());
  if (rc >= 0 && !server && !server_name.empty()) {
    rc = gnutls_server_name_set(native_session, GNUTLS_NAME_DNS, server_name.data(), server_name.size());
  }
  if (rc < 0) return {Errc::invalid_argument, std::string("TLS session: ") + gnutls_strerror(rc)};
  if (server && creds.has_x509()) {
    gnutls_certificate_server_set_request(
        native_session, creds.options().verify_peer ? GNUTLS_CERT_REQUIRE : GNUTLS_CERT_IGNORE);
  }
  // The caller bounds the handshake (nbdsnapd's --handshake-timeout): no second clock here.
  gnutls_handshake_set_timeout(native_session, 0);
  session->recv_fd_ = recv_fd;
  session->send_fd_ = send_fd;
  auto* transport = new Transport{recv_fd, send_fd};
  gnutls_session_set_ptr(native_session, transport);
  gnutls_transport_set_ptr(native_session, transport);
  gnutls_transport_set_pull_function(native_session, pull);
  gnutls_transport_set_vec_push_function(native_session, vec_push);
  gnutls_transport_set_pull_timeout_function(native_session, pull_timeout);
  out = std::move(session);
  return Status::ok();
}

TlsSession::~TlsSession() {
  if (session_ == nullptr) return;
  delete static_cast<Transport*>(gnutls_session_get_ptr(native(session_)));
  gnutls_deinit(native(session_));
}

void TlsSession::record_peer_alert() {
  const char* alert = gnutls_alert_get_name(gnutls_alert_get(native(session_)));
  peer_alert_ = alert != nullptr ? alert : "an unknown alert";
}

// Every refusal carries an alert, so that a client tells it from a connection closed without one: the
// handshaker closing the oldest waiting handshakes in a flood (tls_handshaker.h) or a cut connection, which
// are worth trying again, where a refused key or certificate is not.
void TlsSession::send_refusal_alert(int alert) {
  if (credentials_->endpoint() != TlsEndpoint::server) return;
  (void)gnutls_alert_send(native(session_), GNUTLS_AL_FATAL, gnutls_alert_description_t(alert));
}

TlsSession::Io TlsSession::result_of(int rc, const char* what) {
  if (rc == GNUTLS_E_AGAIN || rc == GNUTLS_E_INTERRUPTED) {
    return gnutls_record_get_direction(native(session_)) == 1 ? Io::want_write : Io::want_read;
  }
  if (rc == GNUTLS_E_FATAL_ALERT_RECEIVED) {
    record_peer_alert();
    error_ = std::string(what) + ": the peer sent the alert '" + peer_alert_ + "'";
    return Io::failed;
  }
  if (rc == GNUTLS_E_PREMATURE_TERMINATION) {
    error_ = std::string(what) + ": the peer closed the connection";
    return Io::closed;
  }
  error_ = std::string(what) + ": " + gnutls_strerror(rc);
  return Io::failed;
}

TlsFailureContext TlsSession::failure_context() const {
  TlsFailureContext context;
  context.server = credentials_->endpoint() == TlsEndpoint::server;
  context.options = &credentials_->options();
  context.client_psk_username = credentials_->client_psk_username();
  context.server_name = server_name_;
  context.psk = psk_lookup_;
  context.alert = peer_alert_;
  context.peer_sent_nothing =
      static_cast<const Transport*>(gnutls_session_get_ptr(native(session_)))->received == 0;
  return context;
}

std::string TlsSession::refused_after_handshake() const {
  return explain_refused_by_server(failure_context());
}

TlsSession::Io TlsSession::handshake() {
  int rc = 0;
  do {
    (void)take_psk_lookup();  // only this session's look-up counts (other sessions run steps on this thread)
    rc = gnutls_handshake(native(session_));
    if (PskLookup lookup = take_psk_lookup(); lookup.happened) psk_lookup_ = std::move(lookup);
  } while (rc < 0 && gnutls_error_is_fatal(rc) == 0 && rc != GNUTLS_E_AGAIN && rc != GNUTLS_E_INTERRUPTED);
  if (rc == GNUTLS_E_AGAIN || rc == GNUTLS_E_INTERRUPTED) return result_of(rc, "TLS handshake");
  if (rc < 0) {
    TlsFailureContext context = failure_context();
    if (rc == GNUTLS_E_FATAL_ALERT_RECEIVED) {
      record_peer_alert();
      context.alert = peer_alert_;
    }
    error_ = "TLS handshake: " + explain_handshake_error(rc, context);
    failure_kind_ = handshake_error_kind(rc, context);
    if (closed_without_alert(rc)) {
      closed_by_server_in_handshake_ = !context.server;
    } else if (rc != GNUTLS_E_FATAL_ALERT_RECEIVED) {
      send_refusal_alert(refusal_alert(rc, context.psk));
    }
    return rc == GNUTLS_E_PREMATURE_TERMINATION ? Io::closed : Io::failed;
  }
  return verify_and_identify() ? Io::ok : Io::failed;
}

// After the handshake: checks the peer's certificate where one is required, and records who the peer is.
bool TlsSession::verify_and_identify() {
  gnutls_session_t s = native(session_);
  const bool server = credentials_->endpoint() == TlsEndpoint::server;
  if (gnutls_auth_get_type(s) == GNUTLS_CRD_PSK) {
    if (server) {
      const char* user = gnutls_psk_server_get_username(s);
      peer_.psk_username = user != nullptr ? user : "";
    }
    return true;  // the key itself authenticated both sides
  }
  if (gnutls_auth_get_type(s) != GNUTLS_CRD_CERTIFICATE) return true;
  if (server && !credentials_->options().verify_peer) return true;  // no client certificate asked for
  unsigned status = 0;
  const int rc = server ? gnutls_certificate_verify_peers2(s, &status)
                        : gnutls_certificate_verify_peers3(
                              s, server_name_.empty() ? nullptr : server_name_.c_str(), &status);
  if (rc == GNUTLS_E_NO_CERTIFICATE_FOUND) {
    error_ = "TLS handshake: " + explain_handshake_error(rc, failure_context());
    failure_kind_ = handshake_error_kind(rc, failure_context());
    send_refusal_alert(GNUTLS_A_CERTIFICATE_REQUIRED);
    return false;
  }
  if (rc < 0 || status != 0) {
    std::string why = rc < 0 ? gnutls_strerror(rc) : "";
    if (rc >= 0) {
      gnutls_datum_t text{};
      if (gnutls_certificate_verification_status_print(status, GNUTLS_CRT_X509, &text, 0) >= 0) {
        why = datum_text(text);
        gnutls_free(text.data);
      }
      why = explain_certificate_status(status, why, failure_context());
    } else {
      why = std::string("the ") + (server ? "client" : "server") +
            "'s certificate could not be verified: " + why;
    }
    error_ = "TLS handshake: " + why;
    failure_kind_ = kTlsCertificateRefused;
    send_refusal_alert(rc < 0 ? GNUTLS_A_BAD_CERTIFICATE : certificate_alert(status));
    return false;
  }
  if (!server) return true;
  unsigned count = 0;
  const gnutls_datum_t* chain = gnutls_certificate_get_peers(s, &count);
  if (chain == nullptr || count == 0) {
    error_ = "TLS handshake: " + explain_handshake_error(GNUTLS_E_NO_CERTIFICATE_FOUND, failure_context());
    failure_kind_ = handshake_error_kind(GNUTLS_E_NO_CERTIFICATE_FOUND, failure_context());
    send_refusal_alert(GNUTLS_A_CERTIFICATE_REQUIRED);
    return false;
  }
  gnutls_x509_crt_t cert = nullptr;
  if (gnutls_x509_crt_init(&cert) < 0) return false;
  if (gnutls_x509_crt_import(cert, &chain[0], GNUTLS_X509_FMT_DER) >= 0) {
    gnutls_datum_t dn{};
    if (gnutls_x509_crt_get_dn3(cert, &dn, 0) >= 0) {
      peer_.dn = datum_text(dn);
      gnutls_free(dn.data);
    }
    for (unsigned i = 0;; ++i) {
      char name[1024];
      size_t size = sizeof(name);
      const int type = gnutls_x509_crt_get_subject_alt_name(cert, i, name, &size, nullptr);
      if (type == GNUTLS_E_REQUESTED_DATA_NOT_AVAILABLE) break;
      if (type == GNUTLS_SAN_IPADDRESS && (size == 4 || size == 16)) {
        char text[64];
        if (inet_ntop(size == 4 ? AF_INET : AF_INET6, name, text, sizeof(text)) != nullptr)
          peer_.sans.push_back(text);
      } else if (type == GNUTLS_SAN_DNSNAME || type == GNUTLS_SAN_RFC822NAME || type == GNUTLS_SAN_URI) {
        peer_.sans.emplace_back(name, size);
      }
    }
  }
  gnutls_x509_crt_deinit(cert);
  return true;
}

TlsSession::Io TlsSession::receive(void* buffer, size_t capacity, size_t& got) {
  got = 0;
  const ssize_t rc = gnutls_record_recv(native(session_), buffer, capacity);
  if (rc > 0) {
    got = size_t(rc);
    return Io::ok;
  }
  if (rc == 0) return Io::closed;
  return result_of(int(rc), "TLS receive");
}

TlsSession::Io TlsSession::send(const void* data, size_t length, size_t& sent) {
  sent = 0;
  const ssize_t rc = gnutls_record_send(native(session_), data, length);
  if (rc > 0) {
    sent = size_t(rc);
    return Io::ok;
  }
  return result_of(int(rc), "TLS send");
}

void TlsSession::bye() {
  if (said_bye_) return;
  said_bye_ = true;
  (void)gnutls_bye(native(session_), GNUTLS_SHUT_WR);  // non-blocking: a full socket just loses it
}

bool TlsSession::has_buffered_input() const {
  return gnutls_record_check_pending(native(session_)) > 0;
}

std::string TlsSession::describe() const {
  char* text = gnutls_session_get_desc(native(session_));
  if (text == nullptr) return "TLS";
  std::string out = text;
  gnutls_free(text);
  return out;
}

}  // namespace nbdsnap
