// SPDX-License-Identifier: BSD-3-Clause
// server.cpp — listeners, signal handling and the shutdown sequence of the NBD side (see server.h).
#include "server.h"

#include <netinet/in.h>
#include <pthread.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <thread>

#include "export_name.h"
#include "log.h"

namespace nbdsnap {

Server::Server(Engine& engine, const ServerConfig& config, const TlsCredentialStore* tls_credentials)
    : config_(config),
      tls_credentials_(tls_credentials),
      access_(std::make_shared<const AccessPolicy>(config.security.access)),
      catalog_(engine),
      workers_(
          {.min_threads = config.threads, .max_threads = config.threads_max, .lane_limit = config.threads}),
      signals_(io_, SIGINT, SIGTERM, SIGHUP) {
  refusals_.set_warn([](const std::string& line) { log_warning(line); });
  for (unsigned i = 0; i < config.io_threads; ++i) {
    connection_contexts_.push_back(std::make_unique<asio::io_context>(1));
  }
}

Server::~Server() {
  workers_.join();
  for (const auto& path : unix_paths_) ::unlink(path.c_str());
}

Status Server::listen(const std::vector<ActivatedSocket>& activated) {
  for (const ActivatedSocket& socket : activated) {
    if (Status status = adopt(socket); !status.is_ok()) return status;
  }
  if (!activated.empty()) return Status::ok();
  for (const auto& address : config_.listen) {
    Status status = listen_on(address);
    if (!status.is_ok()) return status;
  }
  return Status::ok();
}

Status Server::listen_on(const ListenAddress& address) {
  auto acceptor = std::make_unique<Acceptor>(io_);
  asio::error_code ec;
  const std::string text = format_listen_address(address);
  if (address.kind == ListenAddress::Kind::unix_socket) {
    std::filesystem::create_directories(std::filesystem::path(address.path).parent_path(), ec);
    struct stat st {};
    if (::stat(address.path.c_str(), &st) == 0) {
      if (!S_ISSOCK(st.st_mode)) return {Errc::already_exists, address.path + " exists and is not a socket"};
      asio::local::stream_protocol::socket probe(io_);
      probe.connect(asio::local::stream_protocol::endpoint(address.path), ec);
      if (!ec) return {Errc::busy, address.path + " is in use by another server"};
      ::unlink(address.path.c_str());
    }
    const asio::generic::stream_protocol::endpoint endpoint(
        asio::local::stream_protocol::endpoint(address.path));
    acceptor->open(endpoint.protocol(), ec);
    if (!ec) acceptor->bind(endpoint, ec);
    if (!ec) unix_paths_.push_back(address.path);
  } else {
    asio::ip::tcp::resolver resolver(io_);
    auto results =
        resolver.resolve(address.host, std::to_string(address.port), asio::ip::resolver_base::passive, ec);
    if (ec || results.empty())
      return {Errc::invalid_argument, "cannot resolve " + text + ": " + ec.message()};
    const asio::generic::stream_protocol::endpoint endpoint(results.begin()->endpoint());
    acceptor->open(endpoint.protocol(), ec);
    if (!ec) acceptor->set_option(asio::socket_base::reuse_address(true), ec);
    if (!ec) acceptor->bind(endpoint, ec);
  }
  if (!ec) acceptor->listen(asio::socket_base::max_listen_connections, ec);
  if (ec) return Status::from_errno(ec.value(), "listen on " + text);
  log_info("listening on " + text);
  start_accepting(std::move(acceptor), address);
  return Status::ok();
}

Status Server::adopt(const ActivatedSocket& socket) {
  auto acceptor = std::make_unique<Acceptor>(io_);
  const int family = socket.address.kind == ListenAddress::Kind::unix_socket ? AF_UNIX
                     : socket.address.host.find(':') != std::string::npos    ? AF_INET6
                                                                             : AF_INET;
  asio::error_code ec;
  acceptor->assign(asio::generic::stream_protocol(family, family == AF_UNIX ? 0 : IPPROTO_TCP), socket.fd,
                   ec);
  const std::string text = format_listen_address(socket.address);
  if (ec) return Status::from_errno(ec.value(), "socket activation: serving " + text);
  log_info("listening on " + text + " (socket from systemd)");
  start_accepting(std::move(acceptor), socket.address);
  return Status::ok();
}

void Server::start_accepting(std::unique_ptr<Acceptor> acceptor, const ListenAddress& address) {
  asio::co_spawn(io_, accept_clients(*acceptor, address.kind == ListenAddress::Kind::tcp), asio::detached);
  acceptors_.push_back(std::move(acceptor));
}

asio::awaitable<void> Server::accept_clients(Acceptor& acceptor, bool tcp) {
  const ConnectionLimits limits{config_.max_in_flight, config_.max_in_flight_bytes,
                                std::chrono::seconds(config_.handshake_timeout_seconds)};
  for (;;) {
    asio::error_code ec;
    NbdSocket socket = co_await acceptor.async_accept(next_connection_context(),
                                                      asio::redirect_error(asio::use_awaitable, ec));
    if (ec == asio::error::operation_aborted || !acceptor.is_open()) co_return;
    if (ec) {
      log_warning("accept: " + ec.message());
      if (ec == asio::error::no_descriptors) {  // let connections close before trying again
        asio::steady_timer pause(io_, std::chrono::milliseconds(100));
        co_await pause.async_wait(asio::redirect_error(asio::use_awaitable, ec));
      }
      continue;
    }
    if (tcp) socket.set_option(asio::ip::tcp::no_delay(true), ec);
    const uint64_t id = next_connection_id_++;
    log_debug("connection " + std::to_string(id) + ": accepted");
    const ConnectionSecurity security{config_.security.tls, tls_credentials_, access_, tcp, &refusals_};
    auto connection =
        std::make_shared<Connection>(std::move(socket), id, catalog_, workers_, registry_, limits, security);
    refuse_if_over_limit(*connection);
    connection->start();
  }
}

asio::io_context& Server::next_connection_context() {
  return *connection_contexts_[next_context_++ % connection_contexts_.size()];
}

// The refused client still gets a handshake (bounded by the handshake timeout) so that it can report why it
// cannot connect; a client that gives up at the first error holds its descriptor for one round trip. Refused
// connections do not count: one that lingers must not keep the next client out once a slot is free.
void Server::refuse_if_over_limit(Connection& connection) {
  const unsigned limit = config_.max_connections;
  if (limit == 0 || registry_.admitted() < limit) return;
  connection.refuse(nbd::kRepErrPolicy, "too many connections: this server serves at most " +
                                            std::to_string(limit) +
                                            " clients at once (nbdsnapd --max-connections)");
  ++refusals_unlogged_;
  const auto now = std::chrono::steady_clock::now();
  if (now - last_refusal_log_ < std::chrono::seconds(1)) return;
  log_warning("refused " + std::to_string(refusals_unlogged_) + " connection(s): " + std::to_string(limit) +
              " are open (--max-connections)");
  refusals_unlogged_ = 0;
  last_refusal_log_ = now;
}

void Server::run() {
  wait_for_signal();
  asio::co_spawn(io_, flush_refusals(), asio::detached);
  {
    // The other I/O threads run until their last connection is gone once the guards are released: after the
    // shutdown sequence on this thread has closed or aborted every connection (drain_connections).
    // Released and joined however run() is left (also if io_.run() throws), so no thread outlives its
    // context.
    struct IoThreads {
      std::vector<asio::executor_work_guard<asio::io_context::executor_type>> guards;
      std::vector<std::thread> threads;
      ~IoThreads() {
        for (auto& guard : guards) guard.reset();
        for (auto& thread : threads) thread.join();
      }
    } io_threads;
    for (auto& context : connection_contexts_) {
      io_threads.guards.push_back(asio::make_work_guard(*context));
      io_threads.threads.emplace_back([&context = *context] {
        ::pthread_setname_np(::pthread_self(), "nbdsnapd-io");  // what top -H and /proc/PID/task/*/comm show
        context.run();
      });
    }
    io_.run();
  }
  refusals_.flush();  // what a flood left counted, once every I/O thread has ended
}

asio::awaitable<void> Server::flush_refusals() {
  while (!shutting_down_) {
    refusal_flush_.expires_at(
        refusals_.next_due().value_or(std::chrono::steady_clock::now() + std::chrono::seconds(60)));
    asio::error_code ignored;  // cancelled at shutdown
    co_await refusal_flush_.async_wait(asio::redirect_error(asio::use_awaitable, ignored));
    refusals_.flush_due();
  }
}

void Server::wait_for_signal() {
  signals_.async_wait([this](asio::error_code ec, int signal) {
    if (ec) return;
    if (signal == SIGHUP) {
      log_info("received SIGHUP: reloading the log level and TLS credentials");
      if (reloader_) reloader_->request();  // on its own thread: this one goes on accepting clients
      wait_for_signal();
      return;
    }
    log_info(std::string("received ") + (signal == SIGTERM ? "SIGTERM" : "SIGINT") + ": shutting down");
    begin_shutdown();
  });
}

void Server::request_shutdown() {
  asio::post(io_, [this] { begin_shutdown(); });
}

void Server::begin_shutdown() {
  if (shutting_down_) return;
  shutting_down_ = true;
  notify_service_manager("STOPPING=1");
  if (on_stop_) on_stop_();
  refusal_flush_.cancel();
  asio::error_code ignored;
  signals_.cancel(ignored);
  for (auto& acceptor : acceptors_) acceptor->close(ignored);
  const auto connections = registry_.all();
  if (!connections.empty()) {
    log_info("waiting up to " + std::to_string(kShutdownGrace.count()) + " ms for " +
             std::to_string(connections.size()) + " connections to finish in-flight requests");
  }
  for (const auto& connection : connections) {
    asio::post(connection->executor(), [connection] { connection->shut_down(); });  // on its own I/O thread
  }
  asio::co_spawn(io_, drain_connections(), asio::detached);
}

// Gives connections time to send the replies of in-flight requests and to answer one more option; one whose
// client stopped reading replies, or says nothing in its handshake, is closed after the grace period so that
// a stuck client cannot keep nbdsnapd from saving state and exiting.
asio::awaitable<void> Server::drain_connections() {
  const auto deadline = std::chrono::steady_clock::now() + kShutdownGrace;
  asio::steady_timer tick(io_);
  while (registry_.size() > 0) {
    if (std::chrono::steady_clock::now() >= deadline) {
      log_warning("closing " + std::to_string(registry_.size()) + " connections that did not finish in time");
      for (const auto& connection : registry_.all()) {
        asio::post(connection->executor(), [connection] { connection->abort(); });
      }
      co_return;
    }
    tick.expires_after(std::chrono::milliseconds(50));
    asio::error_code ignored;
    co_await tick.async_wait(asio::redirect_error(asio::use_awaitable, ignored));
  }
  co_return;
}

bool Server::disconnect_origin_clients(const std::string& origin, std::chrono::milliseconds timeout) {
  for (const auto& connection : registry_.of_origin(origin)) {
    asio::post(connection->executor(), [connection] { connection->abort(); });
  }
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (registry_.count_of_origin(origin) > 0) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return true;
}

std::string Server::export_uri(const std::string& raw_name) const {
  if (config_.listen.empty()) return {};
  const ListenAddress& address = config_.listen.front();
  std::string uri;
  if (address.kind == ListenAddress::Kind::unix_socket) {
    uri = nbd_unix_uri(raw_name, address.path);
  } else {
    const std::string export_name = export_name_uri_path(raw_name);
    const bool ipv6 = address.host.find(':') != std::string::npos;
    uri = "nbd://" + (ipv6 ? "[" + address.host + "]" : address.host) + ":" + std::to_string(address.port) +
          "/" + export_name;
  }
  // Under --tls require only TLS clients get in: nbd:// -> nbds://, nbd+unix:// -> nbds+unix://.
  if (config_.security.tls == TlsMode::require) uri.insert(3, "s");
  return uri;
}

std::string Server::remote_export_uri(const std::string& raw_name, std::string& hint) const {
  hint.clear();
  const auto tcp = std::find_if(config_.listen.begin(), config_.listen.end(),
                                [](const ListenAddress& a) { return a.kind == ListenAddress::Kind::tcp; });
  const std::string scheme = config_.security.tls == TlsMode::off ? "nbd://" : "nbds://";
  const std::string path = "/" + export_name_uri_path(raw_name);
  if (tcp == config_.listen.end()) {
    hint =
        "nbdsnapd serves NBD on Unix sockets only, which another machine cannot open: add --listen "
        "tcp:HOST:PORT to read images remotely";
    return {};
  }
  const std::string port = std::to_string(tcp->port);
  if (tcp->host.empty() || tcp->host == "0.0.0.0" || tcp->host == "::") {
    hint = "open " + scheme + "SERVER:" + port + path + ", SERVER being this server's name or address (it " +
           "listens on every address: --listen " + format_listen_address(*tcp) + ")";
    return {};
  }
  const bool ipv6 = tcp->host.find(':') != std::string::npos;
  return scheme + (ipv6 ? "[" + tcp->host + "]" : tcp->host) + ":" + port + path;
}

}  // namespace nbdsnap
