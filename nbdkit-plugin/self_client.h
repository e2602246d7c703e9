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
//
// A connection of the filter's own must never make another. An oldstyle nbdkit (-o) opens the export, so runs
// the filter's .open, before it sends its greeting; an .open that connected to nbdkit again would then open
// again, without end (thousands of connections until the process ran out of descriptors). So the clients
// that live are registered, .open asks whether its connection is one of them (live_count, is_own_tcp_peer,
// and the peer's pid) and then never connects, and at most kMaxLive exist at once whatever asks (more wait,
// within their timeout).
#pragma once

#include <netinet/in.h>

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
  // At most this many clients live at once (a bound on any chain of connections that open connections).
  static constexpr int kMaxLive = 8;

  // Connects and completes the greeting; each call fails once `timeout` has passed since the connect or the
  // last renew_deadline(). *oldstyle (if given) is set when the server sent the oldstyle greeting: it serves
  // the default export only and takes no options.
  // Errors: not_supported (oldstyle server, no fixed newstyle), busy (kMaxLive clients lived throughout
  // `timeout`), io_error (connection, timeout).
  static Status connect(const NbdListener& where, std::chrono::milliseconds timeout,
                        std::unique_ptr<SelfClient>& out, bool* oldstyle = nullptr);
  // Sends NBD_OPT_ABORT (without waiting for its reply; only after a newstyle greeting) and closes the
  // connection.
  ~SelfClient();

  // How many clients live in this process now (from before their connect to their close). Thread-safe.
  static int live_count();
  // Whether `peer`, the address of a TCP client nbdkit accepted, is a live client of this process: each one
  // is bound to the address it connects to, on a port of its own, before it connects. Thread-safe. (A Unix
  // socket client is this process when the peer's pid is, which only nbdkit can tell.)
  static bool is_own_tcp_peer(const sockaddr_in& peer);
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
  // Binds fd_ to `destination`'s address on a free port and registers that port (is_own_tcp_peer).
  Status bind_tcp(const sockaddr_in& destination);
  Status send_option(uint32_t option, const std::vector<uint8_t>& data);
  Status read_option_reply(uint32_t option, OptionReply& out);
  Status send_bytes(const void* data, size_t length);
  Status receive_bytes(void* data, size_t length);
  // Waits until fd_ is ready for `events` or the deadline passes.
  Status wait_ready(short events);

  const int fd_;
  const std::chrono::milliseconds timeout_;
  std::chrono::steady_clock::time_point deadline_;
  bool newstyle_ = false;        // the fixed newstyle greeting was answered: options may follow
  bool registered_tcp_ = false;  // tcp_self_ is in the registry of own TCP clients
  sockaddr_in tcp_self_{};       // this client's own address (TCP)
};

}  // namespace nbdsnap
