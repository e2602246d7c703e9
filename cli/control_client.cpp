// control_client.cpp — Unix socket connection and reply decoding for the control protocol.
#include "control_client.h"

#include <cerrno>
#include <cstring>

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "exit_codes.h"

namespace nbdsnap::cli {

namespace {

[[noreturn]] void connection_error(const std::string& path, const std::string& what, int err) {
  throw CliError(ExitCode::io_error, "control socket " + path + ": " + what + ": " + std::strerror(err));
}

}  // namespace

ControlClient::ControlClient(const std::string& path) : path_(path) {
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  if (path.empty() || path.size() >= sizeof(address.sun_path)) {
    throw CliError(ExitCode::usage, "control socket path '" + path + "' is empty or too long");
  }
  std::memcpy(address.sun_path, path.c_str(), path.size() + 1);
  fd_ = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd_ < 0) connection_error(path, "socket", errno);
  if (::connect(fd_, reinterpret_cast<sockaddr*>(&address), sizeof(address)) != 0) {
    int err = errno;
    ::close(fd_);
    fd_ = -1;
    connection_error(path, "cannot connect", err);
  }
}

ControlClient::~ControlClient() {
  if (fd_ >= 0) ::close(fd_);
}

nlohmann::json ControlClient::request(const std::string& command, nlohmann::json arguments) {
  arguments["command"] = command;
  send_line(arguments.dump() + "\n");
  return result_of_reply(receive_line());
}

void ControlClient::send_line(const std::string& line) {
  size_t done = 0;
  while (done < line.size()) {
    ssize_t n = ::send(fd_, line.data() + done, line.size() - done, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) connection_error(path_, "send", errno);
    done += static_cast<size_t>(n);
  }
}

std::string ControlClient::receive_line() {
  for (;;) {
    size_t newline = buffered_.find('\n');
    if (newline != std::string::npos) {
      std::string line = buffered_.substr(0, newline);
      buffered_.erase(0, newline + 1);
      return line;
    }
    char chunk[65536];
    ssize_t n = ::recv(fd_, chunk, sizeof(chunk), 0);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) connection_error(path_, "receive", errno);
    if (n == 0) throw CliError(ExitCode::io_error, "control socket " + path_ + ": server closed the connection");
    buffered_.append(chunk, static_cast<size_t>(n));
  }
}

nlohmann::json result_of_reply(const std::string& line) {
  nlohmann::json reply = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
  if (!reply.is_object() || !reply.contains("ok") || !reply["ok"].is_boolean()) {
    throw CliError(ExitCode::io_error, "malformed reply from the control socket: " + line.substr(0, 200));
  }
  if (reply["ok"].get<bool>()) {
    reply.erase("ok");
    return reply;
  }
  const nlohmann::json error = reply.value("error", nlohmann::json::object());
  std::string code = error.value("code", std::string("unknown"));
  std::string message = error.value("message", std::string("(no message)"));
  throw CliError(exit_code_for_server_error(code), message + " (" + code + ")");
}

}  // namespace nbdsnap::cli
