// SPDX-License-Identifier: BSD-3-Clause
// control_client.cpp — the CLI over libnbdsnap: connecting with --timeout, and the exit code of each error.
#include "control_client.h"

#include <cerrno>
#include <cstdio>

#include "socket_kind.h"

namespace nbdsnap::cli {

std::string format_timeout(std::chrono::milliseconds timeout) {
  char text[32];
  std::snprintf(text, sizeof(text), "%g s", static_cast<double>(timeout.count()) / 1000);
  return text;
}

ControlClient::ControlClient(const std::string& path, std::chrono::milliseconds timeout,
                             const ControlTls& tls)
    : path_(path) {
  client::Options options;
  options.timeout = timeout;
  options.timeout_name = "--timeout";
  if (client::is_tls_address(path) && tls.certificates_dir.empty() && tls.psk_file.empty()) {
    throw CliError(ExitCode::usage,
                   path + ": a tls:// control address needs --tls-certificates DIR or --tls-psk FILE");
  }
  options.tls = {tls.certificates_dir, tls.psk_file};
  client_ = std::make_unique<client::Client>(checked(client::Client::connect(path, options)));
}

CliError ControlClient::cli_error(const client::Error& error) const {
  const ExitCode exit_code = exit_code_for(error.code, error.errno_value);
  ErrorDetail detail{error.code, error.errno_value, error.message};
  if (error.from_server()) return CliError(exit_code, error.describe(), detail);
  if (error.code == client::kWrongSocket) {
    detail.message = nbd_socket_given_as_control_message(path_);
    return CliError(exit_code, detail.message, detail);
  }
  return CliError(exit_code, error.message, detail);
}

namespace {

// The request line of `command` with `arguments`; names and paths that are not UTF-8 are a usage error.
std::string request_line(const std::string& command, nlohmann::json arguments) {
  arguments["command"] = command;
  try {
    return arguments.dump();
  } catch (const nlohmann::json::exception&) {
    usage_error(command + ": names and paths must be UTF-8 text");
  }
}

// The reply without "ok" (libnbdsnap checked that its fields have the protocol's types).
nlohmann::json result_of(const std::string& reply_text) {
  nlohmann::json reply = nlohmann::json::parse(reply_text);
  reply.erase("ok");
  return reply;
}

}  // namespace

nlohmann::json ControlClient::request(const std::string& command, nlohmann::json arguments,
                                      std::chrono::milliseconds server_wait) {
  return result_of(checked(client_->call(request_line(command, std::move(arguments)), server_wait)));
}

nlohmann::json ControlClient::request_all_pages(const std::string& command, nlohmann::json arguments) {
  return result_of(checked(client_->call_all_pages(request_line(command, std::move(arguments)))));
}

}  // namespace nbdsnap::cli
