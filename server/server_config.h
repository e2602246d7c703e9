// SPDX-License-Identifier: BSD-3-Clause
// server_config.h — nbdsnapd's configuration: the command line and the optional config file (same keys).
#pragma once

#include <cstdint>
#include <iosfwd>
#include <optional>
#include <string>
#include <vector>

#include "access_policy.h"
#include "control_roles.h"
#include "handshake.h"
#include "log.h"
#include "options.h"
#include "origin_list.h"
#include "tls_credentials.h"

namespace nbdsnap {

// Where NBD clients connect: "unix:PATH" or "tcp:HOST:PORT".
struct ListenAddress {
  enum class Kind { unix_socket, tcp } kind = Kind::unix_socket;
  std::string path;  // unix
  std::string host;  // tcp
  uint16_t port = 0;
};
bool parse_listen_address(const std::string& text, ListenAddress& out, std::string& error);
std::string format_listen_address(const ListenAddress& address);

bool parse_origin_spec(const std::string& text, bool read_only, OriginSpec& out, std::string& error);

// `control-role = ROLE IDENTITY`: a remote control identity and what it may do (control_roles.h).
struct ControlRoleRule {
  ControlRole role = ControlRole::read_only;
  std::string identity;  // peer_identity.h
};
bool parse_control_role_rule(const std::string& text, ControlRoleRule& out, std::string& error);

// TLS, access control and the remote control listener (docs/nbdsnapd.pod, SECURITY).
struct SecurityConfig {
  TlsMode tls = TlsMode::off;                   // NBD STARTTLS
  TlsOptions tls_options;                       // certificates_dir, psk_file, verify_peer (NBD clients)
  AccessPolicy access;                          // allow rules, origins over TCP
  std::optional<ListenAddress> control_listen;  // tcp only: the JSON control protocol over TLS
  std::vector<ControlRoleRule> control_roles;
  std::string control_group;           // the Unix control socket's group (mode 0660); empty: mode 0600
  std::string remote_storage_dir;      // remote control clients' storage: new files here only; empty: none
  unsigned control_max_sessions = 32;  // clients at once on each control socket (a thread each)
  unsigned control_idle_timeout_seconds =
      300;  // remote sessions without a request for this long close; 0: never
  // Remote control clients must finish their TLS handshake within this: --handshake-timeout, except that 0
  // (never, for NBD) means 10 s here, as a peer that never authenticates must not be kept.
  unsigned control_handshake_timeout_seconds = 10;
  unsigned control_max_handshakes = 128;  // remote connections waiting for their TLS handshake at once
  // Said in the log at start: options given that change nothing ("[FILE:LINE: ]--control-role is
  // ignored...").
  std::vector<std::string> warnings;
  // The highest role any rule gives `peer`; none when no rule names it.
  std::optional<ControlRole> control_role_of(const PeerIdentity& peer) const;
};

struct ServerConfig {
  std::vector<OriginSpec> origins;
  std::vector<ListenAddress> listen;
  std::string control_path;  // empty: no control socket
  LogLevel log_level = LogLevel::info;
  unsigned threads =
      4;  // workers kept for engine calls; also the most one origin (its images too) runs at once
  // Workers at most: more start while every worker is busy, so an origin on a stalled disk leaves the others
  // theirs (worker_pool.h). Above threads; --threads-max 0: max(64, 2 x threads).
  unsigned threads_max = 64;
  unsigned io_threads = 2;  // threads running sockets, each connection staying on one (--io-threads 0: CPUs)
  unsigned max_in_flight = 64;                  // requests per connection
  uint64_t max_in_flight_bytes = 256ull << 20;  // request and reply payload per connection
  unsigned max_connections = 1000;          // NBD connections at once, handshaking ones included; 0: no limit
  unsigned handshake_timeout_seconds = 10;  // 0: none
  EngineConfig engine;                      // state_dir and tuning
  bool state_dir_given = false;            // --state-dir given: created only in an existing parent (main.cpp)
  FileCache cache = FileCache::writeback;  // origins' (engine.storage_cache: storage's, set from it)
  SecurityConfig security;
};

enum class ConfigOutcome { run, exit_success, exit_failure };
// Parses argv (and --config FILE). Prints help/version to `out`, errors to `err`.
ConfigOutcome parse_server_config(int argc, const char* const* argv, ServerConfig& config, std::ostream& out,
                                  std::ostream& err);

}  // namespace nbdsnap
