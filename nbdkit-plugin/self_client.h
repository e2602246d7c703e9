// SPDX-License-Identifier: BSD-3-Clause
// self_client.h — a minimal NBD client of this nbdkit's own listening socket: the filter's way to ask nbdkit
// what only a client can make it do.
//
// nbdkit runs a plugin's .list_exports only while answering a client's NBD_OPT_LIST (nbdkit-filter(3): a
// filter may call the next .list_exports only from its own .list_exports, and nbdkit asserts a client
// connection there). So the filter connects to its own socket and asks, as any client would: NBD_OPT_LIST
// makes nbdkit run the filter's .list_exports, which records the plugin's list; NBD_OPT_INFO opens an export
// once, which attaches it as an origin (.prepare). Options follow the fixed newstyle handshake of the NBD
// protocol (doc/proto.md of the NetworkBlockDevice project). Every wait is bounded by a deadline. Plain text
// only: an nbdkit started with --tls=require answers NBD_REP_ERR_TLS_REQD.
#pragma once

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "status.h"

namespace nbdsnap {

// Where this nbdkit listens: a Unix socket path, or else an IPv4 "HOST:PORT".
struct NbdListener {
  std::string unix_path;
  std::string tcp_host_port;
  bool empty() const { return unix_path.empty() && tcp_host_port.empty(); }
  std::string to_string() const { return unix_path.empty() ? tcp_host_port : unix_path; }
};

class SelfClient {
 public:
  // Connects and completes the greeting; each call fails once `timeout` has passed since the connect or the
  // last renew_deadline().
  // Errors: not_supported (oldstyle server, no fixed newstyle), io_error (connection, timeout).
  static Status connect(const NbdListener& where, std::chrono::milliseconds timeout,
                        std::unique_ptr<SelfClient>& out);
  // Sends NBD_OPT_ABORT (without waiting for its reply) and closes the connection.
  ~SelfClient();
  SelfClient(const SelfClient&) = delete;
  SelfClient& operator=(const SelfClient&) = delete;

  // NBD_OPT_LIST: the export names the server lists. An error reply becomes a Status naming it
  // (NBD_REP_ERR_TLS_REQD: not_supported, others: io_error).
  Status list(std::vector<std::string>& names);
  // NBD_OPT_INFO on one export: the server opens it, answers, and closes it again. not_found when the
  // server refuses the name (NBD_REP_ERR_UNKNOWN).
  Status info(const std::string& export_name);
  // Gives the next calls `timeout` from now, for a session of many steps.
  void renew_deadline() { deadline_ = std::chrono::steady_clock::now() + timeout_; }

 private:
  struct OptionReply {
    uint32_t type = 0;
    std::vector<uint8_t> payload;
  };
  SelfClient(int fd, std::chrono::milliseconds timeout)
      : fd_(fd), timeout_(timeout), deadline_(std::chrono::steady_clock::now() + timeout) {}
  Status send_option(uint32_t option, const std::vector<uint8_t>& data);
  Status read_option_reply(uint32_t option, OptionReply& out);
  Status send_bytes(const void* data, size_t length);
  Status receive_bytes(void* data, size_t length);
  // Waits until fd_ is ready for `events` or the deadline passes.
  Status wait_ready(short events);

  const int fd_;
  const std::chrono::milliseconds timeout_;
  std::chrono::steady_clock::time_point deadline_;
};

}  // namespace nbdsnap
