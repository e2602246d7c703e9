// control_client.cpp — Unix socket connection and reply decoding for the control protocol, every wait bounded.
#include "control_client.h"

#include <cerrno>
#include <cstdio>
#include <cstring>

#include <unistd.h>

#include "exit_codes.h"
#include "socket_kind.h"

namespace nbdsnap::cli {

namespace {

// How long to listen for an NBD greeting when the connection ended without a reply: a server greets at once.
constexpr std::chrono::milliseconds kGreetingWait{1000};

[[noreturn]] void connection_error(const std::string& path, const std::string& what, int err) {
  throw CliError(ExitCode::io_error, "control socket " + path + ": " + what + ": " + std::strerror(err));
}

}  // namespace

std::string format_timeout(std::chrono::milliseconds timeout) {
  char text[32];
  std::snprintf(text, sizeof(text), "%g s", static_cast<double>(timeout.count()) / 1000);
  return text;
}

ControlClient::ControlClient(const std::string& path, std::chrono::milliseconds timeout, const ControlTls& tls)
    : path_(path), timeout_(timeout) {
  if (is_tls_address(path)) {
    connect_tls(tls);
    return;
  }
  fd_ = connect_unix(path, Deadline(timeout));
  if (fd_ >= 0) return;
  const int err = errno;
  if (err == ENAMETOOLONG) throw CliError(ExitCode::usage, "control socket path '" + path + "' is empty or too long");
  if (err == ETIMEDOUT) {
    throw CliError(ExitCode::io_error, "control socket " + path + ": cannot connect within " +
                                           format_timeout(timeout) + " (--timeout): the server accepts no clients");
  }
  connection_error(path, "cannot connect", err);
}

void ControlClient::connect_tls(const ControlTls& tls) {
  TlsAddress address;
  if (Status s = parse_tls_address(path_, address); !s) throw CliError(ExitCode::usage, s.message());
  TlsOptions options;
  options.certificates_dir = tls.certificates_dir;
  options.psk_file = tls.psk_file;
  options.psk_username = address.user;
  if (!options.enabled()) {
    throw CliError(ExitCode::usage, path_ + ": a tls:// control address needs --tls-certificates DIR or --tls-psk FILE");
  }
  std::shared_ptr<const TlsCredentials> credentials;
  if (Status s = TlsCredentials::load(TlsEndpoint::client, options, credentials); !s) {
    throw CliError(ExitCode::usage, s.message());
  }
  if (Status s = TlsLineClient::connect(address, credentials, timeout_, tls_); !s) {
    throw CliError(ExitCode::io_error, "control " + s.message());
  }
}

ControlClient::~ControlClient() {
  if (fd_ >= 0) ::close(fd_);
}

nlohmann::json ControlClient::request(const std::string& command, nlohmann::json arguments,
                                      std::chrono::milliseconds server_wait) {
  const Deadline deadline(timeout_ + server_wait);
  arguments["command"] = command;
  send_line(command, arguments.dump() + "\n", deadline);
  std::string line = receive_line(command, deadline);
  replied_ = true;
  return result_of_reply(line);
}

void ControlClient::send_line(const std::string& command, const std::string& line, const Deadline& deadline) {
  if (tls_) {
    std::string text = line;
    if (!text.empty() && text.back() == '\n') text.pop_back();
    if (Status s = tls_->send_line(text, deadline.end()); !s) {
      throw CliError(ExitCode::io_error, "control " + s.message() + (tls_->timed_out() ? " (--timeout " + format_timeout(timeout_) + ")" : ""));
    }
    return;
  }
  if (send_all(fd_, line, deadline)) return;
  const int err = errno;
  if (err == ETIMEDOUT) {
    throw CliError(ExitCode::io_error, "control socket " + path_ + ": cannot send " + command + " within " +
                                           format_timeout(timeout_) + " (--timeout): the server does not read");
  }
  connection_lost("send", err);
}

std::string ControlClient::receive_line(const std::string& command, const Deadline& deadline) {
  if (tls_) {
    std::string reply;
    if (Status s = tls_->receive_line(reply, deadline.end()); !s) {
      if (tls_->timed_out()) {
        throw CliError(ExitCode::io_error, "control " + path_ + ": no reply to " + command + " within " +
                                               format_timeout(timeout_) + " (--timeout); the server may still carry it out");
      }
      throw CliError(ExitCode::io_error, "control " + s.message());
    }
    return reply;
  }
  for (;;) {
    if (!replied_ && is_nbd_greeting(buffered_)) {
      throw CliError(ExitCode::usage, nbd_socket_given_as_control_message(path_));
    }
    const size_t newline = buffered_.find('\n');
    if (newline != std::string::npos) {
      std::string line = buffered_.substr(0, newline);
      buffered_.erase(0, newline + 1);
      return line;
    }
    char chunk[65536];
    const ssize_t n = receive_some(fd_, chunk, sizeof(chunk), deadline);
    if (n > 0) {
      buffered_.append(chunk, static_cast<size_t>(n));
      continue;
    }
    const int err = n == 0 ? 0 : errno;
    if (err == ETIMEDOUT) {
      throw CliError(ExitCode::io_error, "control socket " + path_ + ": no reply to " + command + " within " +
                                             format_timeout(timeout_) +
                                             " (--timeout); the server may still carry it out");
    }
    connection_lost("receive", err);
  }
}

void ControlClient::connection_lost(const std::string& what, int err) {
  // An NBD server closes the connection when our request arrives as its client flags; the greeting it sent
  // first may be lost with the reset, so a fresh connection listens for it.
  if (!replied_ && probe_socket_kind(path_, kGreetingWait, Deadline(std::min(timeout_, kGreetingWait * 2))) ==
                       SocketKind::nbd) {
    throw CliError(ExitCode::usage, nbd_socket_given_as_control_message(path_));
  }
  if (err == 0) throw CliError(ExitCode::io_error, "control socket " + path_ + ": server closed the connection");
  connection_error(path_, what, err);
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
