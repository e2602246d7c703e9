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

ControlClient::ControlClient(const std::string& path, std::chrono::milliseconds timeout) : path_(path) {
  client::Options options;
  options.timeout = timeout;
  options.timeout_name = "--timeout";
  client_ = std::make_unique<client::Client>(checked(client::Client::connect(path, options)));
}

CliError ControlClient::cli_error(const client::Error& error) const {
  if (error.from_server()) return CliError(exit_code_for_server_error(error.code), error.describe());
  if (error.code == client::kWrongSocket) return CliError(ExitCode::usage, nbd_socket_given_as_control_message(path_));
  if (error.code == client::kConnectionFailed && error.errno_value == ENAMETOOLONG) {
    return CliError(ExitCode::usage, error.message);
  }
  if (error.code == client::kInvalidRequest) return CliError(ExitCode::usage, error.message);
  return CliError(ExitCode::io_error, error.message);
}

nlohmann::json ControlClient::request(const std::string& command, nlohmann::json arguments,
                                      std::chrono::milliseconds server_wait) {
  arguments["command"] = command;
  std::string line;
  try {
    line = arguments.dump();
  } catch (const nlohmann::json::exception&) {
    usage_error(command + ": names and paths must be UTF-8 text");
  }
  nlohmann::json reply = nlohmann::json::parse(checked(client_->call(line, server_wait)));
  reply.erase("ok");
  return reply;
}

}  // namespace nbdsnap::cli
