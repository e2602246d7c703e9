// SPDX-License-Identifier: BSD-3-Clause
// control_client.h — the CLI's connection to the control socket: libnbdsnap's Client (one protocol client in
// the project), with its errors turned into CliError and exit codes.
//
// request() returns the reply's result (the reply object without "ok"), its fields of the types the command
// reads (libnbdsnap's reply_shape.h: else CliError io_error, code protocol_error), or throws CliError: a
// refused command keeps the server's message and maps its code to an exit code; a broken connection, or a
// server that does not answer within the timeout, is io_error; a socket that turns out to be an NBD server's
// is usage (the command line names the wrong socket).
#pragma once

#include <chrono>
#include <memory>
#include <string>

#include <nlohmann/json.hpp>

#include "exit_codes.h"
#include "nbdsnap/client.h"

namespace nbdsnap::cli {

// Credentials for a tls:// control address (--tls-certificates, --tls-psk).
struct ControlTls {
  std::string certificates_dir;
  std::string psk_file;
};

class ControlClient {
 public:
  // Connects to the Unix socket at path, or to tls://[USER@]HOST:PORT with `tls` (TLS handshake included),
  // within `timeout` (throws CliError io_error on failure, usage for a tls:// address without credentials or
  // with bad ones). The timeout also bounds each request's wait for its reply.
  ControlClient(const std::string& path, std::chrono::milliseconds timeout, const ControlTls& tls = {});
  ControlClient(const ControlClient&) = delete;
  ControlClient& operator=(const ControlClient&) = delete;

  // Sends {"command": command, ...arguments} and waits for the reply, at most the timeout plus server_wait
  // (what the command itself may wait on the server, e.g. events-wait's timeout_ms).
  nlohmann::json request(const std::string& command, nlohmann::json arguments = nlohmann::json::object(),
                         std::chrono::milliseconds server_wait = std::chrono::milliseconds(0));

  // As request() for cbt-map and cbt-raw-map, following their pages (libnbdsnap's call_all_pages): one reply
  // with every page's ranges or runs. A CBT generation that changes between pages is server_error.
  nlohmann::json request_all_pages(const std::string& command, nlohmann::json arguments);

  // The library's handle, for typed calls; its errors become CliErrors through cli_error().
  client::Client& library() { return *client_; }
  // The CliError for an error of the library: exit code by the server's code, or by what went wrong.
  CliError cli_error(const client::Error& error) const;
  // Returns the value or throws cli_error().
  template <typename T>
  T checked(client::Result<T> result) const {
    if (!result) throw cli_error(result.error());
    return std::move(result).value();
  }
  void checked(const client::Result<void>& result) const {
    if (!result) throw cli_error(result.error());
  }

  const std::string& path() const { return path_; }

 private:
  std::string path_;
  std::unique_ptr<client::Client> client_;
};

// "30 s", "0.5 s": a timeout for messages.
std::string format_timeout(std::chrono::milliseconds timeout);

}  // namespace nbdsnap::cli
