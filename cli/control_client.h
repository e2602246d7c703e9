// control_client.h — a client of the JSON control socket (docs/control.md): one request line, one reply line.
//
// request() returns the reply's result (the reply object without "ok") or throws CliError: a refused
// command keeps the server's message and maps its code to an exit code; a broken connection is io_error.
#pragma once

#include <string>

#include <nlohmann/json.hpp>

namespace nbdsnap::cli {

class ControlClient {
 public:
  // Connects to the Unix socket at path (throws CliError io_error on failure).
  explicit ControlClient(const std::string& path);
  ~ControlClient();
  ControlClient(const ControlClient&) = delete;
  ControlClient& operator=(const ControlClient&) = delete;

  // Sends {"command": command, ...arguments} and waits for the reply.
  nlohmann::json request(const std::string& command, nlohmann::json arguments = nlohmann::json::object());

  const std::string& path() const { return path_; }

 private:
  void send_line(const std::string& line);
  std::string receive_line();

  std::string path_;
  int fd_ = -1;
  std::string buffered_;  // bytes received after the last complete line
};

// The result part of a reply line, or a CliError for {"ok": false, ...} and for malformed replies.
nlohmann::json result_of_reply(const std::string& line);

}  // namespace nbdsnap::cli
