// SPDX-License-Identifier: BSD-3-Clause
// remote_security.cpp — credential stores and the remote control handler (see remote_security.h).
#include "remote_security.h"

#include <algorithm>
#include <string>
#include <vector>

#include "log.h"

namespace nbdsnap {

namespace {

// Why an identity rule can never name a client under these options; empty when it can. NBD clients are asked
// for a certificate only under --tls-verify-peer (without it GnuTLS never receives one, so no DN or SAN is
// known); remote control clients always are when --tls-certificates is given (remote_security.h).
// psk_usernames: the keys of the PSK file as loaded (null when none is).
std::string why_never_matches(const std::string& identity, bool tls_enabled, bool certificates_asked,
                              const std::string& certificate_option, const TlsOptions& options,
                              const std::vector<std::string>* psk_usernames) {
  const bool certificate_rule = identity.starts_with("dn:") || identity.starts_with("san:");
  const bool psk_rule = identity.starts_with("psk:");
  if ((certificate_rule || psk_rule) && !tls_enabled) return "TLS is off (--tls on or --tls require)";
  if (certificate_rule && !certificates_asked)
    return "no client certificate is asked for (" + certificate_option + ")";
  if (psk_rule && options.psk_file.empty()) return "no PSK file is loaded (--tls-psk FILE)";
  // A typo, or a key not added yet: the file decides who has a PSK identity.
  const std::string name = psk_rule ? identity.substr(4) : std::string();
  if (psk_rule && psk_usernames != nullptr &&
      !std::binary_search(psk_usernames->begin(), psk_usernames->end(), name)) {
    return "the PSK file " + options.psk_file + " has no key for '" + name + "' (add one with psktool -u " +
           name + " -p " + options.psk_file + ", then SIGHUP)";
  }
  return {};
}

}  // namespace

ControlSocketServer::Limits control_socket_limits(const SecurityConfig& config) {
  ControlSocketServer::Limits limits;
  limits.max_sessions = config.control_max_sessions;
  limits.max_sessions_option = "nbdsnapd --control-max-sessions";
  limits.handshake_timeout = std::chrono::seconds(config.control_handshake_timeout_seconds);
  limits.max_handshakes = config.control_max_handshakes;
  limits.idle_timeout = std::chrono::seconds(config.control_idle_timeout_seconds);
  limits.idle_timeout_option = "--control-idle-timeout";
  return limits;
}

RemoteSecurity::RemoteSecurity(const SecurityConfig& config) : config_(config) {
  if (config.tls != TlsMode::off)
    nbd_ = std::make_unique<TlsCredentialStore>(TlsEndpoint::server, config.tls_options);
  if (config.control_listen) {
    TlsOptions options = config.tls_options;
    options.verify_peer = !options.certificates_dir.empty();  // as libvirt: remote control is never anonymous
    control_ = std::make_unique<TlsCredentialStore>(TlsEndpoint::server, options);
  }
}

Status RemoteSecurity::load() {
  for (TlsCredentialStore* store : {nbd_.get(), control_.get()}) {
    if (store == nullptr) continue;
    if (Status s = store->load(); !s) return {s.code(), "TLS credentials: " + s.message()};
  }
  warn_about_unmatchable_rules();
  return Status::ok();
}

void RemoteSecurity::warn_about_unmatchable_rules() const {
  // A warning, not a refusal: rules only ever allow, so a rule that cannot match denies (fails closed), and a
  // configuration shared by servers with different TLS options stays usable. QEMU, by contrast, skips its
  // tls-authz check altogether when verify-peer is off, which would let anyone in; nbdkit has no such rules.
  const TlsOptions& options = config_.tls_options;
  // Both stores read the same PSK file: the one in use by either names the keys.
  const TlsCredentialStore* store = nbd_ ? nbd_.get() : control_.get();
  const auto credentials = store != nullptr ? store->current() : nullptr;
  const std::vector<std::string>* psk_usernames =
      credentials && credentials->has_psk() ? &credentials->psk_usernames() : nullptr;
  for (const AccessRule& rule : config_.access.rules) {
    const std::string why = why_never_matches(rule.identity, config_.tls != TlsMode::off, options.verify_peer,
                                              "add --tls-verify-peer", options, psk_usernames);
    if (!why.empty()) {
      log_warning("--allow '" + rule.pattern + " " + rule.identity + "' can never match: " + why);
    }
  }
  if (!config_.control_listen) return;
  for (const ControlRoleRule& rule : config_.control_roles) {
    const std::string why = why_never_matches(rule.identity, true, !options.certificates_dir.empty(),
                                              "add --tls-certificates DIR", options, psk_usernames);
    if (!why.empty()) {
      log_warning("--control-role '" + std::string(control_role_name(rule.role)) + " " + rule.identity +
                  "' can never match: " + why);
    }
  }
}

void RemoteSecurity::reload() {
  // The NBD and remote control stores read the same files: a file that no longer loads fails both the same
  // way, and is logged once (a message only one of them has, such as the CA the control side needs, still
  // shows).
  std::vector<std::string> reloaded, errors;
  for (TlsCredentialStore* store : {nbd_.get(), control_.get()}) {
    if (store == nullptr) continue;
    if (Status s = store->reload(); !s) {
      if (std::find(errors.begin(), errors.end(), s.message()) == errors.end()) errors.push_back(s.message());
    } else {
      reloaded.push_back(store == nbd_.get() ? "NBD" : "remote control");
    }
  }
  if (!reloaded.empty()) {
    log_info("TLS credentials reloaded (" + reloaded.front() +
             (reloaded.size() > 1 ? " and " + reloaded.back() : "") + ")");
  }
  for (const std::string& error : errors) {
    log_error("TLS credentials not reloaded, the previous ones stay in use: " + error);
  }
  warn_about_unmatchable_rules();
}

std::string RemoteSecurity::refuse_without_role(const PeerIdentity& peer) const {
  if (config_.control_role_of(peer)) return {};
  return peer.describe() +
         " has no control role: nbdsnapd gives remote control only to identities a --control-role names";
}

std::string RemoteSecurity::handle_remote_line(Control& control, const std::string& line,
                                               const PeerIdentity& peer) const {
  const std::optional<ControlRole> role = config_.control_role_of(peer);
  if (!role) {  // refused at admission already (refuse_without_role); kept as the handler's own rule
    log_warning("remote control: refused " + peer.describe() + ": no --control-role names it");
    return error_reply(
               {Errc::permission_denied, peer.describe() + " has no control role (nbdsnapd --control-role)"})
        .dump();
  }
  std::string reply = control.handle_line(line, {peer.describe(), *role, config_.remote_storage_dir});
  if (remote_export_uri_ && reply.find("\"uri\":") != std::string::npos) reply = with_remote_uris(reply);
  if (reply.find("\"permission_denied\"") != std::string::npos) {
    log_warning("remote control: refused " + peer.describe() + " (" + control_role_name(*role) +
                "): " + line.substr(0, 200));
  }
  return reply;
}

std::string RemoteSecurity::with_remote_uris(const std::string& reply) const {
  nlohmann::json value = nlohmann::json::parse(reply, nullptr, /*allow_exceptions=*/false);
  if (value.is_discarded()) return reply;
  // Images carry "export", origins their "name": both are export names.
  const std::function<void(nlohmann::json&)> visit = [&](nlohmann::json& node) {
    if (node.is_object() && node.contains("uri")) {
      const auto name = node.contains("export") ? node["export"] : node.value("name", nlohmann::json());
      if (name.is_string()) {
        std::string hint;
        node["uri"] = remote_export_uri_(name.get<std::string>(), hint);
        if (!hint.empty()) node["uri_hint"] = hint;
      }
    }
    if (node.is_structured()) {
      for (auto& child : node) visit(child);
    }
  };
  visit(value);
  return value.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

Status RemoteSecurity::start_remote_control(ControlSocketServer& server, Control& control) {
  if (!config_.control_listen) return Status::ok();
  const ListenAddress& address = *config_.control_listen;
  server.set_warning_log([](const std::string& message) { log_warning(message); });
  server.set_limits(control_socket_limits(config_));
  server.set_peer_admission([this](const PeerIdentity& peer) { return refuse_without_role(peer); });
  std::string error;
  const bool started = server.start_tls(
      address.host, address.port, *control_,
      [this, &control](const std::string& line, const PeerIdentity& peer) {
        return handle_remote_line(control, line, peer);
      },
      error);
  if (!started) return {Errc::io_error, "remote control " + format_listen_address(address) + ": " + error};
  log_info("remote control (TLS) on " + format_listen_address(address));
  return Status::ok();
}

}  // namespace nbdsnap
