// SPDX-License-Identifier: BSD-3-Clause
// main.cpp — nbdsnap: finds the command named on the command line, runs it, and turns errors into one line
// on stderr and an exit code (exit_codes.h).
#include <cstdlib>
#include <iostream>

#include "command_registry.h"
#include "exit_codes.h"

using namespace nbdsnap::cli;

int main(int argc, char** argv) {
  try {
    std::vector<std::string> arguments(argv + 1, argv + argc);
    Invocation invocation = split_command_line(arguments, std::getenv(kControlEnvironmentVariable));
    Context context(invocation.global, std::cout, std::cerr);
    return dispatch_command(context, invocation.words, all_command_specs());
  } catch (const CliError& error) {
    std::cout.flush();
    std::cerr << "nbdsnap: " << error.what() << "\n";
    return static_cast<int>(error.code());
  } catch (const std::exception& error) {
    std::cout.flush();
    std::cerr << "nbdsnap: " << error.what() << "\n";
    return static_cast<int>(ExitCode::server_error);
  }
}
