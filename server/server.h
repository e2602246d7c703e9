// SPDX-License-Identifier: BSD-3-Clause
// server.h — nbdsnapd's NBD listeners: accepts clients on Unix and TCP sockets and runs their connections.
//
// --io-threads I/O threads run the connections' sockets (Asio), each its own io_context, and get the
// connections dealt out in turn as they are accepted. A connection stays on its thread for its whole life, so
// everything connection.h says of "the I/O thread" holds per connection; one thread for every socket could
// not keep up with dozens of busy connections (bench T8, 32 origins). The thread that calls run() has the
// listeners, the signals and the shutdown sequence, and no connection: nothing a client or a disk does can
// keep it from accepting clients or from stopping the server. A pool of workers (worker_pool.h) runs the
// engine calls. SIGTERM/SIGINT start a clean shutdown: listeners close, connections stop reading and finish
// what is in flight, clients still negotiating get NBD_REP_ERR_SHUTDOWN for their next option, then run()
// returns. No client can hold that up: after kShutdownGrace every connection left is closed
// (docs/nbdsnapd.pod, SIGNALS). SIGHUP calls the reload handler (TLS credentials are read again) and serving
// goes on.
#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <asio.hpp>

#include "client_registry.h"
#include "connection.h"
#include "engine_exports.h"
#include "reloader.h"
#include "server_config.h"
#include "systemd_service.h"
#include "worker_pool.h"

namespace nbdsnap {

class Server {
 public:
  // tls_credentials: the NBD side's, loaded, when config.security.tls is not off (outlives the server).
  Server(Engine& engine, const ServerConfig& config, const TlsCredentialStore* tls_credentials = nullptr);
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Binds every listen address (a stale Unix socket file is replaced, a live one refused); or,
  // socket-activated, serves the sockets systemd passed instead (never unlinked: systemd_service.h).
  Status listen(const std::vector<ActivatedSocket>& activated = {});
  // Serves until a signal or request_shutdown(), then until every connection has finished (the other I/O
  // threads are started here and joined before it returns).
  void run();
  // Thread-safe.
  void request_shutdown();
  // What SIGHUP does, on a thread of its own (reloader.h), between RELOADING=1 and READY=1 to systemd.
  // Before run().
  void set_reload_handler(std::function<void()> reload) {
    reloader_ = std::make_unique<Reloader>(std::move(reload));
  }

  // Called once, on run()'s thread, when the shutdown begins (a signal or request_shutdown()). Before run().
  void set_stop_handler(std::function<void()> on_stop) { on_stop_ = std::move(on_stop); }

  // After run(): waits at most Reloader::kStopWait for a reload under way; false when one still waits for
  // its files (Reloader::stop).
  bool stop_reloads() { return !reloader_ || reloader_->stop(); }

  const ClientRegistry& clients() const { return registry_; }
  // Closes the connections of an origin and of its images, and waits (bounded) until they are gone.
  bool disconnect_origin_clients(const std::string& origin, std::chrono::milliseconds timeout);
  // An NBD URI for an export on the first listen address.
  std::string export_uri(const std::string& export_name) const;
  // The URI a remote control client, on another machine, opens the export with: on the first TCP listen
  // address (nbds:// unless --tls off). Empty, with `hint` saying why and what to use, when there is no TCP
  // listener or it listens on every address (the server does not know which name reaches it).
  std::string remote_export_uri(const std::string& export_name, std::string& hint) const;

 private:
  using Acceptor = asio::basic_socket_acceptor<asio::generic::stream_protocol>;
  Status listen_on(const ListenAddress& address);
  Status adopt(const ActivatedSocket& socket);
  void start_accepting(std::unique_ptr<Acceptor> acceptor, const ListenAddress& address);
  asio::awaitable<void> accept_clients(Acceptor& acceptor, bool tcp);
  // The io_context of the next connection: each I/O thread's in turn. On the I/O thread of run().
  asio::io_context& next_connection_context();
  // Over --max-connections, a new client is told so in the handshake. On the I/O thread.
  void refuse_if_over_limit(Connection& connection);
  void wait_for_signal();
  void begin_shutdown();  // on the I/O thread
  asio::awaitable<void> drain_connections();
  // Writes refusals_' summaries when due, until shutdown.
  asio::awaitable<void> flush_refusals();
  // How long connections may take, after SIGTERM, to send the replies of requests in flight (a client that
  // reads them gets them in far less) and to negotiate one more option (answered with ERR_SHUTDOWN). Engine
  // calls in flight are not cut short: they always return, and run() waits for them. Small enough that
  // nbdsnapd stops within 2 s whatever its clients do, which the SIGTERM tests check.
  static constexpr std::chrono::milliseconds kShutdownGrace{1000};
  std::function<void()> on_stop_;

  const ServerConfig& config_;
  const TlsCredentialStore* tls_credentials_;
  const std::shared_ptr<const AccessPolicy> access_;
  std::unique_ptr<Reloader> reloader_;
  EngineCatalog catalog_;
  asio::io_context io_{1};  // run()'s thread: listeners, signals, shutdown
  // The I/O threads' contexts (--io-threads), each run by one thread while run() runs.
  std::vector<std::unique_ptr<asio::io_context>> connection_contexts_;
  size_t next_context_ = 0;  // I/O thread of run() only
  WorkerPool workers_;       // --threads kept, up to --threads-max while some hang (worker_pool.h)
  asio::signal_set signals_;
  std::vector<std::unique_ptr<Acceptor>> acceptors_;
  std::vector<std::string> unix_paths_;  // removed at exit
  ClientRegistry registry_;
  std::atomic<uint64_t> next_connection_id_{1};
  bool shutting_down_ = false;  // I/O thread only
  std::chrono::steady_clock::time_point
      last_refusal_log_{};          // I/O thread only: refusals are logged once a second
  uint64_t refusals_unlogged_ = 0;  // I/O thread only
  // NBD clients refused before they are known (connection.h): failed TLS handshakes, options in clear under
  // --tls require, handshake time-outs; counted by kind, summed up by refusal_flush_.
  RefusalLog refusals_{"", "NBD connections"};
  asio::steady_timer refusal_flush_{io_};
};

}  // namespace nbdsnap
