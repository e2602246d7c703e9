// SPDX-License-Identifier: BSD-3-Clause
// context.h — what every command runs with: the global options, the output stream, the control connection.
#pragma once

#include <iostream>
#include <memory>
#include <string>

#include <nlohmann/json.hpp>

#include "command_line.h"
#include "control_client.h"

namespace nbdsnap::cli {

class Context {
 public:
  Context(GlobalOptions global, std::ostream& out, std::ostream& err)
      : global_(std::move(global)), out_(out), err_(err) {}

  const GlobalOptions& global() const { return global_; }
  bool json() const { return global_.json; }
  std::ostream& out() { return out_; }
  std::ostream& err() { return err_; }
  // The control connection, opened on first use.
  ControlClient& control() {
    if (!control_) {
      control_ = std::make_unique<ControlClient>(global_.control, global_.timeout,
                                                 ControlTls{global_.tls_certificates, global_.tls_psk});
    }
    return *control_;
  }
  // Pretty JSON for --json output.
  void print_json(const nlohmann::json& value) { out_ << value.dump(2) << "\n"; }

 private:
  GlobalOptions global_;
  std::ostream& out_;
  std::ostream& err_;
  std::unique_ptr<ControlClient> control_;
};

// A handler for one command: parses its words (after the command words) and runs; returns the exit code.
using CommandHandler = int (*)(Context& context, const std::vector<std::string>& words);

struct CommandSpec {
  std::vector<std::string> words;  // {"snapshot", "create"}
  std::string synopsis;            // as in docs/nbdsnap.md
  std::string summary;             // one line for the command list
  CommandHandler run;
};

}  // namespace nbdsnap::cli

namespace nbdsnap::cli {

// Parses the command's words; with --help prints its usage instead and returns false.
inline bool parse_or_show_help(Context& context, CommandArgs& args, const std::vector<std::string>& words) {
  if (context.global().help) {
    context.out() << args.help();
    return false;
  }
  args.parse(words);
  return true;
}

}  // namespace nbdsnap::cli
