// SPDX-License-Identifier: BSD-3-Clause
// nbd_connect_errors.cpp — the server's refusal text and TLS advice for failed NBD connections (see
// nbd_connect_errors.h).
#include "nbd_connect_errors.h"

#include <libnbd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

namespace nbdsnap::cli {

namespace {

constexpr const char* kServerMessage = "server error message: ";  // libnbd's debug line for an option's error

bool user_wants_debug() {
  const char* value = std::getenv("LIBNBD_DEBUG");
  return value != nullptr && std::strcmp(value, "1") == 0;
}

int keep_server_message(void* user_data, const char* context, const char* message) {
  if (user_wants_debug()) std::fprintf(stderr, "libnbd: debug: %s: %s\n", context, message);
  if (const char* found = std::strstr(message, kServerMessage)) {
    *static_cast<std::string*>(user_data) = found + std::strlen(kServerMessage);
  }
  return 0;
}

// A query parameter of an NBD URI (proto.md's URI format, as libnbd reads it), or empty.
std::string query_value(const std::string& uri, const std::string& key) {
  const auto query = uri.find('?');
  if (query == std::string::npos) return {};
  size_t at = query + 1;
  while (at < uri.size()) {
    const size_t end = std::min(uri.find('&', at), uri.size());
    const std::string pair = uri.substr(at, end - at);
    if (pair.starts_with(key + "=")) return pair.substr(key.size() + 1);
    at = end + 1;
  }
  return {};
}

// "HOST:PORT" (or the socket) and the PSK user of an NBD URI.
void authority_of(const std::string& uri, std::string& where, std::string& user) {
  const auto scheme_end = uri.find("://");
  std::string authority = scheme_end == std::string::npos ? "" : uri.substr(scheme_end + 3);
  if (const auto end = authority.find_first_of("/?"); end != std::string::npos) authority.resize(end);
  if (const auto at = authority.rfind('@'); at != std::string::npos) {
    user = authority.substr(0, at);
    authority = authority.substr(at + 1);
  }
  where = authority.empty() ? query_value(uri, "socket") : authority;
}

}  // namespace

void capture_server_messages(nbd_handle* handle, std::string& sink) {
  nbd_debug_callback callback{keep_server_message, &sink, nullptr};
  if (nbd_set_debug_callback(handle, callback) == 0) nbd_set_debug(handle, true);
}

void stop_capturing(nbd_handle* handle) {
  // Debug off first, while our callback still takes libnbd's trace of the call: clearing the callback with
  // debug on would print libnbd's own trace of it on stderr (and break --json's quiet stderr).
  nbd_set_debug(handle, user_wants_debug());
  nbd_clear_debug_callback(handle);
}

std::string explain_connect_failure(const std::string& uri, const std::string& libnbd_error,
                                    const std::string& server_message) {
  std::string where, user;
  authority_of(uri, where, user);
  if (!server_message.empty()) {
    return "the NBD server " + where + " refused: " + server_message + " (libnbd: " + libnbd_error + ")";
  }
  const bool tls_failure = libnbd_error.find("gnutls_") != std::string::npos;
  if (!uri.starts_with("nbds") || !tls_failure) return libnbd_error;
  std::vector<std::string> checks;
  const std::string psk_file = query_value(uri, "tls-psk-file");
  const std::string certificates = query_value(uri, "tls-certificates");
  if (!psk_file.empty()) {
    checks.push_back("that the key of user '" + (user.empty() ? std::string("(your login name)") : user) +
                     "' in " + psk_file + " is the one the server's PSK file holds for that user");
  }
  if (!certificates.empty()) {
    checks.push_back("that " + certificates +
                     "/ca-cert.pem is the CA that signed the server's certificate, and that " + certificates +
                     "/client-cert.pem, if the server asks for one, is signed by the CA the server "
                     "trusts and within its validity dates (certtool -i --infile FILE)");
  }
  if (checks.empty()) checks.push_back("the tls-psk-file= or tls-certificates= of the URI");
  std::string text = "the TLS handshake with the NBD server " + where + " failed: check ";
  for (size_t i = 0; i < checks.size(); ++i) text += (i == 0 ? "" : "; or ") + checks[i];
  return text + " (libnbd: " + libnbd_error + ")";
}

std::string lost_connection_message(nbd_handle* handle, const std::string& uri) {
  if (handle == nullptr || (nbd_aio_is_closed(handle) != 1 && nbd_aio_is_dead(handle) != 1)) return {};
  return "the NBD server of " + uri + " closed the connection (it stopped or dropped the client)";
}

}  // namespace nbdsnap::cli
