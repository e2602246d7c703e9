// SPDX-License-Identifier: BSD-3-Clause
// exit_codes.h — the CLI's exit codes and the one exception type that carries an error to main().
//
// Every failure of a command ends as a CliError: main() prints its message as one line on stderr and exits
// with its code. The codes are documented in docs/nbdsnap.md (EXIT STATUS).
#pragma once

#include <stdexcept>
#include <string>

namespace nbdsnap::cli {

enum class ExitCode : int {
  ok = 0,
  server_error = 1,  // the server refused or failed the command (or a hook failed)
  usage = 2,         // bad command line
  not_found = 3,     // unknown origin, snapshot, checkpoint, export
  io_error = 4,      // cannot reach the server, NBD or local file I/O failed
};

class CliError : public std::runtime_error {
 public:
  CliError(ExitCode code, const std::string& message) : std::runtime_error(message), code_(code) {}
  ExitCode code() const { return code_; }

 private:
  ExitCode code_;
};

[[noreturn]] inline void usage_error(const std::string& message) { throw CliError(ExitCode::usage, message); }

// The exit code for a control protocol error code ("not_found" and "checkpoint_gone" -> 3, anything else -> 1).
inline ExitCode exit_code_for_server_error(const std::string& code) {
  return code == "not_found" || code == "checkpoint_gone" ? ExitCode::not_found : ExitCode::server_error;
}

}  // namespace nbdsnap::cli
