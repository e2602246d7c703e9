// SPDX-License-Identifier: BSD-3-Clause
// control_socket.cpp — the Unix stream socket behind both front ends' control servers.
//
// Design notes. One acceptor thread, one thread per client. A client thread closes its own descriptor when it
// ends, under clients_mutex_, and marks its entry finished by setting the descriptor to -1; the acceptor
// joins finished entries before each accept, so the number of threads follows the number of live clients, not
// the number of connections ever made. stop() shuts the listening descriptor down (which wakes accept() on
// Linux) and shuts every live client descriptor down (which wakes recv()); because descriptors are closed
// only under the mutex, stop() never shuts down a descriptor number that was closed and reused elsewhere. A
// handler that blocks on its own (events-wait) must be released by its owner before stop(), for good:
// EventLog::stop(). A one-time wake-up is not enough, because a client may have its next request already
// received (or send one before its descriptor is shut down), and that request's wait would hold up the join.
// On TCP, a connection first waits in the TlsHandshaker (one thread for all, bounded in number and time) and
// gets its thread only once authenticated and admitted, within Limits::max_sessions (the Unix socket's
// clients are counted against the same bound when accepted); stop() stops the handshaker after the acceptor
// and before shutting the clients down, so no client thread starts behind its back. A TLS client's waits are
// poll(2)s, which shutting its descriptor down ends as it ends recv(); the wait for its next request also
// ends at the idle deadline, which the end of each reply moves on (a request in progress is never idle).
#include "control_socket.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <grp.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <utility>
#include <vector>

#include "control_client_watch.h"
#include "tls_stream.h"

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

namespace nbdsnap {
namespace {

constexpr size_t kMaxLineBytes = ControlSocketServer::kMaxLineBytes;
constexpr size_t kReadChunkBytes = 64u << 10;
// After an overlong line, this much more is read and dropped while looking for its end, so that the client's
// send completes and it reads the error reply (rather than a connection reset); a client sending more is cut
// off.
constexpr size_t kMaxDiscardBytes = 64u << 20;
constexpr int kAdoptedPollMs = 200;  // how soon stop() is noticed on an adopted socket

std::string errno_text(const std::string& what, int err) {
  return what + ": " + std::strerror(err);
}

bool fill_address(const std::string& path, sockaddr_un& address, std::string& error) {
  address = {};
  address.sun_family = AF_UNIX;
  if (path.empty() || path.size() >= sizeof(address.sun_path)) {
    error = "control socket path '" + path + "' is empty or longer than " +
            std::to_string(sizeof(address.sun_path) - 1) + " bytes";
    return false;
  }
  std::memcpy(address.sun_path, path.c_str(), path.size() + 1);
  return true;
}

// Removes a socket file nobody listens on; refuses a live socket or a file that is not a socket.
bool remove_stale_socket(const std::string& path, const sockaddr_un& address, std::string& error) {
  struct stat st {};
  if (lstat(path.c_str(), &st) != 0) {
    if (errno == ENOENT) return true;
    error = errno_text("cannot inspect " + path, errno);
    return false;
  }
  if (!S_ISSOCK(st.st_mode)) {
    error = path + " exists and is not a socket";
    return false;
  }
  int probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (probe < 0) {
    error = errno_text("socket", errno);
    return false;
  }
  int rc = connect(probe, reinterpret_cast<const sockaddr*>(&address), sizeof(address));
  int err = errno;
  close(probe);
  if (rc == 0) {
    error = path + " is in use: another process is listening on it";
    return false;
  }
  if (err != ECONNREFUSED && err != ENOENT) {
    error = errno_text("cannot probe " + path, err);
    return false;
  }
  if (unlink(path.c_str()) != 0 && errno != ENOENT) {
    error = errno_text("cannot remove stale socket " + path, errno);
    return false;
  }
  return true;
}

bool send_all(int fd, const std::string& data) {
  size_t done = 0;
  while (done < data.size()) {
    ssize_t n = send(fd, data.data() + done, data.size() - done, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    done += static_cast<size_t>(n);
  }
  return true;
}

}  // namespace

// A client's connection: plain on the Unix socket, TLS on TCP.
class ControlChannel {
 public:
  virtual ~ControlChannel() = default;
  // Some bytes, 0 at the end, -1 on failure or (TLS) when `deadline` passed (timed_out() then says so).
  virtual ssize_t receive(char* buffer, size_t capacity, std::chrono::steady_clock::time_point deadline) = 0;
  // All of data within timeout (TLS; a Unix socket's send is ended by stop() instead).
  virtual bool send(const std::string& data, std::chrono::milliseconds timeout) = 0;
  virtual bool timed_out() const { return false; }
};

namespace {

class PlainChannel final : public ControlChannel {
 public:
  explicit PlainChannel(int fd) : fd_(fd) {}
  // No deadline: the Unix socket has no idle timeout (control_socket.h).
  ssize_t receive(char* buffer, size_t capacity, std::chrono::steady_clock::time_point) override {
    for (;;) {
      const ssize_t n = recv(fd_, buffer, capacity, 0);
      if (n < 0 && errno == EINTR) continue;
      return n;
    }
  }
  // Unix sockets: blocking sends, which stop() ends by shutting the descriptor down.
  bool send(const std::string& data, std::chrono::milliseconds) override { return send_all(fd_, data); }

 private:
  int fd_;
};

class TlsClientChannel final : public ControlChannel {
 public:
  explicit TlsClientChannel(std::unique_ptr<TlsStream> stream) : stream_(std::move(stream)) {}
  ~TlsClientChannel() override { stream_->bye(); }
  // The next request may be long in coming (a client between commands): the idle deadline or stop() ends the
  // wait.
  ssize_t receive(char* buffer, size_t capacity, std::chrono::steady_clock::time_point deadline) override {
    return stream_->read_some(buffer, capacity, deadline);
  }
  bool timed_out() const override { return stream_->timed_out(); }
  bool send(const std::string& data, std::chrono::milliseconds timeout) override {
    return stream_->write_all(data, std::chrono::steady_clock::now() + timeout);
  }

 private:
  std::unique_ptr<TlsStream> stream_;
};

// chmod 0660 and chown to GROUP (a name or a number).
bool give_to_group(const std::string& path, const std::string& group_name, std::string& error) {
  gid_t gid = 0;
  if (const struct group* entry = getgrnam(group_name.c_str())) {
    gid = entry->gr_gid;
  } else {
    char* end = nullptr;
    const unsigned long number = std::strtoul(group_name.c_str(), &end, 10);
    if (group_name.empty() || *end != '\0') {
      error = "group '" + group_name + "' does not exist";
      return false;
    }
    gid = gid_t(number);
  }
  if (chown(path.c_str(), uid_t(-1), gid) != 0 || chmod(path.c_str(), 0660) != 0) {
    error = errno_text("cannot give " + path + " to group " + group_name, errno);
    return false;
  }
  return true;
}

}  // namespace

ControlSocketServer::~ControlSocketServer() {
  stop();
}

bool ControlSocketServer::start(const std::string& path, LineHandler handler, std::string& error,
                                const std::string& group) {
  if (listen_fd_ >= 0) {
    error = "control socket server already started on " + path_;
    return false;
  }
  const int fd = listen_unix(path, error, group);
  return fd >= 0 && serve_listening(fd, path, std::move(handler), error);
}

int ControlSocketServer::listen_unix(const std::string& path, std::string& error, const std::string& group) {
  sockaddr_un address;
  if (!fill_address(path, address, error) || !remove_stale_socket(path, address, error)) return -1;
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    error = errno_text("socket", errno);
    return -1;
  }
  if (bind(fd, reinterpret_cast<const sockaddr*>(&address), sizeof(address)) != 0) {
    error = errno_text("cannot bind " + path, errno);
    close(fd);
    return -1;
  }
  // Nobody can connect before listen(), so tightening the mode here leaves no window.
  if (chmod(path.c_str(), 0600) != 0 || (!group.empty() && !give_to_group(path, group, error)) ||
      listen(fd, 64) != 0) {
    if (error.empty()) error = errno_text("cannot set up " + path, errno);
    close(fd);
    unlink(path.c_str());
    return -1;
  }
  return fd;
}

bool ControlSocketServer::serve_listening(int fd, const std::string& path, LineHandler handler,
                                          std::string& error) {
  if (listen_fd_ >= 0) {
    error = "control socket server already started on " + path_;
    close(fd);
    return false;
  }
  path_ = path;
  handler_ = [handler = std::move(handler)](const std::string& line, const PeerIdentity&) {
    return handler(line);
  };
  if (start_accepting(fd, error)) return true;
  path_.clear();
  unlink(path.c_str());
  return false;
}

bool ControlSocketServer::adopt(int fd, const std::string& path, LineHandler handler, std::string& error) {
  if (listen_fd_ >= 0) {
    error = "control socket server already started on " + path_;
    return false;
  }
  // Non-blocking, so that a client gone between poll() and accept4() cannot hold up stop().
  if (fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) != 0) {
    error = errno_text("cannot use the control socket passed for " + path, errno);
    return false;
  }
  path_.clear();  // not ours to unlink
  adopted_ = true;
  handler_ = [handler = std::move(handler)](const std::string& line, const PeerIdentity&) {
    return handler(line);
  };
  return start_accepting(fd, error);
}

bool ControlSocketServer::start_tls(const std::string& host, uint16_t port,
                                    const TlsCredentialStore& credentials, PeerLineHandler handler,
                                    std::string& error) {
  const std::string where = host + ":" + std::to_string(port);
  if (listen_fd_ >= 0) {
    error = "control server already started";
    return false;
  }
  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE;
  addrinfo* found = nullptr;
  if (int rc = getaddrinfo(host.c_str(), std::to_string(port).c_str(), &hints, &found); rc != 0) {
    error = "cannot resolve " + where + ": " + gai_strerror(rc);
    return false;
  }
  int fd = socket(found->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  const int on = 1;
  const bool bound = fd >= 0 && setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on)) == 0 &&
                     bind(fd, found->ai_addr, found->ai_addrlen) == 0 && listen(fd, 64) == 0;
  const int err = errno;
  freeaddrinfo(found);
  if (!bound) {
    error = errno_text("cannot listen on " + where, err);
    if (fd >= 0) close(fd);
    return false;
  }
  path_.clear();
  tls_ = &credentials;
  handler_ = std::move(handler);
  return start_accepting(fd, error);
}

bool ControlSocketServer::start_accepting(int fd, std::string& error) {
  stopping_ = false;
  listen_fd_ = fd;
  refusals_ =
      std::make_unique<RefusalLog>(tls_ != nullptr ? "remote control: " : "control socket: ", "connections");
  refusals_->set_warn(warn_);
  if (tls_ != nullptr) {
    handshaker_ = std::make_unique<TlsHandshaker>(
        limits_.max_handshakes, limits_.handshake_timeout,
        [this](int client_fd, const std::string& peer_address, std::unique_ptr<TlsStream> stream) {
          serve_authenticated(client_fd, peer_address, std::move(stream));
        },
        *refusals_);
    if (!handshaker_->start(error)) {
      handshaker_.reset();
      close(fd);
      listen_fd_ = -1;
      return false;
    }
  }
  try {
    acceptor_ = std::thread([this] { accept_loop(); });
  } catch (const std::exception& e) {
    error = std::string("cannot start the control socket thread: ") + e.what();
    handshaker_.reset();
    close(fd);
    listen_fd_ = -1;
    return false;
  }
  return true;
}

bool ControlSocketServer::stop_within(std::chrono::milliseconds limit) {
  const bool listening = listen_fd_ >= 0;
  if (listening) {
    stopping_ = true;
    if (!adopted_) shutdown(listen_fd_, SHUT_RDWR);  // wakes accept4(); an adopted socket's poll() times out
    if (acceptor_.joinable()) acceptor_.join();
    // After the acceptor (which feeds it) and before the clients (which it starts): no client starts after
    // this.
    if (handshaker_) handshaker_->stop();
    MutexLock lock(clients_mutex_);
    for (auto& [fd, thread] : clients_)
      if (fd >= 0) shutdown(fd, SHUT_RDWR);
  }
  // The entries stay in clients_ while their handlers run: each marks its own finished (fd -1) at its end.
  // A handler an earlier stop_within() left running is waited for here again (the destructor waits for it
  // for good: its thread uses this object).
  const auto deadline = limit == std::chrono::milliseconds::max()
                            ? std::chrono::steady_clock::time_point::max()
                            : std::chrono::steady_clock::now() + limit;
  bool all_finished = false;
  for (;;) {
    {
      MutexLock lock(clients_mutex_);
      all_finished =
          std::none_of(clients_.begin(), clients_.end(), [](const auto& c) { return c.first >= 0; });
    }
    if (all_finished || std::chrono::steady_clock::now() >= deadline) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  reap_finished_clients();
  if (!all_finished) {
    // The handlers still running keep their entries (they look for them at their end), without a thread
    // to join: the caller goes on without them.
    MutexLock lock(clients_mutex_);
    for (auto& [fd, thread] : clients_)
      if (thread.joinable()) thread.detach();
  }

  if (listening) {
    handshaker_.reset();
    refusals_->flush();  // what a flood left counted
    close(listen_fd_);
    listen_fd_ = -1;
    if (!path_.empty()) unlink(path_.c_str());
  }
  return all_finished;
}

void ControlSocketServer::reap_finished_clients() {
  // Join the threads of clients that have gone (their entries carry fd -1); a thread stop_within() detached
  // has nothing to join.
  std::list<std::pair<int, std::thread>> finished;
  {
    MutexLock lock(clients_mutex_);
    for (auto it = clients_.begin(); it != clients_.end();) {
      auto next = std::next(it);
      if (it->first < 0) finished.splice(finished.end(), clients_, it);
      it = next;
    }
  }
  for (auto& [fd, thread] : finished)
    if (thread.joinable()) thread.join();
}

namespace {

// "HOST:PORT" ("[HOST]:PORT" for IPv6) of a TCP peer, for logs.
std::string peer_address_text(const sockaddr_storage& address) {
  char host[INET6_ADDRSTRLEN] = "?";
  uint16_t port = 0;
  if (address.ss_family == AF_INET) {
    const auto& in = reinterpret_cast<const sockaddr_in&>(address);
    inet_ntop(AF_INET, &in.sin_addr, host, sizeof(host));
    port = ntohs(in.sin_port);
    return std::string(host) + ":" + std::to_string(port);
  }
  if (address.ss_family == AF_INET6) {
    const auto& in6 = reinterpret_cast<const sockaddr_in6&>(address);
    inet_ntop(AF_INET6, &in6.sin6_addr, host, sizeof(host));
    port = ntohs(in6.sin6_port);
  }
  return "[" + std::string(host) + "]:" + std::to_string(port);
}

// A reply line in the control protocol's error form (docs/control.md), for refusals made before any handler.
std::string error_reply_line(const char* code, int err, const std::string& message) {
  std::string escaped;
  for (char c : message) {
    if (c == '"' || c == '\\') escaped.push_back('\\');
    if (static_cast<unsigned char>(c) >= 0x20) escaped.push_back(c);
  }
  return std::string("{\"ok\":false,\"error\":{\"code\":\"") + code + "\",\"errno\":" + std::to_string(err) +
         ",\"message\":\"" + escaped + "\"}}\n";
}

}  // namespace

void ControlSocketServer::accept_loop() {
  while (!stopping_) {
    reap_finished_clients();
    if (adopted_) {
      pollfd ready{listen_fd_, POLLIN, 0};
      if (poll(&ready, 1, kAdoptedPollMs) == 0) continue;
    }
    sockaddr_storage address{};
    socklen_t length = sizeof(address);
    int fd = accept4(listen_fd_, reinterpret_cast<sockaddr*>(&address), &length, SOCK_CLOEXEC);
    if (fd < 0) {
      if (stopping_) break;
      if (errno == EINTR || errno == ECONNABORTED || errno == EAGAIN) continue;
      if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
        std::this_thread::sleep_for(std::chrono::milliseconds(100));  // let clients go, then retry
        continue;
      }
      break;  // the listening socket is gone
    }
    if (tls_ != nullptr) {
      start_tls_handshake(fd, peer_address_text(address));
      continue;
    }
    serve_local(fd);
  }
}

void ControlSocketServer::serve_local(int fd) {
  auto channel = std::make_unique<PlainChannel>(fd);
  {
    MutexLock lock(clients_mutex_);
    if (stopping_) {
      close(fd);
      return;
    }
    if (sessions_ < limits_.max_sessions) {
      ++sessions_;
      PeerIdentity local;
      local.local = true;
      if (!start_client_thread(fd, std::move(channel), local, "local")) --sessions_;
      return;
    }
  }
  // One too many: a local user could otherwise take a thread per connection until nbdsnapd runs out.
  refuse(fd, std::move(channel), busy_reply());
  refusals_->report("busy", "a local client", "refused a local client: " + busy_log_text());
}

void ControlSocketServer::start_tls_handshake(int fd, const std::string& peer_address) {
  std::unique_ptr<TlsSession> session;
  const auto credentials = tls_->current();
  Status created = credentials ? TlsSession::create(credentials, fd, fd, "", session)
                               : Status{Errc::bad_state, "no TLS credentials loaded"};
  if (!created) {
    if (warn_) warn_("remote control: refused " + peer_address + ": cannot start TLS: " + created.message());
    close(fd);
    return;
  }
  handshaker_->add(fd, peer_address, std::move(session));
}

void ControlSocketServer::serve_authenticated(int fd, const std::string& peer_address,
                                              std::unique_ptr<TlsStream> stream) {
  reap_finished_clients();
  const PeerIdentity peer = stream->session().peer();
  auto channel = std::make_unique<TlsClientChannel>(std::move(stream));
  // Before the session count: an identity that may do nothing here (a backup agent's NBD key) must not hold
  // a session slot an operator needs.
  if (const std::string refused = admission_ ? admission_(peer) : std::string(); !refused.empty()) {
    refuse(fd, std::move(channel), error_reply_line("permission_denied", EACCES, refused));
    refusals_->report("without a control role", peer_address,
                      "refused " + peer.describe() + " from " + peer_address + ": " + refused);
    return;
  }
  {
    MutexLock lock(clients_mutex_);
    if (stopping_) {
      channel.reset();
      close(fd);
      return;
    }
    if (sessions_ < limits_.max_sessions) {
      ++sessions_;
      if (!start_client_thread(fd, std::move(channel), peer, peer_address)) --sessions_;
      return;
    }
  }
  // One too many: told so in the protocol's words, outside the lock (the send is bounded, not instant).
  refuse(fd, std::move(channel), busy_reply());
  refusals_->report("busy", peer_address,
                    "refused " + peer.describe() + " from " + peer_address + ": " + busy_log_text());
}

std::string ControlSocketServer::busy_reply() const {
  const std::string option =
      limits_.max_sessions_option.empty() ? "a fixed limit" : limits_.max_sessions_option;
  const bool one = limits_.max_sessions == 1;
  return error_reply_line(
      "busy", EBUSY,
      "the server already serves " + std::to_string(limits_.max_sessions) +
          (tls_ != nullptr ? (one ? " remote control client" : " remote control clients")
                           : (one ? " client on this control socket" : " clients on this control socket")) +
          " (" + option + "): try later");
}

std::string ControlSocketServer::busy_log_text() const {
  const std::string limit = std::to_string(limits_.max_sessions);
  const std::string option =
      limits_.max_sessions_option.empty() ? "a fixed limit" : limits_.max_sessions_option + " " + limit;
  return limit + (limits_.max_sessions == 1 ? " session is open (" : " sessions are open (") + option + ")";
}

void ControlSocketServer::refuse(int fd, std::unique_ptr<ControlChannel> channel,
                                 const std::string& reply_line) {
  // The reply is short and the socket's buffer empty: this send does not wait in practice, and its bound
  // keeps a peer that does not read from holding up the thread that refuses (the handshaker's, on TCP).
  channel->send(reply_line, std::chrono::seconds(1));
  channel.reset();  // close_notify first
  close(fd);
}

bool ControlSocketServer::start_client_thread(int fd, std::unique_ptr<ControlChannel> channel,
                                              PeerIdentity peer, std::string peer_address) {
  // The lock is held until the entry exists, so serve_client always finds its own entry at the end.
  std::thread thread;
  try {
    thread = std::thread([this, fd, channel = std::move(channel), peer = std::move(peer),
                          peer_address = std::move(peer_address)]() mutable {
      serve_client(fd, std::move(channel), peer, peer_address);
    });
  } catch (const std::exception&) {
    close(fd);  // out of threads: refuse this client, keep serving the others
    return false;
  }
  clients_.emplace_back(fd, std::move(thread));
  return true;
}

namespace {

// After a line longer than the limit: reads and drops the rest of it (up to its newline, within
// kMaxDiscardBytes), so that the client, done sending, reads the error reply. False when it never ended.
bool discard_rest_of_line(ControlChannel& channel, std::chrono::steady_clock::time_point deadline) {
  std::vector<char> chunk(kReadChunkBytes);
  for (size_t dropped = 0; dropped < kMaxDiscardBytes;) {
    const ssize_t n = channel.receive(chunk.data(), chunk.size(), deadline);
    if (n <= 0) return false;
    if (std::find(chunk.begin(), chunk.begin() + n, '\n') != chunk.begin() + n) return true;
    dropped += size_t(n);
  }
  return false;
}

std::string seconds_text(std::chrono::milliseconds duration) {
  return std::to_string(std::chrono::duration_cast<std::chrono::seconds>(duration).count());
}

}  // namespace

namespace {

// Whether the client at the other end of `fd` has closed (or shut down its sending side, after which it can
// send no more requests): a poll that does not wait. Bytes of a next request waiting to be read are not a
// hang-up.
bool peer_hung_up(int fd) {
  pollfd p{fd, POLLRDHUP, 0};
  return ::poll(&p, 1, 0) > 0 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR)) != 0;
}

}  // namespace

std::chrono::steady_clock::time_point ControlSocketServer::idle_deadline(const PeerIdentity& peer) const {
  const auto now = std::chrono::steady_clock::now();
  if (peer.local || limits_.idle_timeout.count() == 0) return now + std::chrono::hours(24 * 365);
  return now + limits_.idle_timeout;
}

void ControlSocketServer::serve_client(int fd, std::unique_ptr<ControlChannel> channel,
                                       const PeerIdentity& peer, const std::string& peer_address) {
  std::string pending;
  std::vector<char> chunk(kReadChunkBytes);
  bool open = true;
  bool overlong = false;  // a line over kMaxLineBytes: refused with an error reply, then the connection ends
  bool overlong_ended = false;  // ... and its newline was received
  // Moved on by each reply only: bytes of a request that never ends do not keep a session.
  auto deadline = idle_deadline(peer);
  while (open) {
    const ssize_t n = channel->receive(chunk.data(), chunk.size(), deadline);
    if (n < 0 && channel->timed_out()) {
      const std::string why = "no request for " + seconds_text(limits_.idle_timeout) + " s (" +
                              limits_.idle_timeout_option + " " + seconds_text(limits_.idle_timeout) + ")";
      // Counted as the refusals are: a client that connects and waits, again and again, costs a few lines
      // a minute, not one per session.
      refusals_->report("closed idle after " + seconds_text(limits_.idle_timeout) + " s without a request",
                        peer_address, "closed " + peer.describe() + " from " + peer_address + ": " + why);
      // Said to the client too, as the reply its next request finds, so that an agent holding one session
      // through a long backup learns why the server closed it (and connects again) rather than "connection
      // lost".
      channel->send(error_reply_line("timeout", ETIMEDOUT,
                                     "the server closed this control session: " + why + "; connect again"),
                    kTlsSendTimeout);
    }
    if (n <= 0) break;
    pending.append(chunk.data(), static_cast<size_t>(n));
    size_t start = 0;
    for (size_t end; open && (end = pending.find('\n', start)) != std::string::npos; start = end + 1) {
      std::string line = pending.substr(start, end - start);
      if (!line.empty() && line.back() == '\r') line.pop_back();
      if (line.size() > kMaxLineBytes) {
        open = false;
        overlong = overlong_ended = true;
        break;
      }
      if (line.find_first_not_of(" \t") == std::string::npos) continue;
      std::string reply;
      try {
        // A client that hangs up during a long request (events-wait) must not keep its session.
        const ControlClientWatch watch([fd] { return peer_hung_up(fd); });
        reply = handler_(line, peer);
      } catch (...) {
        open = false;  // a handler that throws leaves the client without an answer: close rather than hang
        break;
      }
      reply.push_back('\n');
      open = channel->send(reply, kTlsSendTimeout);
      deadline = idle_deadline(peer);
    }
    if (overlong) break;
    pending.erase(0, start);
    if (pending.size() > kMaxLineBytes) {
      open = false;
      overlong = true;
    }
  }
  if (overlong && (overlong_ended || discard_rest_of_line(*channel, deadline))) {
    channel->send(
        error_reply_line("bad_request", EMSGSIZE,
                         "a request line longer than " + std::to_string(kMaxLineBytes) +
                             " bytes (1 MiB, the control protocol's limit): the connection is closed"),
        kTlsSendTimeout);
  }

  channel.reset();  // close_notify first
  // Close under the lock and mark the entry finished, so stop() never shuts down a reused descriptor. The
  // entry is told by its descriptor, open until here: its thread may have been detached (stop_within()).
  MutexLock lock(clients_mutex_);
  close(fd);
  --sessions_;
  for (auto& [entry_fd, thread] : clients_) {
    if (entry_fd == fd) {
      entry_fd = -1;
      break;
    }
  }
}

}  // namespace nbdsnap
