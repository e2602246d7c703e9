// SPDX-License-Identifier: BSD-3-Clause
// exit_codes.h — the CLI's exit codes and the one exception type that carries an error to main().
//
// Every failure of a command ends as a CliError: main() prints its message as one line on stderr (with
// --json, as {"error": {"code", "errno", "message"}} on stdout) and exits with its code. The codes are
// documented in docs/nbdsnap.md (EXIT STATUS); exit_code_for() is the one mapping from an error code (the
// control protocol's, or the client library's for connections) to an exit status.
#pragma once

#include <stdexcept>
#include <string>
#include <utility>

namespace nbdsnap::cli {

enum class ExitCode : int {
  ok = 0,
  server_error = 1,  // the server refused or failed the command (or a hook failed)
  usage = 2,         // bad command line
  not_found = 3,     // unknown origin, snapshot, checkpoint, export
  io_error = 4,      // cannot reach the server, NBD or local file I/O failed
};

// What --json prints of an error beside its exit status: the protocol's shape (docs/control.md).
struct ErrorDetail {
  std::string code;     // "not_found", "busy", "timeout", ...; empty: named after the exit code
  int errno_value = 0;  // the server's or the local errno, 0 when there is none
  std::string message;  // empty: the error's text
};

class CliError : public std::runtime_error {
 public:
  CliError(ExitCode code, const std::string& message, ErrorDetail detail = {})
      : std::runtime_error(message), code_(code), detail_(std::move(detail)) {}
  ExitCode code() const { return code_; }
  // The error code, errno and message --json prints.
  ErrorDetail detail() const;

 private:
  ExitCode code_;
  ErrorDetail detail_;
};

[[noreturn]] inline void usage_error(const std::string& message) {
  throw CliError(ExitCode::usage, message);
}

// A local system call failed with errno `err` (a file of the user's, a pipe, a child process): says
// "CONTEXT: strerror(err)", exits with io_error, and --json carries `err` as the error's errno.
[[noreturn]] void local_io_error(const std::string& context, int err);

// The detail of an error for a peer (an NBD server, qemu-img) that showed no sign of work within --timeout:
// "timeout", ETIMEDOUT. Callers tell a silent server by its code.
ErrorDetail no_reply_detail();

// The exit status of an error code: the control protocol's codes ("not_found" and "checkpoint_gone" -> 3, any
// other refusal -> 1) and the client library's (connections: "timeout", "connection_failed"... -> 4; a socket
// of the wrong kind, bad arguments or credentials -> 2). errno_value refines it: a socket path too long is a
// usage error.
ExitCode exit_code_for(const std::string& code, int errno_value = 0);

}  // namespace nbdsnap::cli
