// SPDX-License-Identifier: BSD-3-Clause
// server_config.cpp — Boost.Program_options description of nbdsnapd's options, checked once here.
#include "server_config.h"

#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <set>
#include <thread>

#include <boost/program_options.hpp>

#include "config_file.h"
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
  if (const char* home = std::getenv("HOME"); home && *home)
    return std::string(home) + "/.local/state/nbdsnap";
  return default_runtime_dir() + "/state";
}

po::options_description option_descriptions() {
  po::options_description general("General");
  general.add_options()("help,h", "print this help and exit")("version,V", "print the version and exit")(
      "config", po::value<std::string>()->value_name("FILE"),
      "read options from FILE (same keys as the long options, one `key = value` per line)");
  po::options_description serving("Serving");
  serving.add_options()("origin", po::value<std::vector<std::string>>()->composing()->value_name("NAME=PATH"),
                        "serve file or block device PATH as read-write export NAME (repeatable)")(
      "origin-read-only", po::value<std::vector<std::string>>()->composing()->value_name("NAME=PATH"),
      "serve PATH as read-only export NAME (repeatable)")(
      "listen", po::value<std::vector<std::string>>()->composing()->value_name("ADDRESS"),
      "listen on unix:PATH or tcp:HOST:PORT (repeatable; default unix:RUNTIME_DIR/nbdsnapd.sock)")(
      "control", po::value<std::string>()->value_name("PATH"),
      "serve the JSON control protocol on Unix socket PATH (mode 0600; default RUNTIME_DIR/control.sock, "
      "'none' to disable)")("state-dir", po::value<std::string>()->value_name("DIR"),
                            "directory for CBT state (created, mode 0700, when its parent directory exists)")(
      "log-level", po::value<std::string>()->default_value("info")->value_name("LEVEL"),
      "error, warning, info or debug")("threads",
                                       po::value<std::string>()->default_value("4")->value_name("N"),
                                       "worker threads kept for I/O, and the most requests one export (an "
                                       "origin or an image) runs at once (1..1024)")(
      "threads-max", po::value<std::string>()->default_value("0")->value_name("N"),
      "worker threads at most: more start while every worker is busy (a disk that stopped answering "
      "holds its requests' workers), and end after 10 s idle; above --threads (0: 64, or twice --threads "
      "if more; 0..4096)")(
      "io-threads", po::value<std::string>()->default_value("0")->value_name("N"),
      "threads serving the NBD sockets, each connection staying on one (0: one per CPU, at most 16; 0..256)")(
      "max-in-flight", po::value<std::string>()->default_value("64")->value_name("N"),
      "requests served at once per connection (1..4096)")(
      "max-connections", po::value<std::string>()->default_value("1000")->value_name("N"),
      "NBD clients served at once (0: no limit; 0..1000000); more are refused in the handshake with an "
      "error")(
      "handshake-timeout", po::value<std::string>()->default_value("10")->value_name("SECONDS"),
      "disconnect a client that has not finished the NBD handshake (or the remote control's TLS handshake) "
      "after SECONDS (0: never for NBD, 10 s for remote control; 0..86400)")(
      "cache", po::value<std::string>()->default_value("writeback")->value_name("MODE"),
      "none opens origins and difference storage with O_DIRECT, bypassing the page cache (nbdkit file's "
      "cache=none, QEMU's cache.direct=on); writeback uses the page cache")(
      "reflink", po::value<std::string>()->default_value("auto")->value_name("MODE"),
      "auto preserves old chunks by sharing extents (FICLONERANGE) where an origin file and its difference "
      "storage are on one file system that can (XFS reflink=1, btrfs); off always copies");
  po::options_description security("TLS and access control");
  security.add_options()(
      "tls", po::value<std::string>()->default_value("off")->value_name("MODE"),
      "off, on (clients may use STARTTLS) or require (every option but STARTTLS is refused in clear)")(
      "tls-certificates", po::value<std::string>()->value_name("DIR"),
      "X.509: DIR/ca-cert.pem, server-cert.pem, server-key.pem (as nbdkit and QEMU); SIGHUP reloads them")(
      "tls-psk", po::value<std::string>()->value_name("FILE"), "PSK: username:hexkey lines (psktool)")(
      "tls-verify-peer", po::bool_switch(), "NBD clients must present a certificate signed by ca-cert.pem")(
      "allow", po::value<std::vector<std::string>>()->composing()->value_name("'PATTERN IDENTITY'"),
      "only IDENTITY (psk:NAME, dn:DN, san:NAME, local or *) may open exports matching PATTERN (repeatable; "
      "with none, every client may open every export)")(
      "tcp-origins", po::bool_switch(),
      "serve origins over TCP too (by default TCP serves snapshot images only)")(
      "control-listen", po::value<std::string>()->value_name("tcp:HOST:PORT"),
      "also serve the control protocol on TCP, TLS only (client certificate or PSK required)")(
      "control-role", po::value<std::vector<std::string>>()->composing()->value_name("'ROLE IDENTITY'"),
      "give a remote control identity a role: read-only, operator or admin (repeatable)")(
      "control-max-sessions", po::value<std::string>()->default_value("32")->value_name("N"),
      "control clients served at once on each control socket, the Unix one and --control-listen counted "
      "apart (1..1024); more get a busy error (remote clients still in their TLS handshake are bounded "
      "apart: --control-max-handshakes)")(
      "control-max-handshakes", po::value<std::string>()->default_value("128")->value_name("N"),
      "remote control connections waiting for their TLS handshake at once (1..65536); one more closes the "
      "oldest waiting, so a flood of idle connections cannot lock out a client (which tries again)")(
      "control-idle-timeout", po::value<std::string>()->default_value("300")->value_name("SECONDS"),
      "close a remote control session that sends no request for SECONDS after its last reply (0: never; "
      "0..86400; a client waiting for events is not idle)")(
      "control-group", po::value<std::string>()->value_name("GROUP"),
      "the Unix control socket belongs to GROUP with mode 0660 (default: mode 0600, owner only)")(
      "remote-storage-dir", po::value<std::string>()->value_name("DIR"),
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

// Where each option's value came from, so that an error about a value read from the configuration file
// names the file and the line. A key given on the command line wins over the file (for single values).
struct OptionSources {
  ConfigFile file;                                  // no path: no --config
  std::set<std::string, std::less<>> command_line;  // keys given on the command line

  // "FILE:LINE: " when the value of `key` (the one equal to *value, for repeatable keys) came from the file.
  std::string where(std::string_view key, const std::string* value = nullptr) const {
    if (value == nullptr && command_line.count(key) != 0) return {};
    return file.where(key, value);
  }
};

// Prints one option error as "nbdsnapd: [FILE:LINE: ]MESSAGE" and returns false, for `return fail(...)`.
class OptionErrors {
 public:
  OptionErrors(const OptionSources& sources, std::ostream& err) : sources_(sources), err_(err) {}
  bool fail(std::string_view key, const std::string& message, const std::string* value = nullptr) {
    err_ << "nbdsnapd: " << sources_.where(key, value) << message << "\n";
    return false;
  }
  // A warning for the log at start, "[FILE:LINE: ]MESSAGE" as the errors are.
  std::string warning(std::string_view key, const std::string& message) const {
    return sources_.where(key) + message;
  }

 private:
  const OptionSources& sources_;
  std::ostream& err_;
};

// --io-threads 0: one I/O thread per CPU, so that dozens of busy connections can use every core; more than 16
// would only add threads that wait on the same sockets' readiness.
unsigned default_io_threads() {
  return std::clamp(std::thread::hardware_concurrency(), 1u, 16u);
}

// nbdsnapd's own numeric options, bounded as the tuning options are and refused in the same words.
struct ServerNumberOption {
  const char* name;
  uint64_t minimum;
  uint64_t maximum;
  unsigned ServerConfig::*field;
};
constexpr ServerNumberOption kServerNumberOptions[] = {
    {"threads", 1, 1024, &ServerConfig::threads},
    {"threads-max", 0, 4096, &ServerConfig::threads_max},
    {"io-threads", 0, 256, &ServerConfig::io_threads},
    {"max-in-flight", 1, 4096, &ServerConfig::max_in_flight},
    {"max-connections", 0, 1'000'000, &ServerConfig::max_connections},
    {"handshake-timeout", 0, 86'400, &ServerConfig::handshake_timeout_seconds},
};

bool apply_numbers(const po::variables_map& vm, ServerConfig& config, OptionErrors& errors) {
  for (const ServerNumberOption& option : kServerNumberOptions) {
    uint64_t value = 0;
    Status s = parse_bounded_number(option.name, vm[option.name].as<std::string>(), option.minimum,
                                    option.maximum, kSpelling, value);
    if (!s) return errors.fail(option.name, s.message());
    config.*option.field = static_cast<unsigned>(value);
  }
  return true;
}

// Reads the tuning options given and runs the engine's sanitize step on the result.
bool apply_tuning(const po::variables_map& vm, EngineConfig& engine, OptionErrors& errors) {
  for (const TuningOption& option : tuning_options()) {
    const std::string key(option.name);
    if (!vm.count(key)) continue;
    if (Status s = parse_tuning_option(option, vm[key].as<std::string>(), engine, kSpelling); !s) {
      return errors.fail(key, s.message());
    }
  }
  std::string_view wrong;
  if (Status s = sanitize_tuning(engine, kSpelling, &wrong); !s) return errors.fail(wrong, s.message());
  return true;
}

// Options that only the remote control listener uses, given without it: accepted (a configuration shared by
// servers with and without the listener stays usable) but said at start, as they change nothing.
void warn_remote_only_options(const po::variables_map& vm, const OptionErrors& errors,
                              std::vector<std::string>& warnings) {
  for (const char* key :
       {"control-role", "control-idle-timeout", "control-max-handshakes", "remote-storage-dir"}) {
    if (vm.count(key) == 0 || vm[key].defaulted()) continue;
    warnings.push_back(errors.warning(key, "--" + std::string(key) +
                                               " is ignored: it only applies with --control-listen "
                                               "(the remote control listener)"));
  }
}

// The security options, checked together: TLS needs credentials, the remote control listener needs TLS
// credentials that authenticate clients, rules must parse.
bool apply_security(const po::variables_map& vm, SecurityConfig& security, OptionErrors& errors) {
  std::string error;
  const std::string mode = vm["tls"].as<std::string>();
  if (mode == "off") {
    security.tls = TlsMode::off;
  } else if (mode == "on") {
    security.tls = TlsMode::on;
  } else if (mode == "require") {
    security.tls = TlsMode::require;
  } else {
    return errors.fail("tls", "--tls " + mode + ": must be off, on or require");
  }
  if (vm.count("tls-certificates"))
    security.tls_options.certificates_dir = vm["tls-certificates"].as<std::string>();
  if (vm.count("tls-psk")) security.tls_options.psk_file = vm["tls-psk"].as<std::string>();
  security.tls_options.verify_peer = vm["tls-verify-peer"].as<bool>();
  security.access.tcp_origins = vm["tcp-origins"].as<bool>();
  if (vm.count("allow")) {
    for (const auto& text : vm["allow"].as<std::vector<std::string>>()) {
      AccessRule rule;
      if (!parse_access_rule(text, rule, error)) {
        return errors.fail("allow", "--allow '" + text + "': " + error, &text);
      }
      security.access.rules.push_back(rule);
    }
  }
  if (vm.count("control-role")) {
    for (const auto& text : vm["control-role"].as<std::vector<std::string>>()) {
      ControlRoleRule rule;
      if (!parse_control_role_rule(text, rule, error)) {
        return errors.fail("control-role", "--control-role '" + text + "': " + error, &text);
      }
      security.control_roles.push_back(rule);
    }
  }
  if (vm.count("control-group")) security.control_group = vm["control-group"].as<std::string>();
  if (vm.count("remote-storage-dir")) {
    const std::string dir = vm["remote-storage-dir"].as<std::string>();
    std::error_code ec;
    if (dir.empty() || dir.front() != '/' || !std::filesystem::is_directory(dir, ec)) {
      return errors.fail(
          "remote-storage-dir",
          "--remote-storage-dir " + dir + ": must be an existing directory, given as an absolute path");
    }
    security.remote_storage_dir = dir;
  }
  if (vm.count("control-listen")) {
    ListenAddress address;
    const std::string text = vm["control-listen"].as<std::string>();
    if (!parse_listen_address(text, address, error) || address.kind != ListenAddress::Kind::tcp) {
      return errors.fail(
          "control-listen",
          "--control-listen " + text + ": expected tcp:HOST:PORT (the Unix control socket is --control)");
    }
    security.control_listen = address;
  }
  const bool credentials = security.tls_options.enabled();
  if ((security.tls != TlsMode::off || security.control_listen) && !credentials) {
    const char* key = security.tls != TlsMode::off ? "tls" : "control-listen";
    return errors.fail(key,
                       (security.tls != TlsMode::off ? "--tls " + mode : std::string("--control-listen")) +
                           " needs credentials: --tls-certificates DIR or --tls-psk FILE");
  }
  if (credentials && security.tls == TlsMode::off && !security.control_listen) {
    return errors.fail(
        vm.count("tls-psk") ? "tls-psk" : "tls-certificates",
        "TLS credentials are given but unused: add --tls on or --tls require (or --control-listen)");
  }
  if (security.tls_options.verify_peer && security.tls_options.certificates_dir.empty()) {
    return errors.fail("tls-verify-peer",
                       "--tls-verify-peer needs --tls-certificates DIR (its ca-cert.pem signs the clients)");
  }
  uint64_t sessions = 0;
  if (Status s = parse_bounded_number("control-max-sessions", vm["control-max-sessions"].as<std::string>(), 1,
                                      1024, kSpelling, sessions);
      !s) {
    return errors.fail("control-max-sessions", s.message());
  }
  security.control_max_sessions = static_cast<unsigned>(sessions);
  uint64_t idle = 0;
  if (Status s = parse_bounded_number("control-idle-timeout", vm["control-idle-timeout"].as<std::string>(), 0,
                                      86'400, kSpelling, idle);
      !s) {
    return errors.fail("control-idle-timeout", s.message());
  }
  security.control_idle_timeout_seconds = static_cast<unsigned>(idle);
  uint64_t handshakes = 0;
  if (Status s =
          parse_bounded_number("control-max-handshakes", vm["control-max-handshakes"].as<std::string>(), 1,
                               65'536, kSpelling, handshakes);
      !s) {
    return errors.fail("control-max-handshakes", s.message());
  }
  security.control_max_handshakes = static_cast<unsigned>(handshakes);
  if (!security.control_listen) warn_remote_only_options(vm, errors, security.warnings);
  if (security.control_listen && security.control_roles.empty()) {
    return errors.fail("control-listen",
                       "--control-listen needs at least one --control-role: nobody could use it");
  }
  return true;
}

bool apply(const po::variables_map& vm, ServerConfig& config, OptionErrors& errors) {
  std::string error;
  for (const char* key : {"origin", "origin-read-only"}) {
    if (!vm.count(key)) continue;
    for (const auto& text : vm[key].as<std::vector<std::string>>()) {
      OriginSpec spec;
      if (!parse_origin_spec(text, std::string(key) == "origin-read-only", spec, error)) {
        return errors.fail(key, "--" + std::string(key) + " " + text + ": " + error, &text);
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
      return errors.fail("listen", "--listen " + text + ": " + error, &text);
    }
    config.listen.push_back(address);
  }
  config.control_path = vm.count("control") ? vm["control"].as<std::string>() : runtime + "/control.sock";
  if (config.control_path == "none") config.control_path.clear();
  config.state_dir_given = vm.count("state-dir") != 0;
  config.engine.state_dir = config.state_dir_given ? vm["state-dir"].as<std::string>() : default_state_dir();
  if (!parse_log_level(vm["log-level"].as<std::string>(), config.log_level)) {
    return errors.fail("log-level", "--log-level " + vm["log-level"].as<std::string>() +
                                        ": must be error, warning, info or debug");
  }
  if (!apply_numbers(vm, config, errors)) return false;
  if (config.io_threads == 0) config.io_threads = default_io_threads();
  if (config.threads_max == 0) {
    config.threads_max = std::max(64u, 2 * config.threads);
  } else if (config.threads_max <= config.threads) {
    return errors.fail("threads-max", "--threads-max " + std::to_string(config.threads_max) +
                                          ": must be above --threads (" + std::to_string(config.threads) +
                                          "), so that an origin whose disk stopped answering leaves workers "
                                          "to the others");
  }
  config.security.control_handshake_timeout_seconds =
      config.handshake_timeout_seconds > 0 ? config.handshake_timeout_seconds : 10;
  if (Status s = parse_file_cache(vm["cache"].as<std::string>(), "--cache", config.cache); !s) {
    return errors.fail("cache", s.message());
  }
  config.engine.storage_cache = config.cache;
  if (Status s = parse_reflink_mode(vm["reflink"].as<std::string>(), "--reflink", config.engine.reflink);
      !s) {
    return errors.fail("reflink", s.message());
  }
  return apply_tuning(vm, config.engine, errors) && apply_security(vm, config.security, errors);
}

// What the configuration file may set: every option but --config, --help and --version (switches as
// `tcp-origins = true`).
ConfigKeyKind config_key_kind(const po::options_description& options, std::string_view key) {
  const po::option_description* option = options.find_nothrow(std::string(key), false);
  if (option == nullptr || key == "config" || key == "help" || key == "version")
    return ConfigKeyKind::unknown;
  return option->semantic()->is_composing() ? ConfigKeyKind::repeatable : ConfigKeyKind::single;
}

// Reads the configuration file into vm after the command line (whose single values win), one entry at a time
// so that a value Program_options refuses is reported with its line.
bool store_config_file(const std::string& path, const po::options_description& options,
                       OptionSources& sources, po::variables_map& vm, std::ostream& err) {
  const auto kind_of = [&options](std::string_view key) { return config_key_kind(options, key); };
  if (Status s = read_config_file(path, kind_of, sources.file); !s) {
    err << "nbdsnapd: " << s.message() << "\n";
    return false;
  }
  po::parsed_options parsed(&options);
  for (const ConfigFileEntry& entry : sources.file.entries) {
    po::option option(entry.key, {entry.value});
    option.original_tokens = {entry.key, entry.value};
    parsed.options.push_back(option);
  }
  try {
    po::store(parsed, vm);
  } catch (const po::error_with_option_name& e) {
    // Program_options names the option ("--threads"): find its line.
    std::string key = e.get_option_name();
    key.erase(0, key.find_first_not_of('-'));
    err << "nbdsnapd: " << sources.file.where(key) << e.what() << "\n";
    return false;
  } catch (const po::error& e) {
    err << "nbdsnapd: " << path << ": " << e.what() << "\n";
    return false;
  }
  return true;
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
  // An IPv6 host in brackets, as --listen takes it (tcp:[::1]:10809): the form a user can give back.
  const bool ipv6 = address.host.find(':') != std::string::npos;
  return "tcp:" + (ipv6 ? "[" + address.host + "]" : address.host) + ":" + std::to_string(address.port);
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
  while (!out.identity.empty() && (out.identity.back() == ' ' || out.identity.back() == '\t'))
    out.identity.pop_back();
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
  OptionSources sources;
  try {
    const po::parsed_options parsed = po::command_line_parser(argc, argv).options(options).run();
    for (const po::option& option : parsed.options) sources.command_line.insert(option.string_key);
    po::store(parsed, vm);
  } catch (const po::error& e) {
    err << "nbdsnapd: " << e.what() << "\nTry 'nbdsnapd --help'.\n";
    return ConfigOutcome::exit_failure;
  }
  if (vm.count("config") && !store_config_file(vm["config"].as<std::string>(), options, sources, vm, err)) {
    return ConfigOutcome::exit_failure;
  }
  if (vm.count("help")) {
    out << "Usage: nbdsnapd [OPTIONS]\n"
           "Serves block devices and their snapshots over NBD: origin NAME read-write, image NAME@SNAPSHOT "
           "read-only,\nwith CBT as qemu:dirty-bitmap contexts; snapshots are managed through the control "
           "socket (nbdsnap CLI).\n\n"
        << options
        << "\nExample (as root: NBD on /run/nbdsnap/nbdsnapd.sock, control on /run/nbdsnap/control.sock):\n"
           "  nbdsnapd --origin disk0=/var/lib/vm/disk0.raw\n";
    return ConfigOutcome::exit_success;
  }
  if (vm.count("version")) {
    out << "nbdsnapd " << NBDSNAP_VERSION << "\n";
    return ConfigOutcome::exit_success;
  }
  OptionErrors errors(sources, err);
  return apply(vm, config, errors) ? ConfigOutcome::run : ConfigOutcome::exit_failure;
}

}  // namespace nbdsnap
