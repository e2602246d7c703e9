// SPDX-License-Identifier: BSD-3-Clause
// control_socket.h — serves a line protocol on a Unix stream socket, or on TCP with TLS only, with one thread
// per client.
//
// Both front ends use it to serve the engine's Control (one JSON request per line, one reply per line).
// The handler runs on the client's thread and may block (events-wait) without holding up other clients.
// At most Limits::max_sessions clients are served at once on each listener; one more gets a `busy` error
// reply and is closed (the Unix socket and the TCP listener count apart, so neither can lock out the other).
// On TCP every client must complete a TLS handshake within Limits::handshake_timeout and authenticate (a
// PSK, or a client certificate signed by the CA: the credential store must verify peers), then pass the
// admission check (a role, for nbdsnapd) before it counts as a session; the handler gets who it is.
// Handshakes run on one thread for all (tls_handshaker.h): a client gets its own thread only once admitted.
// An admitted TCP client that sends no request for Limits::idle_timeout after its last reply is closed (a
// client waiting for a reply, as in events-wait, is not idle). The Unix socket has no idle timeout: its file
// mode decides who connects, as for libvirt's Unix socket.
// Refusals (failed handshakes, no admission, busy) are logged through a RefusalLog: a flood costs a few
// lines a minute.
// A line longer than kMaxLineBytes gets a bad_request error reply (docs/control.md), then the connection
// ends.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <list>
#include <memory>
#include <string>
#include <thread>

#include "mutex.h"
#include "peer_identity.h"
#include "refusal_log.h"
#include "tls_credentials.h"
#include "tls_handshaker.h"

namespace nbdsnap {

class ControlChannel;  // a client's connection, plain or TLS (control_socket.cpp)

class ControlSocketServer {
 public:
  using LineHandler = std::function<std::string(const std::string& line)>;
  // For clients that may differ in what they are allowed (TCP with TLS); Unix clients are `local`.
  using PeerLineHandler = std::function<std::string(const std::string& line, const PeerIdentity& peer)>;
  static constexpr std::chrono::seconds kTlsHandshakeTimeout{10};
  // A client that does not read its reply for this long is dropped (TLS sends only).
  static constexpr std::chrono::seconds kTlsSendTimeout{60};
  static constexpr size_t kMaxLineBytes = 1u << 20;  // docs/control.md

  // Bounds of a listener. max_sessions applies to both kinds; the others to TCP only (start_tls).
  struct Limits {
    // Clients served at once (a thread each); one more gets a `busy` error reply and is closed.
    unsigned max_sessions = 32;
    // The option that sets max_sessions, named in the busy reply ("nbdsnapd --control-max-sessions");
    // empty: a fixed limit.
    std::string max_sessions_option;
    // Connections waiting for their TLS handshake; one more closes the oldest (tls_handshaker.h).
    size_t max_handshakes = 128;
    std::chrono::milliseconds handshake_timeout = kTlsHandshakeTimeout;
    // An admitted TCP client with no request for this long after its last reply is closed; 0: never.
    std::chrono::milliseconds idle_timeout = std::chrono::seconds(300);
    std::string idle_timeout_option;  // named in the log line of such a close
  };
  // TCP: whether an authenticated peer may have a session; empty to admit it, else the refusal's message
  // (sent as a permission_denied error reply before the connection closes; it never counts as a session).
  using PeerAdmission = std::function<std::string(const PeerIdentity& peer)>;

  ControlSocketServer() = default;
  ~ControlSocketServer();  // stop()
  ControlSocketServer(const ControlSocketServer&) = delete;
  ControlSocketServer& operator=(const ControlSocketServer&) = delete;

  // Binds PATH (removing a stale socket file, refusing a live one), chmod 0600 (0660 and that group when
  // `group` names one), and starts accepting. Returns false with a message in `error` on failure.
  bool start(const std::string& path, LineHandler handler, std::string& error, const std::string& group = "");
  // start() in two halves, for a server whose socket must exist before it may start threads (the filter:
  // nbdkit forks, to daemonize or for --run, after .get_ready and before .after_fork, and threads do not
  // cross a fork). listen_unix() binds and sets up PATH as start() does and listens: clients may connect and
  // wait in the backlog. Returns the descriptor, or -1 with a message in `error`.
  static int listen_unix(const std::string& path, std::string& error, const std::string& group = "");
  // Serves `fd` from listen_unix() as start() would, removing PATH at stop(). Takes `fd` either way: on
  // failure it is closed and PATH removed.
  bool serve_listening(int fd, const std::string& path, LineHandler handler, std::string& error);
  // As start(), on a listening Unix socket someone else bound (systemd's socket activation): takes `fd`,
  // serves it, and on stop() closes it without shutting it down or removing `path` (only named in messages),
  // so that its owner can pass it on again.
  bool adopt(int fd, const std::string& path, LineHandler handler, std::string& error);
  // Listens on HOST:PORT (TCP) and serves TLS clients only, with the store's current credentials for each
  // new client (a reload applies to the next one). REQUIRES: the store is loaded, verifies peers when it has
  // X.509 credentials, and outlives this server.
  bool start_tls(const std::string& host, uint16_t port, const TlsCredentialStore& credentials,
                 PeerLineHandler handler, std::string& error);
  // Where refused connections and closed idle sessions are reported (the front end's log), the listener's
  // bounds, and (TCP) who may have a session. Before start(), adopt() or start_tls().
  void set_warning_log(std::function<void(const std::string&)> warn) { warn_ = std::move(warn); }
  void set_limits(const Limits& limits) { limits_ = limits; }
  void set_peer_admission(PeerAdmission admission) { admission_ = std::move(admission); }
  // Stops accepting, shuts down client connections, joins all threads, removes the socket file. Returns as
  // soon as every handler running returns: a handler that waits (events-wait) must have been released
  // before, for good (EventLog::stop()). Clients that send half a line or do not read their replies do not
  // hold it up (their descriptors are shut down).
  void stop() { (void)stop_within(std::chrono::milliseconds::max()); }
  // The same, but waits at most `limit` for the handlers still running (a request whose file system stopped
  // answering runs as long): false when one still ran, whose thread is then left running. Its handler may
  // still use this object and whatever it was given: the caller must not destroy them; nbdsnapd ends with
  // _Exit after saving its state.
  bool stop_within(std::chrono::milliseconds limit);

 private:
  bool start_accepting(int fd, std::string& error);
  void accept_loop();
  void reap_finished_clients() EXCLUDES(clients_mutex_);
  void start_tls_handshake(int fd, const std::string& peer_address);
  void serve_authenticated(int fd, const std::string& peer_address, std::unique_ptr<TlsStream> stream)
      EXCLUDES(clients_mutex_);
  // Starts the client's thread; on failure closes fd (and the channel) and returns false. REQUIRES: the
  // caller counted the client (sessions_) when it is remote.
  bool start_client_thread(int fd, std::unique_ptr<ControlChannel> channel, PeerIdentity peer,
                           std::string peer_address) REQUIRES(clients_mutex_);
  void serve_client(int fd, std::unique_ptr<ControlChannel> channel, const PeerIdentity& peer,
                    const std::string& peer_address) EXCLUDES(clients_mutex_);
  void serve_local(int fd) EXCLUDES(clients_mutex_);
  // Tells a client refused before its session why (an error reply line), then closes it.
  static void refuse(int fd, std::unique_ptr<ControlChannel> channel, const std::string& reply_line);
  std::string busy_reply() const;     // the error reply line
  std::string busy_log_text() const;  // "2 sessions are open (--control-max-sessions 2)"
  // When a client waiting for its next request is closed (never for Unix clients).
  std::chrono::steady_clock::time_point idle_deadline(const PeerIdentity& peer) const;
  std::string path_;                         // empty for TCP
  const TlsCredentialStore* tls_ = nullptr;  // TCP: every client speaks TLS
  PeerLineHandler handler_;
  std::function<void(const std::string&)> warn_;
  Limits limits_;
  PeerAdmission admission_;
  std::unique_ptr<RefusalLog> refusals_;       // made by start_accepting()
  std::unique_ptr<TlsHandshaker> handshaker_;  // TCP only
  int listen_fd_ = -1;
  bool adopted_ = false;  // listen_fd_ is not ours to shut down: accept_loop polls stopping_ instead
  std::atomic<bool> stopping_{false};
  std::thread acceptor_;
  Mutex clients_mutex_;  // a leaf lock; held while closing a client's descriptor (see control_socket.cpp)
  std::list<std::pair<int, std::thread>> clients_ GUARDED_BY(clients_mutex_);
  unsigned sessions_ GUARDED_BY(clients_mutex_) = 0;  // clients with a thread
};

}  // namespace nbdsnap
