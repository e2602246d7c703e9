// SPDX-License-Identifier: BSD-3-Clause
// connection.h — one NBD client over a socket: the handshake, then requests served concurrently.
//
// Threading: the handshake, the request reader and closing run on the connection's I/O thread (the one thread
// running its socket's executor; the server has several, server.h, and a connection never moves); every
// request runs on the worker pool, and the worker that finishes it sends its reply itself when the socket is
// free (see connection.cpp). Up to
// `max_in_flight` requests are served at once; replies go out in completion order (NBD allows that).
// shut_down() stops reading requests, lets in-flight ones finish and their replies go out, then closes (in
// the handshake it answers the next option with ERR_SHUTDOWN, then closes); abort() closes at once.
// shut_down() sets no deadline of its own: the server bounds it.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <deque>
#include <memory>
#include <new>
#include <span>
#include <string>
#include <vector>

#include <asio.hpp>

#include "access_policy.h"
#include "client_registry.h"
#include "handshake.h"
#include "mutex.h"
#include "refusal_log.h"
#include "request_executor.h"
#include "tls_channel.h"
#include "worker_pool.h"

namespace nbdsnap {

using NbdSocket = asio::generic::stream_protocol::socket;

struct ConnectionLimits {
  unsigned max_in_flight = 64;
  uint64_t max_in_flight_bytes = 256ull << 20;
  std::chrono::seconds handshake_timeout{10};  // zero: none
};

// What a connection needs to know for TLS and access control.
struct ConnectionSecurity {
  TlsMode tls = TlsMode::off;
  const TlsCredentialStore* credentials = nullptr;  // set when tls is not off; outlives the connection
  std::shared_ptr<const AccessPolicy> access;       // null: every export for every client
  bool tcp = false;                                 // the client came over TCP (else a Unix socket)
  // Where refusals an unauthenticated client can repeat at will go (failed TLS handshakes, options in clear
  // under --tls require, handshake time-outs): counted, not a line each. Outlives the connection; null:
  // logged directly.
  RefusalLog* refusals = nullptr;
};

class Connection : public std::enable_shared_from_this<Connection> {
 public:
  Connection(NbdSocket socket, uint64_t id, const ExportCatalog& catalog, WorkerPool& workers,
             ClientRegistry& registry, ConnectionLimits limits, ConnectionSecurity security = {});
  ~Connection();
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  // Registers the connection and starts serving it.
  void start();
  // Before start(): the handshake answers every option with this error, so that the client says why it
  // cannot connect (the server is over its connection limit).
  void refuse(uint32_t reply_type, std::string message);
  // REQUIRES: called on executor().
  void shut_down();
  // REQUIRES: called on executor().
  void abort();

  uint64_t id() const { return id_; }
  asio::any_io_executor executor() { return socket_.get_executor(); }

 private:
  struct Outgoing {
    Reply reply;
    uint64_t accounted = 0;  // bytes counted in in_flight_bytes_ until the reply is written
  };

  asio::awaitable<void> run();
  asio::awaitable<bool> negotiate();
  // Runs the TLS handshake after STARTTLS was acknowledged; false (logged) when it failed.
  asio::awaitable<bool> start_tls();
  // Handshake-phase I/O, in clear or through TLS. False on end of file or error.
  asio::awaitable<bool> read_exact(uint8_t* out, size_t length);
  asio::awaitable<bool> write_all(const std::vector<uint8_t>& bytes);
  // Reads at least `minimum` and at most `capacity` bytes (exactly `capacity` when they are equal); returns
  // the count, less than minimum on end of file or error.
  asio::awaitable<size_t> read_at_least(uint8_t* out, size_t minimum, size_t capacity);
  // Disconnects a client still negotiating when the handshake timeout expires.
  void start_handshake_deadline(asio::steady_timer& deadline);
  void enlarge_unix_send_buffer();
  asio::awaitable<void> transmit();
  // Reads exactly `length` request bytes, through the receive buffer. False on end of file or error.
  asio::awaitable<bool> receive(uint8_t* out, size_t length);
  asio::awaitable<bool> discard_payload(uint64_t bytes);
  asio::awaitable<bool> wait_for_slot(uint64_t bytes);
  asio::awaitable<void> wait_until_idle();
  asio::awaitable<void> sleep_until_woken();
  void give_back_slot(uint64_t accounted);
  // A WRITE's payload, page-aligned so that an O_DIRECT origin (--cache none) takes it without a bounce copy.
  struct PayloadFree {
    void operator()(uint8_t* p) const { ::operator delete[](p, std::align_val_t{kPayloadAlignment}); }
  };
  static constexpr size_t kPayloadAlignment = 4096;
  using Payload = std::unique_ptr<uint8_t[], PayloadFree>;
  void dispatch(const nbd::RequestHeader& request, Payload payload, uint64_t accounted);
  // Small READs received together, run by one task and the helpers it asks for (see connection.cpp).
  struct ReadBatch {
    std::vector<nbd::RequestHeader> reads;
    std::vector<uint64_t> accounted;  // their in-flight bytes
    std::atomic<size_t> next{0};      // the next read to take; count or more: all taken
    std::atomic<size_t> done{0};      // reads whose replies are queued
  };
  // Holds a small READ for one batch with the small READs received with it.
  void hold_read(const nbd::RequestHeader& request, uint64_t accounted);
  // Hands the held READs to the workers as one batch. The reader calls it before every wait.
  void dispatch_held();
  void post_batch(std::shared_ptr<ReadBatch> batch);
  // On a worker: asks for a helper while more than one read is left, takes reads until none is left, sends.
  void run_batch(const std::shared_ptr<ReadBatch>& batch);
  // Runs a request (any thread); exceptions become EIO replies.
  Reply execute(const nbd::RequestHeader& request, std::span<const uint8_t> payload);
  // Queues a reply and sends it if no other thread is sending. Any thread.
  void send(Reply reply, uint64_t accounted) EXCLUDES(mutex_);
  // Queues a reply for the next send (a batch's; see run_batch()). Any thread.
  void queue(Reply reply, uint64_t accounted) EXCLUDES(mutex_);
  // Sends the queued replies if no other thread is sending (that one sends them). Any thread.
  void send_queued_unless_sending() EXCLUDES(mutex_);
  // While batches of several reads run, sends what is queued every kQueuedReplyWait. I/O thread only.
  void watch_batches();
  // Sends queued replies without blocking until none is left; waits for the socket on the I/O thread when
  // it is full. REQUIRES: the caller holds the sender role (sending_), which it gives up when none is left.
  void send_queued() EXCLUDES(mutex_);
  void wait_writable();  // on the I/O thread
  void release_slot(const Outgoing& sent) REQUIRES(mutex_);
  void wake_reader() REQUIRES(mutex_);
  void close_socket();  // on the I/O thread
  std::string describe() const;
  // describe() with who the client is, for refusals: its address (TCP) or process credentials (Unix
  // socket), and its TLS identity once it has one.
  std::string describe_client() const;
  // A refusal an unauthenticated peer can repeat at will: to security_.refusals under `kind`. A connection
  // counts once, by its first refusal (one refused in clear may then time out, or fail STARTTLS): the rest
  // go to the debug level.
  void log_refusal(const std::string& kind, const std::string& line);

  NbdSocket socket_;
  const uint64_t id_;
  WorkerPool& workers_;
  ClientRegistry& registry_;
  const ConnectionLimits limits_;
  const ConnectionSecurity security_;
  const std::string peer_address_;  // "192.0.2.7:50123" or "uid 1000 pid 4242", at accept

  // Set by start_tls() on the I/O thread before transmission; then used by the reader and the senders.
  std::unique_ptr<TlsChannel> tls_;

  // I/O thread only.
  Handshake handshake_;
  std::shared_ptr<const RequestExecutor> executor_;  // set when transmission starts
  std::string export_name_;
  // The worker pool's lane of its requests: the export, so that an export on a stalled disk holds up at most
  // --threads workers (worker_pool.h). An image has a lane of its own, not its origin's: a backup's large
  // reads of the image then never queue a guest's small writes to the origin behind them (a tester measured
  // p99 0.3-2 ms -> 9-12 ms for 4 KiB writes during a backup when they shared one).
  std::string lane_;
  uint64_t refusals_logged_ = 0;              // options refused in the handshake: only the first is a warning
  std::atomic<bool> refusal_counted_{false};  // log_refusal() ran (the handshake deadline's handler too)
  asio::steady_timer wakeup_;                 // the reader sleeps on it while the in-flight limit is reached
  asio::steady_timer flush_timer_;            // watch_batches()'s
  bool flush_timer_waits_ = false;            // watch_batches() armed it
  std::atomic<unsigned> batches_running_{0};  // batches of several reads with replies not all queued
  bool stopping_ = false;                     // shut_down(): no new requests
  bool negotiating_ = true;                   // the handshake deadline applies
  bool refused_ = false;                      // refuse() was called
  std::unique_ptr<uint8_t[]> inbox_;          // received bytes not yet parsed: [inbox_begin_, inbox_end_)
  size_t inbox_begin_ = 0;
  size_t inbox_end_ = 0;
  std::vector<nbd::RequestHeader> held_reads_;  // small READs not yet handed to the workers
  std::vector<uint64_t> held_accounted_;        // their in-flight bytes

  // A duplicate of the socket's descriptor for the senders: it stays open until the connection is destroyed,
  // so a worker sending while the I/O thread closes the socket never writes to a reused descriptor (closing
  // shuts the socket down, and sends fail).
  int send_fd_ = -1;
  std::atomic<bool> broken_{false};  // a send failed or abort(): replies are dropped

  ReplyBufferPool reply_buffers_;

  // Locks of nbdsnapd, in precedence order: OriginFiles::mutex_ (held while attaching at start and while a
  // list change asks the engine: the engine's locks come next, core/lock_order.h; never across the list's
  // write), then the leaves, none held while taking another: Connection::mutex_, TlsChannel::session_mutex_,
  // ClientRegistry::mutex_, ReplyBufferPool::mutex_, WorkerPool::mutex_, the log's mutex,
  // TlsCredentialStore::mutex_, Reloader::State::mutex, StopDeadline::mutex_.
  Mutex mutex_;
  unsigned in_flight_ GUARDED_BY(mutex_) = 0;  // requests read and not yet answered
  uint64_t in_flight_bytes_ GUARDED_BY(mutex_) = 0;
  // Replies not yet (completely) sent, in order. Left there without a thread holding the sender role only by
  // the workers of a batch, one of which sends them once the batch is taken (run_batch()), and the I/O
  // thread within kQueuedReplyWait if none does (watch_batches()).
  std::deque<Outgoing> outbox_ GUARDED_BY(mutex_);
  size_t front_sent_ GUARDED_BY(mutex_) = 0;        // bytes of outbox_.front() already sent
  bool sending_ GUARDED_BY(mutex_) = false;         // a thread holds the sender role
  bool reader_waiting_ GUARDED_BY(mutex_) = false;  // the reader sleeps on wakeup_
};

}  // namespace nbdsnap
