// SPDX-License-Identifier: BSD-3-Clause
// command_line.cpp — Boost.Program_options glue: global options, per-command arguments, usage errors.
#include "command_line.h"

#include <cmath>

#include "exit_codes.h"
#include "tuning.h"
#include "units.h"

namespace po = boost::program_options;

namespace nbdsnap::cli {

namespace {

// Seconds (a fraction allowed) as milliseconds, rounded up so a timeout never ends early.
std::chrono::milliseconds timeout_milliseconds(double seconds) {
  return std::chrono::milliseconds(static_cast<long long>(std::ceil(seconds * 1000)));
}

}  // namespace

Invocation split_command_line(const std::vector<std::string>& arguments, const char* environment_control) {
  po::options_description global;
  global.add_options()("control", po::value<std::string>())("connect", po::value<std::string>())(
      "tls-certificates", po::value<std::string>())("tls-psk", po::value<std::string>())(
      "timeout", po::value<std::string>())("json", po::bool_switch())("help,h", po::bool_switch())(
      "version", po::bool_switch())("words", po::value<std::vector<std::string>>());
  po::positional_options_description positional;
  positional.add("words", -1);
  Invocation invocation;
  try {
    po::parsed_options parsed =
        po::command_line_parser(arguments).options(global).positional(positional).allow_unregistered().run();
    po::variables_map values;
    po::store(parsed, values);
    invocation.words = po::collect_unrecognized(parsed.options, po::include_positional);
    invocation.global.json = values["json"].as<bool>();
    invocation.global.help = values["help"].as<bool>();
    invocation.global.version = values["version"].as<bool>();
    if (values.count("timeout"))
      invocation.global.timeout = parse_timeout_argument(values["timeout"].as<std::string>());
    if (values.count("control") && values.count("connect"))
      usage_error("give --control or --connect, not both");
    if (values.count("tls-certificates"))
      invocation.global.tls_certificates = values["tls-certificates"].as<std::string>();
    if (values.count("tls-psk")) invocation.global.tls_psk = values["tls-psk"].as<std::string>();
    if (values.count("control") || values.count("connect")) {
      invocation.global.control = values[values.count("control") ? "control" : "connect"].as<std::string>();
    } else if (environment_control != nullptr && *environment_control != '\0') {
      invocation.global.control = environment_control;
    } else {
      invocation.global.control = kDefaultControlPath;
    }
  } catch (const po::error& e) {
    usage_error(e.what());
  }
  return invocation;
}

CommandArgs::CommandArgs(std::string synopsis) : synopsis_(std::move(synopsis)) {}

CommandArgs& CommandArgs::positional(const std::string& name, int max_count, bool required) {
  positional_names_.emplace_back(name, required);
  positional_counts_.push_back(max_count);
  return *this;
}

void CommandArgs::parse(const std::vector<std::string>& words) {
  po::options_description all;
  all.add(visible_);
  po::options_description hidden;
  po::positional_options_description positional;
  for (size_t i = 0; i < positional_names_.size(); ++i) {
    const std::string& name = positional_names_[i].first;
    if (positional_counts_[i] == 1) {
      hidden.add_options()(name.c_str(), po::value<std::string>());
    } else {
      hidden.add_options()(name.c_str(), po::value<std::vector<std::string>>());
    }
    positional.add(name.c_str(), positional_counts_[i]);
  }
  all.add(hidden);
  try {
    po::store(po::command_line_parser(words).options(all).positional(positional).run(), values_);
    po::notify(values_);
  } catch (const po::error& e) {
    usage_error(std::string(e.what()) + "\nUsage: nbdsnap " + synopsis_);
  }
  for (const auto& [name, required] : positional_names_) {
    if (required && values_.count(name) == 0) {
      usage_error("missing " + name + "\nUsage: nbdsnap " + synopsis_);
    }
  }
}

std::string CommandArgs::text(const std::string& name) const {
  return values_.count(name) ? values_[name].as<std::string>() : std::string();
}

std::vector<std::string> CommandArgs::list(const std::string& name) const {
  return values_.count(name) ? values_[name].as<std::vector<std::string>>() : std::vector<std::string>();
}

uint64_t CommandArgs::size(const std::string& name, uint64_t default_value) const {
  if (!values_.count(name)) return default_value;
  return parse_size_argument("--" + name, values_[name].as<std::string>());
}

uint64_t CommandArgs::number(const std::string& name, uint64_t minimum, uint64_t maximum,
                             uint64_t default_value) const {
  if (!values_.count(name)) return default_value;
  uint64_t value = 0;
  const Status s =
      parse_bounded_number(name, values_[name].as<std::string>(), minimum, maximum, {"--", " "}, value);
  if (!s) usage_error(s.message());
  return value;
}

std::string CommandArgs::help() const {
  std::ostringstream out;
  out << "Usage: nbdsnap " << synopsis_ << "\n";
  if (!visible_.options().empty()) out << "\n" << visible_;
  return out.str();
}

std::chrono::milliseconds parse_timeout_argument(const std::string& text) {
  double seconds = 0;
  size_t used = 0;
  try {
    seconds = std::stod(text, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used == 0 || used != text.size() || !(seconds > 0) || seconds > kMaximumTimeoutSeconds) {
    usage_error("--timeout '" + text + "': give seconds, more than 0 and at most " +
                std::to_string(static_cast<int>(kMaximumTimeoutSeconds)) + " (e.g. 30 or 2.5)");
  }
  return timeout_milliseconds(seconds);
}

uint64_t parse_size_argument(const std::string& what, const std::string& text) {
  uint64_t value = 0;
  Status status = parse_size(text, value);
  if (!status) usage_error(what + ": " + status.message());
  return value;
}

}  // namespace nbdsnap::cli
