// SPDX-License-Identifier: BSD-3-Clause
// tls_failure.cpp — administrator-facing explanations of failed TLS handshakes (see tls_failure.h).
//
// The cases are those seen with GnuTLS 3.7 between nbdsnapd, the nbdsnap CLI, libnbd and QEMU: a wrong PSK
// makes the server fail with "An illegal parameter has been received" (TLS 1.3 checks the PSK binder first)
// and the client see the connection end; an unknown PSK identity leaves the server without credentials in
// common; a client certificate from another CA, expired, or missing fails the server's verification
// (tls_session.cpp verifies after the handshake); a client that refuses the server's certificate simply hangs
// up.
#include "tls_failure.h"

#include <gnutls/gnutls.h>
#include <gnutls/x509.h>

#include <vector>

namespace nbdsnap {

namespace {

std::string quoted(const std::string& text) {
  return "'" + text + "'";
}

std::string in_parentheses(int rc) {
  return std::string(" (GnuTLS: ") + gnutls_strerror(rc) + ")";
}

std::string ca_file(const TlsOptions& options) {
  return options.certificates_dir + "/ca-cert.pem";
}

// Server: what a failure means once the client offered a PSK identity.
std::string psk_explanation(const TlsFailureContext& c) {
  if (!c.psk.known) {
    return "the client offered an unknown PSK identity " + quoted(c.psk.username) + ": " +
           c.options->psk_file + " has no key for it (add one with psktool -u " + c.psk.username +
           " -p FILE, then SIGHUP)";
  }
  return "the client's PSK does not match the key for user " + quoted(c.psk.username) + " in " +
         c.options->psk_file + " (the client's key file must hold the same key for that user)";
}

}  // namespace

// What the server ending the handshake most likely means, with what to check.
std::string explain_refused_by_server(const TlsFailureContext& c) {
  const TlsOptions& o = *c.options;
  std::vector<std::string> checks;
  const char* unknown_identity = gnutls_alert_get_name(GNUTLS_A_UNKNOWN_PSK_IDENTITY);
  if (!o.psk_file.empty() && unknown_identity != nullptr && c.alert == unknown_identity) {
    // The server has no key for that user at all: comparing keys would not help.
    checks.push_back("that the server's --tls-psk file has a key for user " + quoted(c.client_psk_username) +
                     " (it knows no such user; USER@ in the --connect address picks the user in " +
                     o.psk_file + ")");
  } else if (!o.psk_file.empty()) {
    checks.push_back("that the key of user " + quoted(c.client_psk_username) + " in " + o.psk_file +
                     " is the one the server's --tls-psk file holds for that user");
  }
  if (!o.certificates_dir.empty()) {
    checks.push_back("that " + o.certificates_dir +
                     "/client-cert.pem exists, is signed by the CA the server "
                     "trusts (its ca-cert.pem) and is within its validity dates (certtool -i --infile " +
                     o.certificates_dir + "/client-cert.pem)");
  }
  std::string text = "the server refused the TLS handshake";
  if (!c.alert.empty()) text += " with alert " + quoted(c.alert);
  for (size_t i = 0; i < checks.size(); ++i) text += (i == 0 ? ": check " : "; or ") + checks[i];
  return text;
}

namespace {

// Server: the client ended the handshake (it sent an alert or hung up), said by what it sent: nothing at all
// is a port scanner or a TCP health check, not a client that judged this server's certificate.
std::string server_peer_ended_explanation(const TlsFailureContext& c) {
  if (c.alert.empty() && c.peer_sent_nothing) {
    return "the client closed the connection without sending a TLS ClientHello (not a TLS client: a port "
           "scanner or a TCP health check?)";
  }
  std::string text = c.alert.empty()
                         ? "the client closed the connection during the TLS handshake, after its ClientHello"
                         : "the client ended the TLS handshake with alert " + quoted(c.alert);
  if (!c.options->certificates_dir.empty()) {
    text += "; if it refused this server's certificate, check that the client trusts the CA that signed " +
            c.options->certificates_dir +
            "/server-cert.pem and that the certificate is within its validity dates";
  }
  return text;
}

}  // namespace

namespace {

// The cases a server or client meets in a failed handshake, each with its kind and its explanation.
enum class HandshakeCase {
  not_tls,
  psk,
  no_certificate,
  no_common_credentials,
  peer_ended,
  refused,
  closed_by_server,
  other
};

HandshakeCase handshake_case(int rc, const TlsFailureContext& c) {
  const bool peer_ended = closed_without_alert(rc) || rc == GNUTLS_E_FATAL_ALERT_RECEIVED;
  if (rc == GNUTLS_E_UNEXPECTED_PACKET_LENGTH || rc == GNUTLS_E_UNSUPPORTED_VERSION_PACKET ||
      rc == GNUTLS_E_UNEXPECTED_PACKET) {
    return HandshakeCase::not_tls;
  }
  // A client that hung up after offering its PSK identity (it gave up at its --timeout, or was killed) is not
  // a wrong key: the server finds a wrong key itself, from the ClientHello's binder, and fails on that.
  if (c.server && c.psk.happened && closed_without_alert(rc)) return HandshakeCase::peer_ended;
  if (c.server && c.psk.happened) return HandshakeCase::psk;
  if (c.server && (rc == GNUTLS_E_CERTIFICATE_REQUIRED || rc == GNUTLS_E_NO_CERTIFICATE_FOUND))
    return HandshakeCase::no_certificate;
  if (c.server && (rc == GNUTLS_E_INSUFFICIENT_CREDENTIALS || rc == GNUTLS_E_NO_CIPHER_SUITES ||
                   rc == GNUTLS_E_UNKNOWN_CIPHER_SUITE)) {
    return HandshakeCase::no_common_credentials;
  }
  if (c.server && peer_ended) return HandshakeCase::peer_ended;
  // nbdsnapd refuses with an alert (tls_session.cpp): a close without one is not a refusal of the key or
  // certificate but the server making room (its bound on waiting handshakes) or a cut connection.
  if (!c.server && closed_without_alert(rc)) return HandshakeCase::closed_by_server;
  if (!c.server && (peer_ended || rc == GNUTLS_E_RECEIVED_ILLEGAL_PARAMETER ||
                    rc == GNUTLS_E_DECRYPTION_FAILED || rc == GNUTLS_E_INSUFFICIENT_CREDENTIALS)) {
    return HandshakeCase::refused;
  }
  return HandshakeCase::other;
}

}  // namespace

bool closed_without_alert(int rc) {
  return rc == GNUTLS_E_PREMATURE_TERMINATION || rc == GNUTLS_E_PULL_ERROR || rc == GNUTLS_E_PUSH_ERROR;
}

std::string handshake_error_kind(int rc, const TlsFailureContext& c) {
  switch (handshake_case(rc, c)) {
    case HandshakeCase::not_tls:
      return "not speaking TLS";
    case HandshakeCase::psk:
      return c.psk.known ? "with a wrong PSK" : "with an unknown PSK identity";
    case HandshakeCase::no_certificate:
      return "without a certificate of the CA";
    case HandshakeCase::no_common_credentials:
      return "without credentials in common";
    case HandshakeCase::peer_ended:
      return c.alert.empty() && c.peer_sent_nothing ? "closed without a TLS ClientHello"
                                                    : "closed before the TLS handshake ended";
    case HandshakeCase::refused:
      return "refused by the server";
    case HandshakeCase::closed_by_server:
      return "closed by the server during the TLS handshake";
    case HandshakeCase::other:
      break;
  }
  return "with another TLS failure";
}

std::string explain_handshake_error(int rc, const TlsFailureContext& c) {
  const TlsOptions& o = *c.options;
  std::string why;
  switch (handshake_case(rc, c)) {
    case HandshakeCase::not_tls:
      why = std::string("the ") + (c.server ? "client" : "server") +
            " does not speak TLS here: what it sent is not a TLS record (a plain connection, or a scanner?)";
      break;
    case HandshakeCase::psk:
      why = psk_explanation(c);  // the key decides a PSK handshake once the identity is found, or not
      break;
    case HandshakeCase::no_certificate:
      // A GnuTLS client (libnbd, QEMU, the CLI) offers only a certificate signed by a CA the server names:
      // one of another CA is not sent at all, so this is also what a foreign certificate looks like.
      why = "the client sent no certificate signed by " + ca_file(o) +
            " (it has none, or one of another CA, which clients do not offer; such a client often does not "
            "trust this server's certificate either: check that it trusts the CA that signed " +
            o.certificates_dir + "/server-cert.pem)";
      break;
    case HandshakeCase::no_common_credentials:
      why = std::string("the client offered no credentials this server accepts (it has ") +
            (o.psk_file.empty() ? "" : "PSK keys in " + o.psk_file) +
            (!o.psk_file.empty() && !o.certificates_dir.empty() ? " and " : "") +
            (o.certificates_dir.empty() ? "" : "certificates in " + o.certificates_dir) + ")";
      break;
    case HandshakeCase::peer_ended:
      why = server_peer_ended_explanation(c);
      break;
    case HandshakeCase::refused:
      why = explain_refused_by_server(c);
      break;
    case HandshakeCase::closed_by_server:
      why = std::string(kTlsClosedByServer);
      break;
    case HandshakeCase::other:
      why = "the TLS handshake failed";
      break;
  }
  return why + in_parentheses(rc);
}

std::string explain_certificate_status(unsigned status, const std::string& gnutls_text,
                                       const TlsFailureContext& c) {
  const TlsOptions& o = *c.options;
  const std::string whose = c.server ? "the client's certificate" : "the server's certificate";
  std::vector<std::string> reasons;
  if (status & GNUTLS_CERT_SIGNER_NOT_FOUND) reasons.push_back(whose + " is not signed by " + ca_file(o));
  if (status & GNUTLS_CERT_EXPIRED) {
    reasons.push_back(whose + " has expired (check its validity dates: certtool -i --infile CERT)");
  }
  if (status & GNUTLS_CERT_NOT_ACTIVATED) {
    reasons.push_back(whose + " is not valid yet (check its validity dates, and both machines' clocks)");
  }
  if (status & GNUTLS_CERT_REVOKED)
    reasons.push_back(whose + " is revoked by " + o.certificates_dir + "/ca-crl.pem");
  if (status & GNUTLS_CERT_UNEXPECTED_OWNER) {
    reasons.push_back(whose + " does not name " + quoted(c.server_name) +
                      " (connect with a host name or address its certificate lists)");
  }
  if (status & GNUTLS_CERT_INSECURE_ALGORITHM) reasons.push_back(whose + " uses an insecure algorithm");
  std::string text;
  for (const std::string& reason : reasons) text += (text.empty() ? "" : "; ") + reason;
  if (text.empty()) text = whose + " was refused";
  return text + " (GnuTLS: " + gnutls_text + ")";
}

}  // namespace nbdsnap
