// control_client.h — a client of the JSON control socket (docs/control.md): one request line, one reply line.
//
// request() returns the reply's result (the reply object without "ok") or throws CliError: a refused
// command keeps the server's message and maps its code to an exit code; a broken connection, or a server that
// does not answer within the timeout, is io_error; a socket that turns out to be an NBD server's is usage
// (the command line names the wrong socket).
#pragma once

#include <chrono>
#include <string>

#include <nlohmann/json.hpp>

#include "socket_io.h"
#include "tls_line_client.h"

namespace nbdsnap::cli {

// Credentials for a tls:// control address (--tls-certificates, --tls-psk).
struct ControlTls {
  std::string certificates_dir;
  std::string psk_file;
};

class ControlClient {
 public:
  // Connects to the Unix socket at path, or to tls://[USER@]HOST:PORT with `tls` (TLS handshake included),
  // within `timeout` (throws CliError io_error on failure, usage for a tls:// address without credentials).
  // The timeout also bounds each request's wait for its reply.
  ControlClient(const std::string& path, std::chrono::milliseconds timeout, const ControlTls& tls = {});
  ~ControlClient();
  ControlClient(const ControlClient&) = delete;
  ControlClient& operator=(const ControlClient&) = delete;

  // Sends {"command": command, ...arguments} and waits for the reply, at most the timeout plus server_wait
  // (what the command itself may wait on the server, e.g. events-wait's timeout_ms).
  nlohmann::json request(const std::string& command, nlohmann::json arguments = nlohmann::json::object(),
                         std::chrono::milliseconds server_wait = std::chrono::milliseconds(0));

  const std::string& path() const { return path_; }

 private:
  void send_line(const std::string& command, const std::string& line, const Deadline& deadline);
  std::string receive_line(const std::string& command, const Deadline& deadline);
  // The connection ended before a reply: an NBD server does that after our request (it is no NBD
  // greeting). Throws the message for the case found.
  [[noreturn]] void connection_lost(const std::string& what, int err);

  void connect_tls(const ControlTls& tls);

  std::string path_;
  std::chrono::milliseconds timeout_;
  int fd_ = -1;
  std::unique_ptr<nbdsnap::TlsLineClient> tls_;  // a tls:// address: the transport instead of fd_
  std::string buffered_;  // bytes received after the last complete line
  bool replied_ = false;  // a reply has been received on this connection
};

// The result part of a reply line, or a CliError for {"ok": false, ...} and for malformed replies.
nlohmann::json result_of_reply(const std::string& line);

// "30 s", "0.5 s": a timeout for messages.
std::string format_timeout(std::chrono::milliseconds timeout);

}  // namespace nbdsnap::cli
