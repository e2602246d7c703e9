// SPDX-License-Identifier: BSD-3-Clause
// main.cpp — nbdsnap: finds the command named on the command line, runs it, and turns errors into one line
// on stderr (with --json, a JSON error object on stdout) and an exit code (exit_codes.h).
#include <cstdlib>
#include <iostream>
#include <string_view>

#include <nlohmann/json.hpp>

#include "command_registry.h"
#include "exit_codes.h"
#include "standard_fds.h"

using namespace nbdsnap::cli;

namespace {

// Whether --json was given: looked for in argv itself, since an error may come before the options are parsed.
bool json_requested(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    if (std::string_view(argv[i]) == "--") break;
    if (std::string_view(argv[i]) == "--json") return true;
  }
  return false;
}

// An error as a script reads it: with --json the protocol's error object on stdout (docs/control.md,
// "Replies"), else one line on stderr. Returns the exit status.
int report(const CliError& error, bool json) {
  if (json) {
    const ErrorDetail detail = error.detail();
    const nlohmann::json object = {
        {"error", {{"code", detail.code}, {"errno", detail.errno_value}, {"message", detail.message}}}};
    std::cout << object.dump(2) << "\n";
    std::cout.flush();
  } else {
    std::cout.flush();
    std::cerr << "nbdsnap: " << error.what() << "\n";
  }
  return static_cast<int>(error.code());
}

}  // namespace

int main(int argc, char** argv) {
  // stdout or stderr closed: messages must not land in a backup target or an image file (standard_fds.h).
  if (!nbdsnap::keep_standard_fds_open()) return 4;
  const bool json = json_requested(argc, argv);
  try {
    std::vector<std::string> arguments(argv + 1, argv + argc);
    Invocation invocation = split_command_line(arguments, std::getenv(kControlEnvironmentVariable));
    Context context(invocation.global, std::cout, std::cerr);
    return dispatch_command(context, invocation.words, all_command_specs());
  } catch (const CliError& error) {
    return report(error, json);
  } catch (const std::exception& error) {
    return report(CliError(ExitCode::server_error, error.what()), json);
  }
}
