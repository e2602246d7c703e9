// server_config.cpp — Boost.Program_options description of nbdsnapd's options, checked once here.
#include "server_config.h"

#include <unistd.h>

#include <cstdlib>
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
       "disconnect a client that has not finished the NBD handshake after SECONDS (0: never)");
  // The engine's tuning options, named and bounded as the nbdkit filter's are (core/tuning.h).
  po::options_description tuning("Engine tuning (blksnap v4's parameters where it has them)");
  for (const TuningOption& option : tuning_options()) {
    tuning.add_options()(std::string(option.name).c_str(),
                         po::value<std::string>()->value_name(std::string(option.value_name)),
                         option.help_text().c_str());
  }
  po::options_description all;
  all.add(general).add(serving).add(tuning);
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
  return apply_tuning(vm, config.engine, err);
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
