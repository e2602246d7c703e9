// SPDX-License-Identifier: BSD-3-Clause
// tls_failure.h — what a failed TLS handshake means, in words an administrator acts on: GnuTLS's own texts
// ("An illegal parameter has been received", "Error in the pull function") name a protocol event, not the
// file or setting to check. Used by TlsSession for both endpoints; GnuTLS's text stays in parentheses.
#pragma once

#include <string>

#include "tls_credentials.h"

namespace nbdsnap {

// What the explanations name: the endpoint, its files, and what the handshake showed.
struct TlsFailureContext {
  bool server = false;
  const TlsOptions* options = nullptr;
  std::string client_psk_username;  // client: the identity it offered
  std::string server_name;          // client: the host the server's certificate must name
  PskLookup psk;                    // server: the identity the client offered, if any
  std::string alert;                // the peer's alert, when it sent one
  bool peer_sent_nothing = false;   // not a byte came from the peer (server: no ClientHello)
};

// Whether GnuTLS error `rc` is the peer's connection ending without a TLS alert (end of file, reset).
bool closed_without_alert(int rc);
// The explanation of a fatal GnuTLS handshake error `rc` (GnuTLS's text in parentheses).
std::string explain_handshake_error(int rc, const TlsFailureContext& context);
// The same failure's kind, a short phrase that counts refusals in a log line (refusal_log.h): "closed
// before the TLS handshake ended", "with a wrong PSK", ... (kTlsCertificateRefused for
// explain_certificate_status).
std::string handshake_error_kind(int rc, const TlsFailureContext& context);
inline constexpr const char* kTlsCertificateRefused = "with a certificate refused";
// Client: the server closed the connection during the handshake without an alert. nbdsnapd sends an alert
// with every refusal (tls_session.cpp), so this is not about the client's key or certificate: the server
// closed the oldest connections waiting for their handshake to let newer ones in (a flood), or the connection
// was cut. Worth trying again (tls_line_client.cpp does, a bounded number of times).
inline constexpr const char* kTlsClosedByServer =
    "the server closed the connection during the TLS handshake without refusing it (it may be at its limit "
    "of connections waiting for a TLS handshake, nbdsnapd --control-max-handshakes, during a flood of "
    "connections; or the connection was cut): try again";
// Client: the server ended the handshake, or the connection right after it (under TLS 1.3 a client finishes
// its handshake before the server has checked the client's certificate): what to check.
std::string explain_refused_by_server(const TlsFailureContext& context);
// The explanation of a peer certificate refused with GnuTLS verification `status` bits; `gnutls_text` is
// GnuTLS's own description of them.
std::string explain_certificate_status(unsigned status, const std::string& gnutls_text,
                                       const TlsFailureContext& context);

}  // namespace nbdsnap
