// SPDX-License-Identifier: BSD-3-Clause
// command_line.h — command-line parsing shared by every command: global options, per-command arguments.
//
// `nbdsnap [GLOBAL OPTIONS] COMMAND [SUBCOMMAND] [ARGS] [OPTIONS]`: global options (--control, --timeout,
// --json, --help) may appear anywhere; the words left over go to the command, which parses them with
// CommandArgs. Every parse error becomes a CliError with ExitCode::usage.
#pragma once

#include <chrono>
#include <string>
#include <utility>
#include <vector>

#include <boost/program_options.hpp>

namespace nbdsnap::cli {

inline constexpr const char* kDefaultControlPath = "/run/nbdsnap/control.sock";
inline constexpr const char* kControlEnvironmentVariable = "NBDSNAP_CONTROL";
inline constexpr double kDefaultTimeoutSeconds = 30;
inline constexpr double kMaximumTimeoutSeconds = 24 * 3600;

struct GlobalOptions {
  // resolved: --control (or --connect), else $NBDSNAP_CONTROL, else kDefaultControlPath; a Unix socket path,
  // or tls://[USER@]HOST:PORT for nbdsnapd's remote control listener
  std::string control;
  std::string tls_certificates;  // --tls-certificates DIR: ca-cert.pem, client-cert.pem, client-key.pem
  std::string tls_psk;           // --tls-psk FILE (username:hexkey; USER@ in the address picks the line)
  // --timeout: the bound of every network wait (connecting, handshakes, each control request beyond what
  // the command waits on the server, each NBD request during a backup).
  std::chrono::milliseconds timeout{static_cast<long long>(kDefaultTimeoutSeconds * 1000)};
  bool json = false;
  bool help = false;
  bool version = false;
};

struct Invocation {
  GlobalOptions global;
  std::vector<std::string> words;  // the command, its subcommand and its arguments, in order
};

// Splits argv into global options and the command's words. environment_control is $NBDSNAP_CONTROL (or null).
Invocation split_command_line(const std::vector<std::string>& arguments, const char* environment_control);

// Arguments of one command: named options (shown in --help) and positional parameters.
class CommandArgs {
 public:
  explicit CommandArgs(std::string synopsis);
  // Add options with options()("name", po::value<...>(), "help")...
  boost::program_options::options_description_easy_init options() { return visible_.add_options(); }
  // A positional parameter; max_count -1 takes all remaining words. Required ones are checked by parse().
  CommandArgs& positional(const std::string& name, int max_count, bool required = true);
  // Parses the words after the command; throws CliError (usage) with the synopsis on errors.
  void parse(const std::vector<std::string>& words);

  bool has(const std::string& name) const { return values_.count(name) > 0 && !values_[name].defaulted(); }
  bool flag(const std::string& name) const { return values_.count(name) > 0; }
  std::string text(const std::string& name) const;
  std::vector<std::string> list(const std::string& name) const;
  // A typed option value (REQUIRES: present or defaulted).
  template <typename T>
  T get(const std::string& name) const {
    return values_[name].as<T>();
  }
  // The size option `name` read with parse_size ("64M"); default_value when absent.
  uint64_t size(const std::string& name, uint64_t default_value = 0) const;
  // The whole-number option `name` (declared as a string), within minimum..maximum; default_value when
  // absent. A bad value is a usage error naming the option, the value and the bounds, in the words nbdsnapd
  // and the filter use (core/tuning.h, parse_bounded_number).
  uint64_t number(const std::string& name, uint64_t minimum, uint64_t maximum,
                  uint64_t default_value = 0) const;
  // "Usage: nbdsnap SYNOPSIS" and the options.
  std::string help() const;
  const std::string& synopsis() const { return synopsis_; }

 private:
  std::string synopsis_;
  boost::program_options::options_description visible_{"Options"};
  std::vector<std::pair<std::string, bool>> positional_names_;  // name, required
  std::vector<int> positional_counts_;
  boost::program_options::variables_map values_;
};

// --timeout SECONDS (a fraction allowed): more than 0, at most kMaximumTimeoutSeconds, else a usage error.
std::chrono::milliseconds parse_timeout_argument(const std::string& text);

// A size given by the user ("256M") or a usage error naming what it is for.
uint64_t parse_size_argument(const std::string& what, const std::string& text);

}  // namespace nbdsnap::cli
