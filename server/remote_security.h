// SPDX-License-Identifier: BSD-3-Clause
// remote_security.h — nbdsnapd's TLS credentials (for NBD STARTTLS and for the remote control listener) and
// the remote control listener itself: who may run which control command over TCP.
//
// The two listeners read the same files (--tls-certificates, --tls-psk) with one difference: remote control
// always authenticates its clients (a client certificate signed by ca-cert.pem, or a PSK), while NBD asks for
// client certificates only under --tls-verify-peer. SIGHUP reloads both (Server::set_reload_handler); a file
// that no longer loads leaves the previous credentials in use and is logged.
#pragma once

#include <functional>
#include <memory>
#include <string>

#include "control.h"
#include "control_socket.h"
#include "server_config.h"
#include "tls_credentials.h"

namespace nbdsnap {

// The bounds of a control socket, Unix or remote, from the options (--control-max-sessions,
// --handshake-timeout, --control-idle-timeout), with the options named for the messages.
ControlSocketServer::Limits control_socket_limits(const SecurityConfig& config);

class RemoteSecurity {
 public:
  explicit RemoteSecurity(const SecurityConfig& config);
  // Loads what the configuration asks for; errors name the file. Warns about identity rules (--allow,
  // --control-role) that these options make impossible to match, such as dn: without --tls-verify-peer.
  Status load();
  // Reads the files again (SIGHUP); logs the outcome once, and repeats the warnings of load().
  void reload();
  // The NBD side's credentials (null with --tls off).
  const TlsCredentialStore* nbd_credentials() const { return nbd_.get(); }
  // Starts `server` on --control-listen, if given, serving `control` to identities with a --control-role.
  Status start_remote_control(ControlSocketServer& server, Control& control);
  // Admission of an authenticated remote peer: empty when a --control-role names it, else the refusal's
  // message (naming the identity and the option). A peer without a role never holds a session slot.
  std::string refuse_without_role(const PeerIdentity& peer) const;
  // The reply line for one remote request: refused without a role, else handled within the role. Its image
  // and origin URIs are the ones a client on another machine can open (set_remote_export_uri()).
  std::string handle_remote_line(Control& control, const std::string& line, const PeerIdentity& peer) const;
  // How a remote client's URI of an export is made (Server::remote_export_uri): the Unix socket URIs the
  // local control socket reports name a path on this machine, useless on the client's. Before
  // start_remote_control().
  using RemoteExportUri = std::function<std::string(const std::string& export_name, std::string& hint)>;
  void set_remote_export_uri(RemoteExportUri uri) { remote_export_uri_ = std::move(uri); }

 private:
  void warn_about_unmatchable_rules() const;
  // `reply` with every "uri" made a remote one, with "uri_hint" where there is none.
  std::string with_remote_uris(const std::string& reply) const;

  const SecurityConfig& config_;
  std::unique_ptr<TlsCredentialStore> nbd_;
  std::unique_ptr<TlsCredentialStore> control_;
  RemoteExportUri remote_export_uri_;
};

}  // namespace nbdsnap
