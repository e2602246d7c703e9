// connection.h — one NBD client over a socket: the handshake, then requests served concurrently.
//
// Threading: every member runs on the server's single I/O thread, except the request executions, which run
// on the worker pool and post their reply back. Up to `max_in_flight` requests are served at once; replies
// go out in completion order (NBD allows that). shut_down() stops reading requests, lets in-flight ones
// finish and their replies go out, then closes; abort() closes at once.
#pragma once

#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <vector>

#include <asio.hpp>

#include "client_registry.h"
#include "handshake.h"
#include "request_executor.h"

namespace nbdsnap {

using NbdSocket = asio::generic::stream_protocol::socket;

struct ConnectionLimits {
  unsigned max_in_flight = 64;
  uint64_t max_in_flight_bytes = 256ull << 20;
};

class Connection : public std::enable_shared_from_this<Connection> {
 public:
  Connection(NbdSocket socket, uint64_t id, const ExportCatalog& catalog, asio::thread_pool& workers,
             ClientRegistry& registry, ConnectionLimits limits);
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  // Registers the connection and starts serving it.
  void start();
  // REQUIRES: called on executor().
  void shut_down();
  void abort();

  uint64_t id() const { return id_; }
  asio::any_io_executor executor() { return socket_.get_executor(); }

 private:
  asio::awaitable<void> run();
  asio::awaitable<bool> negotiate();
  asio::awaitable<void> transmit();
  asio::awaitable<bool> discard_payload(uint64_t bytes);
  asio::awaitable<void> wait_until_idle(bool for_slot, uint64_t bytes);
  void dispatch(const nbd::RequestHeader& request, std::vector<uint8_t> payload, uint64_t accounted);
  void send(std::vector<uint8_t> reply, uint64_t accounted);
  void write_next();
  void close_socket();
  std::string describe() const;

  NbdSocket socket_;
  const uint64_t id_;
  const ExportCatalog& catalog_;
  asio::thread_pool& workers_;
  ClientRegistry& registry_;
  const ConnectionLimits limits_;

  Handshake handshake_;
  std::shared_ptr<const RequestExecutor> executor_;  // set when transmission starts
  std::string export_name_;
  asio::steady_timer wakeup_;  // the reader sleeps on it while the in-flight limit is reached
  unsigned in_flight_ = 0;     // requests read and not yet answered
  uint64_t in_flight_bytes_ = 0;
  struct Outgoing {
    std::vector<uint8_t> bytes;
    uint64_t accounted = 0;
  };
  std::deque<Outgoing> outbox_;
  bool writing_ = false;
  bool broken_ = false;    // a write failed or abort(): replies are dropped
  bool stopping_ = false;  // shut_down(): no new requests
};

}  // namespace nbdsnap
