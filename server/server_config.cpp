// SPDX-License-Identifier: BSD-3-Clause
// server_config.cpp — Boost.Program_options description of nbdsnapd's options, checked once here.
#include "server_config.h"

#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>

#include <boost/program_options.hpp>

#include "export_name.h"
#include "tuning.h"

namespace po = boost::program_options;

namespace nbdsnap {

namespace {

std::string default_runtime_dir() {
  if (geteuid() == 0) return "/run/nbdsnap";
  if (const char* dir = std::getenv("XDG_RUNTIME_DIR"); dir && *dir) return std::string(dir) + "/nbdsnap";
  return "/tmp/nbdsnap-" + std::to_string(geteuid());
}

std::string default_state_dir() {
  if (geteuid() == 0) return "/var/lib/nbdsnap";
  if (const char* dir = std::getenv("XDG_STATE_HOME"); dir && *dir) return std::string(dir) + "/nbdsnap";
  if (const char* home = std::getenv("HOME"); home && *home) return std::string(home) + "/.local/state/nbdsnap";
  return default_runtime_dir() + "/state";
}

po::options_description option_descriptions() {
  po::options_description general("General");
  general.add_options()
      ("help,h", "print this help and exit")
      ("version,V", "print the version and exit")
      ("config", po::value<std::string>()->value_name("FILE"),
       "read options from FILE (same keys as the long options, one `key = value` per line)");
  po::options_description serving("Serving");
  serving.add_options()
      ("origin", po::value<std::vector<std::string>>()->composing()->value_name("NAME=PATH"),
       "serve file or block device PATH as read-write export NAME (repeatable)")
      ("origin-read-only", po::value<std::vector<std::string>>()->composing()->value_name("NAME=PATH"),
       "serve PATH as read-only export NAME (repeatable)")
      ("listen", po::value<std::vector<std::string>>()->composing()->value_name("ADDRESS"),
       "listen on unix:PATH or tcp:HOST:PORT (repeatable; default unix:RUNTIME_DIR/nbdsnapd.sock)")
      ("control", po::value<std::string>()->value_name("PATH"),
       "serve the JSON control protocol on Unix socket PATH (mode 0600; default RUNTIME_DIR/control.sock, "
       "'none' to disable)")
      ("state-dir", po::value<std::string>()->value_name("DIR"),
       "directory for CBT state (created if missing)")
      ("log-level", po::value<std::string>()->default_value("info")->value_name("LEVEL"),
       "error, warning, info or debug")
      ("threads", po::value<unsigned>()->default_value(4)->value_name("N"), "worker threads for I/O")
      ("max-in-flight", po::value<unsigned>()->default_value(64)->value_name("N"),
       "requests served at once per connection")
      ("max-connections", po::value<unsigned>()->default_value(1000)->value_name("N"),
       "NBD clients served at once (0: no limit); more are refused in the handshake with an error")
      ("handshake-timeout", po::value<unsigned>()->default_value(10)->value_name("SECONDS"),
       "disconnect a client that has not finished the NBD handshake after SECONDS (0: never)")
      ("cache", po::value<std::string>()->default_value("writeback")->value_name("MODE"),
       "none opens origins and difference storage with O_DIRECT, bypassing the page cache (nbdkit file's "
       "cache=none, QEMU's cache.direct=on); writeback uses the page cache");
  po::options_description security("TLS and access control");
  security.add_options()
      ("tls", po::value<std::string>()->default_value("off")->value_name("MODE"),
       "off, on (clients may use STARTTLS) or require (every option but STARTTLS is refused in clear)")
      ("tls-certificates", po::value<std::string>()->value_name("DIR"),
       "X.509: DIR/ca-cert.pem, server-cert.pem, server-key.pem (as nbdkit and QEMU); SIGHUP reloads them")
      ("tls-psk", po::value<std::string>()->value_name("FILE"), "PSK: username:hexkey lines (psktool)")
      ("tls-verify-peer", po::bool_switch(), "NBD clients must present a certificate signed by ca-cert.pem")
      ("allow", po::value<std::vector<std::string>>()->composing()->value_name("'PATTERN IDENTITY'"),
       "only IDENTITY (psk:NAME, dn:DN, san:NAME, local or *) may open exports matching PATTERN (repeatable; "
       "with none, every client may open every export)")
      ("tcp-origins", po::bool_switch(), "serve origins over TCP too (by default TCP serves snapshot images only)")
      ("control-listen", po::value<std::string>()->value_name("tcp:HOST:PORT"),
       "also serve the control protocol on TCP, TLS only (client certificate or PSK required)")
      ("control-role", po::value<std::vector<std::string>>()->composing()->value_name("'ROLE IDENTITY'"),
       "give a remote control identity a role: read-only, operator or admin (repeatable)")
      ("control-group", po::value<std::string>()->value_name("GROUP"),
       "the Unix control socket belongs to GROUP with mode 0660 (default: mode 0600, owner only)")
      ("remote-storage-dir", po::value<std::string>()->value_name("DIR"),
       "remote control clients may name difference storage only as new files in DIR (default: not at all)");
  // The engine's tuning options, named and bounded as the nbdkit filter's are (core/tuning.h).
  po::options_description tuning("Engine tuning (blksnap v4's parameters where it has them)");
  for (const TuningOption& option : tuning_options()) {
    tuning.add_options()(std::string(option.name).c_str(),
                         po::value<std::string>()->value_name(std::string(option.value_name)),
                         option.help_text().c_str());
  }
  po::options_description all;
  all.add(general).add(serving).add(security).add(tuning);
  return all;
}

const OptionSpelling kSpelling{"--", " "};

// Reads the tuning options given and runs the engine's sanitize step on the result.
bool apply_tuning(const po::variables_map& vm, EngineConfig& engine, std::ostream& err) {
  for (const TuningOption& option : tuning_options()) {
    const std::string key(option.name);
    if (!vm.count(key)) continue;
    if (Status s = parse_tuning_option(option, vm[key].as<std::string>(), engine, kSpelling); !s) {
      err << "nbdsnapd: " << s.message() << "\n";
      return false;
    }
  }
  if (Status s = sanitize_tuning(engine, kSpelling); !s) {
    err << "nbdsnapd: " << s.message() << "\n";
    return false;
  }
  return true;
}

// The security options, checked together: TLS needs credentials, the remote control listener needs TLS
// credentials that authenticate clients, rules must parse.
bool apply_security(const po::variables_map& vm, SecurityConfig& security, std::ostream& err) {
  std::string error;
  const std::string mode = vm["tls"].as<std::string>();
  if (mode == "off") {
    security.tls = TlsMode::off;
  } else if (mode == "on") {
    security.tls = TlsMode::on;
  } else if (mode == "require") {
    security.tls = TlsMode::require;
  } else {
    err << "nbdsnapd: --tls must be off, on or require\n";
    return false;
  }
  if (vm.count("tls-certificates")) security.tls_options.certificates_dir = vm["tls-certificates"].as<std::string>();
  if (vm.count("tls-psk")) security.tls_options.psk_file = vm["tls-psk"].as<std::string>();
  security.tls_options.verify_peer = vm["tls-verify-peer"].as<bool>();
  security.access.tcp_origins = vm["tcp-origins"].as<bool>();
  if (vm.count("allow")) {
    for (const auto& text : vm["allow"].as<std::vector<std::string>>()) {
      AccessRule rule;
      if (!parse_access_rule(text, rule, error)) {
        err << "nbdsnapd: --allow '" << text << "': " << error << "\n";
        return false;
      }
      security.access.rules.push_back(rule);
    }
  }
  if (vm.count("control-role")) {
    for (const auto& text : vm["control-role"].as<std::vector<std::string>>()) {
      ControlRoleRule rule;
      if (!parse_control_role_rule(text, rule, error)) {
        err << "nbdsnapd: --control-role '" << text << "': " << error << "\n";
        return false;
      }
      security.control_roles.push_back(rule);
    }
  }
  if (vm.count("control-group")) security.control_group = vm["control-group"].as<std::string>();
  if (vm.count("remote-storage-dir")) {
    const std::string dir = vm["remote-storage-dir"].as<std::string>();
    std::error_code ec;
    if (dir.empty() || dir.front() != '/' || !std::filesystem::is_directory(dir, ec)) {
      err << "nbdsnapd: --remote-storage-dir " << dir << ": must be an existing directory, given as an absolute path\n";
      return false;
    }
    security.remote_storage_dir = dir;
  }
  if (vm.count("control-listen")) {
    ListenAddress address;
    const std::string text = vm["control-listen"].as<std::string>();
    if (!parse_listen_address(text, address, error) || address.kind != ListenAddress::Kind::tcp) {
      err << "nbdsnapd: --control-listen " << text << ": expected tcp:HOST:PORT (the Unix control socket is --control)\n";
      return false;
    }
    security.control_listen = address;
  }
  const bool credentials = security.tls_options.enabled();
  if ((security.tls != TlsMode::off || security.control_listen) && !credentials) {
    err << "nbdsnapd: " << (security.tls != TlsMode::off ? "--tls " + mode : std::string("--control-listen"))
        << " needs credentials: --tls-certificates DIR or --tls-psk FILE\n";
    return false;
  }
  if (credentials && security.tls == TlsMode::off && !security.control_listen) {
    err << "nbdsnapd: TLS credentials are given but unused: add --tls on or --tls require (or --control-listen)\n";
    return false;
  }
  if (security.tls_options.verify_peer && security.tls_options.certificates_dir.empty()) {
    err << "nbdsnapd: --tls-verify-peer needs --tls-certificates DIR (its ca-cert.pem signs the clients)\n";
    return false;
  }
  if (security.control_listen && security.control_roles.empty()) {
    err << "nbdsnapd: --control-listen needs at least one --control-role: nobody could use it\n";
    return false;
  }
  return true;
}

bool apply(const po::variables_map& vm, ServerConfig& config, std::ostream& err) {
  std::string error;
  for (const char* key : {"origin", "origin-read-only"}) {
    if (!vm.count(key)) continue;
    for (const auto& text : vm[key].as<std::vector<std::string>>()) {
      OriginSpec spec;
      if (!parse_origin_spec(text, std::string(key) == "origin-read-only", spec, error)) {
        err << "nbdsnapd: --" << key << " " << text << ": " << error << "\n";
        return false;
      }
      config.origins.push_back(spec);
    }
  }
  const std::string runtime = default_runtime_dir();
  std::vector<std::string> listen{"unix:" + runtime + "/nbdsnapd.sock"};
  if (vm.count("listen")) listen = vm["listen"].as<std::vector<std::string>>();
  for (const auto& text : listen) {
    ListenAddress address;
    if (!parse_listen_address(text, address, error)) {
      err << "nbdsnapd: --listen " << text << ": " << error << "\n";
      return false;
    }
    config.listen.push_back(address);
  }
  config.control_path = vm.count("control") ? vm["control"].as<std::string>() : runtime + "/control.sock";
  if (config.control_path == "none") config.control_path.clear();
  config.engine.state_dir = vm.count("state-dir") ? vm["state-dir"].as<std::string>() : default_state_dir();
  if (!parse_log_level(vm["log-level"].as<std::string>(), config.log_level)) {
    err << "nbdsnapd: --log-level must be error, warning, info or debug\n";
    return false;
  }
  config.threads = vm["threads"].as<unsigned>();
  config.max_in_flight = vm["max-in-flight"].as<unsigned>();
  config.max_connections = vm["max-connections"].as<unsigned>();
  config.handshake_timeout_seconds = vm["handshake-timeout"].as<unsigned>();
  // (Program_options reads "-1" into an unsigned as 4294967295: the upper bounds catch it.)
  if (config.max_connections > 1'000'000 || config.handshake_timeout_seconds > 86'400) {
    err << "nbdsnapd: --max-connections must be 0..1000000 and --handshake-timeout 0..86400\n";
    return false;
  }
  if (config.threads < 1 || config.threads > 1024 || config.max_in_flight < 1 || config.max_in_flight > 4096) {
    err << "nbdsnapd: --threads must be 1..1024 and --max-in-flight 1..4096\n";
    return false;
  }
  if (Status s = parse_file_cache(vm["cache"].as<std::string>(), "--cache", config.cache); !s) {
    err << "nbdsnapd: " << s.message() << "\n";
    return false;
  }
  config.engine.storage_cache = config.cache;
  return apply_tuning(vm, config.engine, err) && apply_security(vm, config.security, err);
}

}  // namespace

bool parse_listen_address(const std::string& text, ListenAddress& out, std::string& error) {
  if (text.starts_with("unix:")) {
    out.kind = ListenAddress::Kind::unix_socket;
    out.path = text.substr(5);
    if (out.path.empty() || out.path.size() >= 108) {
      error = "a Unix socket path must be 1..107 bytes";
      return false;
    }
    return true;
  }
  if (text.starts_with("tcp:")) {
    const std::string rest = text.substr(4);
    const auto colon = rest.rfind(':');
    if (colon == std::string::npos || colon == 0) {
      error = "expected tcp:HOST:PORT";
      return false;
    }
    out.kind = ListenAddress::Kind::tcp;
    out.host = rest.substr(0, colon);
    if (out.host.size() > 2 && out.host.front() == '[' && out.host.back() == ']') {
      out.host = out.host.substr(1, out.host.size() - 2);
    }
    char* end = nullptr;
    const unsigned long port = std::strtoul(rest.c_str() + colon + 1, &end, 10);
    if (*end != '\0' || port > 65535 || colon + 1 == rest.size()) {
      error = "bad port";
      return false;
    }
    out.port = uint16_t(port);
    return true;
  }
  error = "expected unix:PATH or tcp:HOST:PORT";
  return false;
}

std::string format_listen_address(const ListenAddress& address) {
  if (address.kind == ListenAddress::Kind::unix_socket) return "unix:" + address.path;
  return "tcp:" + address.host + ":" + std::to_string(address.port);
}

bool parse_origin_spec(const std::string& text, bool read_only, OriginSpec& out, std::string& error) {
  const auto eq = text.find('=');
  if (eq == std::string::npos || eq + 1 == text.size()) {
    error = "expected NAME=PATH";
    return false;
  }
  out.name = text.substr(0, eq);
  out.path = text.substr(eq + 1);
  out.read_only = read_only;
  Status status = check_object_name("origin", out.name);
  if (!status.is_ok()) error = status.message();
  return status.is_ok();
}

bool parse_control_role_rule(const std::string& text, ControlRoleRule& out, std::string& error) {
  const auto blank = text.find_first_of(" \t");
  const auto identity = blank == std::string::npos ? std::string::npos : text.find_first_not_of(" \t", blank);
  const auto role = parse_control_role(text.substr(0, blank));
  if (!role || identity == std::string::npos) {
    error = "expected 'ROLE IDENTITY' with ROLE read-only, operator or admin (e.g. 'operator psk:agent1')";
    return false;
  }
  out.role = *role;
  out.identity = text.substr(identity);
  while (!out.identity.empty() && (out.identity.back() == ' ' || out.identity.back() == '\t')) out.identity.pop_back();
  return valid_identity_pattern(out.identity, error);
}

std::optional<ControlRole> SecurityConfig::control_role_of(const PeerIdentity& peer) const {
  std::optional<ControlRole> best;
  for (const ControlRoleRule& rule : control_roles) {
    if (identity_matches(rule.identity, peer) && (!best || rule.role > *best)) best = rule.role;
  }
  return best;
}

ConfigOutcome parse_server_config(int argc, const char* const* argv, ServerConfig& config, std::ostream& out,
                                  std::ostream& err) {
  const po::options_description options = option_descriptions();
  po::variables_map vm;
  try {
    po::store(po::command_line_parser(argc, argv).options(options).run(), vm);
    if (vm.count("config")) {
      const std::string path = vm["config"].as<std::string>();
      std::ifstream file(path);
      if (!file) {
        err << "nbdsnapd: cannot open config file " << path << "\n";
        return ConfigOutcome::exit_failure;
      }
      po::store(po::parse_config_file(file, options), vm);  // the command line wins for single values
    }
    po::notify(vm);
  } catch (const po::error& e) {
    err << "nbdsnapd: " << e.what() << "\nTry 'nbdsnapd --help'.\n";
    return ConfigOutcome::exit_failure;
  }
  if (vm.count("help")) {
    out << "Usage: nbdsnapd [OPTIONS]\n"
           "Serves block devices and their snapshots over NBD: origin NAME read-write, image NAME@SNAPSHOT "
           "read-only,\nwith CBT as qemu:dirty-bitmap contexts; snapshots are managed through the control "
           "socket (nbdsnap CLI).\n\n"
        << options << "\nExample (as root: NBD on /run/nbdsnap/nbdsnapd.sock, control on /run/nbdsnap/control.sock):\n"
                      "  nbdsnapd --origin disk0=/var/lib/vm/disk0.raw\n";
    return ConfigOutcome::exit_success;
  }
  if (vm.count("version")) {
    out << "nbdsnapd " << NBDSNAP_VERSION << "\n";
    return ConfigOutcome::exit_success;
  }
  return apply(vm, config, err) ? ConfigOutcome::run : ConfigOutcome::exit_failure;
}

}  // namespace nbdsnap
