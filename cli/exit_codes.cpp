// SPDX-License-Identifier: BSD-3-Clause
// exit_codes.cpp — the one mapping from error codes to exit statuses, and what --json prints of an error.
#include "exit_codes.h"

#include <cerrno>
#include <cstring>

#include <nbdsnap/result.h>

namespace nbdsnap::cli {

namespace {

const char* code_name(ExitCode code) {
  switch (code) {
    case ExitCode::usage:
      return "usage";
    case ExitCode::not_found:
      return "not_found";
    case ExitCode::io_error:
      return "io_error";
    default:
      return "failed";
  }
}

}  // namespace

ErrorDetail CliError::detail() const {
  ErrorDetail detail = detail_;
  if (detail.code.empty()) detail.code = code_name(code_);
  if (detail.message.empty()) detail.message = what();
  return detail;
}

void local_io_error(const std::string& context, int err) {
  throw CliError(ExitCode::io_error, context + ": " + std::strerror(err), {"", err, ""});
}

ErrorDetail no_reply_detail() {
  return {"timeout", ETIMEDOUT, ""};
}

ExitCode exit_code_for(const std::string& code, int errno_value) {
  if (code == "not_found" || code == "checkpoint_gone") return ExitCode::not_found;
  if (code == client::kConnectionFailed && errno_value == ENAMETOOLONG) return ExitCode::usage;
  if (code == client::kTimeout || code == client::kConnectionFailed || code == client::kConnectionLost ||
      code == client::kProtocolError || code == client::kNotConnected) {
    return ExitCode::io_error;
  }
  if (code == client::kWrongSocket || code == client::kInvalidRequest || code == client::kBadCredentials) {
    return ExitCode::usage;
  }
  return ExitCode::server_error;  // a refusal of the server, generation_changed
}

}  // namespace nbdsnap::cli
