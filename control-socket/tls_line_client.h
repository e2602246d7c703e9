// SPDX-License-Identifier: BSD-3-Clause
// tls_line_client.h — a client of a line protocol over TLS on TCP: the transport of `nbdsnap --connect
// tls://HOST:PORT` to nbdsnapd's remote control listener (--control-listen). Independent of the CLI's
// classes, so the control client library can use it as it is.
//
// Every wait is bounded: connecting (TCP and the TLS handshake) within the timeout given to connect(), each
// send and receive by its own deadline. Errors are Status values naming the address; timed_out() tells a
// deadline that passed from other failures. Thread-safety: one thread at a time.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

#include "status.h"
#include "tls_credentials.h"
#include "tls_stream.h"

namespace nbdsnap {

// "tls://[USER@]HOST:PORT" (HOST may be [IPv6]); USER is the PSK username.
struct TlsAddress {
  std::string user;
  std::string host;
  uint16_t port = 0;
  std::string text() const {
    return "tls://" + (user.empty() ? "" : user + "@") + host + ":" + std::to_string(port);
  }
};
bool is_tls_address(const std::string& text);
// invalid_argument naming what is wrong.
Status parse_tls_address(const std::string& text, TlsAddress& out);

class TlsLineClient {
 public:
  // Resolves and connects to address, then runs the TLS handshake (the server's certificate must be signed
  // by the CA of `credentials` and name the host), all within `timeout`. A connection the server closes
  // during the handshake without an alert (not a refusal: kTlsClosedByServer, tls_failure.h) is tried
  // again, up to kConnectAttempts in all within kRetryWindow (and the timeout); a refusal never is.
  static constexpr int kConnectAttempts = 3;
  static constexpr std::chrono::milliseconds kRetryWindow{2000};
  static Status connect(const TlsAddress& address, const std::shared_ptr<const TlsCredentials>& credentials,
                        std::chrono::milliseconds timeout, std::unique_ptr<TlsLineClient>& out);
  ~TlsLineClient();
  TlsLineClient(const TlsLineClient&) = delete;
  TlsLineClient& operator=(const TlsLineClient&) = delete;

  // Sends `line` and a newline.
  Status send_line(const std::string& line, SteadyDeadline deadline);
  // Longer reply lines are no replies of the control protocol (libnbdsnap's and the Python client's limit).
  static constexpr size_t kMaxLineBytes = 64u << 20;
  // The next line without its newline; lines longer than max_bytes are an error.
  Status receive_line(std::string& line, SteadyDeadline deadline, size_t max_bytes = kMaxLineBytes);
  bool timed_out() const { return timed_out_; }
  // "TLS1.3-(ECDHE-SECP256R1)-(RSA-PSS-RSAE-SHA256)-(AES-256-GCM)": what the session negotiated.
  std::string session_description() const { return stream_->session().describe(); }

 private:
  TlsLineClient(TlsAddress address, int fd) : address_(std::move(address)), fd_(fd) {}
  // One attempt; closed_by_server tells a close without an alert during the handshake.
  static Status connect_once(const TlsAddress& address,
                             const std::shared_ptr<const TlsCredentials>& credentials,
                             SteadyDeadline deadline, std::unique_ptr<TlsLineClient>& out,
                             bool& closed_by_server);
  Status failure(const std::string& what);
  // After a failed send before any reply: reads, briefly, what the server sent before it closed (a reply
  // line, or an alert that failure() then names); true when that holds a whole line.
  bool reply_left_behind(SteadyDeadline deadline);
  static constexpr std::chrono::milliseconds kLeftBehindWait{200};

  TlsAddress address_;
  int fd_ = -1;
  std::unique_ptr<TlsStream> stream_;
  std::string buffered_;  // received bytes after the last complete line
  bool timed_out_ = false;
  bool received_any_ = false;  // a server that ends the connection before any reply refused us (failure())
};

}  // namespace nbdsnap
