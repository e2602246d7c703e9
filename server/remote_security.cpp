// SPDX-License-Identifier: BSD-3-Clause
// remote_security.cpp — credential stores and the remote control handler (see remote_security.h).
#include "remote_security.h"

#include "log.h"

namespace nbdsnap {

RemoteSecurity::RemoteSecurity(const SecurityConfig& config) : config_(config) {
  if (config.tls != TlsMode::off) nbd_ = std::make_unique<TlsCredentialStore>(TlsEndpoint::server, config.tls_options);
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
  return Status::ok();
}

void RemoteSecurity::reload() {
  for (TlsCredentialStore* store : {nbd_.get(), control_.get()}) {
    if (store == nullptr) continue;
    Status s = store->reload();
    if (s) {
      log_info("TLS credentials reloaded" + std::string(store == nbd_.get() ? " (NBD)" : " (remote control)"));
    } else {
      log_error("TLS credentials not reloaded, the previous ones stay in use: " + s.message());
    }
  }
}

std::string RemoteSecurity::handle_remote_line(Control& control, const std::string& line,
                                               const PeerIdentity& peer) const {
  const std::optional<ControlRole> role = config_.control_role_of(peer);
  if (!role) {
    log_warning("remote control: refused " + peer.describe() + ": no --control-role names it");
    return error_reply({Errc::permission_denied, peer.describe() + " has no control role (nbdsnapd --control-role)"})
        .dump();
  }
  std::string reply = control.handle_line(line, {peer.describe(), *role, config_.remote_storage_dir});
  if (reply.find("\"permission_denied\"") != std::string::npos) {
    log_warning("remote control: refused " + peer.describe() + " (" + control_role_name(*role) + "): " + line.substr(0, 200));
  }
  return reply;
}

Status RemoteSecurity::start_remote_control(ControlSocketServer& server, Control& control) {
  if (!config_.control_listen) return Status::ok();
  const ListenAddress& address = *config_.control_listen;
  server.set_warning_log([](const std::string& message) { log_warning(message); });
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
