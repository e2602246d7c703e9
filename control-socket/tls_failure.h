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
};

// The explanation of a fatal GnuTLS handshake error `rc` (GnuTLS's text in parentheses).
std::string explain_handshake_error(int rc, const TlsFailureContext& context);
// The same failure's kind, a short phrase that counts refusals in a log line (refusal_log.h): "closed
// before the TLS handshake ended", "with a wrong PSK", ... (kTlsCertificateRefused for
// explain_certificate_status).
std::string handshake_error_kind(int rc, const TlsFailureContext& context);
inline constexpr const char* kTlsCertificateRefused = "with a certificate refused";
// Client: the server ended the handshake, or the connection right after it (under TLS 1.3 a client finishes
// its handshake before the server has checked the client's certificate): what to check.
std::string explain_refused_by_server(const TlsFailureContext& context);
// The explanation of a peer certificate refused with GnuTLS verification `status` bits; `gnutls_text` is
// GnuTLS's own description of them.
std::string explain_certificate_status(unsigned status, const std::string& gnutls_text,
                                       const TlsFailureContext& context);

}  // namespace nbdsnap
