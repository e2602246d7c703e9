// SPDX-License-Identifier: BSD-3-Clause
// tls_line_client.cpp — TCP connect with a deadline, TLS on top, line framing (see tls_line_client.h).
#include "tls_line_client.h"

#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstring>
#include <random>
#include <thread>

#include "tls_failure.h"

namespace nbdsnap {

namespace {

int milliseconds_left(SteadyDeadline deadline) {
  const auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
  return int(std::clamp<long long>(left.count(), 0, INT_MAX));
}

// A non-blocking connect to one resolved address, waited for until the deadline. The descriptor or -1
// (errno).
int connect_by(const addrinfo& info, SteadyDeadline deadline) {
  const int fd = ::socket(info.ai_family, info.ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, info.ai_protocol);
  if (fd < 0) return -1;
  if (::connect(fd, info.ai_addr, info.ai_addrlen) == 0) return fd;
  int err = errno;
  if (err == EINPROGRESS) {
    pollfd entry{fd, POLLOUT, 0};
    int ready = 0;
    do {
      ready = ::poll(&entry, 1, milliseconds_left(deadline));
    } while (ready < 0 && errno == EINTR);
    socklen_t length = sizeof(err);
    if (ready == 0) {
      err = ETIMEDOUT;
    } else if (ready < 0 || ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &length) != 0) {
      err = errno;
    }
    if (err == 0) return fd;
  }
  ::close(fd);
  errno = err;
  return -1;
}

}  // namespace

bool is_tls_address(const std::string& text) {
  return text.starts_with("tls://");
}

Status parse_tls_address(const std::string& text, TlsAddress& out) {
  const auto bad = [&](const std::string& why) {
    return Status{Errc::invalid_argument, "'" + text + "': " + why + " (expected tls://[USER@]HOST:PORT)"};
  };
  if (!is_tls_address(text)) return bad("not a tls:// address");
  std::string rest = text.substr(6);
  if (!rest.empty() && rest.back() == '/') rest.pop_back();
  out = {};
  if (const auto at = rest.rfind('@'); at != std::string::npos) {
    out.user = rest.substr(0, at);
    rest = rest.substr(at + 1);
  }
  const auto colon = rest.rfind(':');
  if (colon == std::string::npos || colon == 0 || colon + 1 == rest.size()) return bad("no port");
  out.host = rest.substr(0, colon);
  if (out.host.size() > 2 && out.host.front() == '[' && out.host.back() == ']') {
    out.host = out.host.substr(1, out.host.size() - 2);
  }
  const std::string port = rest.substr(colon + 1);
  char* end = nullptr;
  const unsigned long value = std::strtoul(port.c_str(), &end, 10);
  if (*end != '\0' || value == 0 || value > 65535 ||
      port.find_first_not_of("0123456789") != std::string::npos) {
    return bad("bad port '" + port + "'");
  }
  out.port = uint16_t(value);
  return Status::ok();
}

Status TlsLineClient::connect(const TlsAddress& address,
                              const std::shared_ptr<const TlsCredentials>& credentials,
                              std::chrono::milliseconds timeout, std::unique_ptr<TlsLineClient>& out) {
  const auto start = std::chrono::steady_clock::now();
  const SteadyDeadline deadline = start + timeout;
  for (int attempt = 1;; ++attempt) {
    bool closed_by_server = false;
    Status status = connect_once(address, credentials, deadline, out, closed_by_server);
    // Only a close without an alert is tried again: a refusal (key, certificate, role) stays one.
    const auto now = std::chrono::steady_clock::now();
    if (status || !closed_by_server || attempt == kConnectAttempts || now - start >= kRetryWindow) {
      if (!status && closed_by_server && attempt > 1) {
        return {status.code(), status.message() + " (" + std::to_string(attempt) + " attempts)"};
      }
      return status;
    }
    // After 100 ms, then 300 ms, each with up to 100 ms of jitter, so that clients closed together (the
    // oldest of a flood) do not come back together.
    const auto pause = std::chrono::milliseconds(100 * (2 * attempt - 1) + std::random_device{}() % 100);
    if (now + pause >= deadline) return status;
    std::this_thread::sleep_for(pause);
  }
}

Status TlsLineClient::connect_once(const TlsAddress& address,
                                   const std::shared_ptr<const TlsCredentials>& credentials,
                                   SteadyDeadline deadline, std::unique_ptr<TlsLineClient>& out,
                                   bool& closed_by_server) {
  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  if (int rc = ::getaddrinfo(address.host.c_str(), std::to_string(address.port).c_str(), &hints, &found);
      rc != 0) {
    return {Errc::not_found, address.text() + ": cannot resolve " + address.host + ": " + gai_strerror(rc)};
  }
  int fd = -1, err = 0;
  for (addrinfo* info = found; info != nullptr && fd < 0; info = info->ai_next) {
    fd = connect_by(*info, deadline);
    if (fd < 0) err = errno;
  }
  ::freeaddrinfo(found);
  if (fd < 0) {
    return Status::from_errno(err, address.text() + ": cannot connect");
  }
  const int on = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof(on));
  std::unique_ptr<TlsLineClient> client(new TlsLineClient(address, fd));
  std::unique_ptr<TlsSession> session;
  if (Status s = TlsSession::create(credentials, fd, fd, address.host, session); !s) return s;
  client->stream_ = std::make_unique<TlsStream>(std::move(session), fd);
  if (!client->stream_->handshake(deadline)) {
    closed_by_server = client->stream_->session().closed_by_server_in_handshake();
    return client->failure("TLS handshake");
  }
  out = std::move(client);
  return Status::ok();
}

TlsLineClient::~TlsLineClient() {
  if (stream_) stream_->bye();
  if (fd_ >= 0) ::close(fd_);
}

Status TlsLineClient::failure(const std::string& what) {
  timed_out_ = stream_->timed_out();
  const std::string why = stream_->error().empty() ? "the server closed the connection" : stream_->error();
  const std::string text = why.starts_with(what) ? why : what + ": " + why;
  if (!timed_out_ && what != "TLS handshake" && !received_any_) {
    // Nothing ever came back. Under TLS 1.3 a client finishes its handshake before the server has checked
    // its certificate, so this is how a server refuses one: with an alert. Without one, the server closed
    // the connection before its side of the handshake ended (a flood, as in kTlsClosedByServer) or the
    // connection was cut.
    if (stream_->session().peer_alert().empty()) {
      return {Errc::io_error,
              address_.text() + ": " + kTlsClosedByServer +
                  " (the connection ended right after the handshake, before any reply: " + text + ")"};
    }
    return {Errc::io_error, address_.text() + ": " + stream_->session().refused_after_handshake() +
                                " (the connection ended right after the handshake: " + text + ")"};
  }
  return {Errc::io_error, address_.text() + ": " + text};
}

Status TlsLineClient::send_line(const std::string& line, SteadyDeadline deadline) {
  if (stream_->write_all(line + "\n", deadline)) return Status::ok();
  // A server that refuses a client before its first request (a certificate refused under TLS 1.3, `busy`)
  // sends its alert or reply and closes; our request may then meet the close. What it left says more than
  // the failed send: a reply line is the answer, an alert the refusal (failure() names it).
  if (!received_any_ && !stream_->timed_out() && reply_left_behind(deadline)) return Status::ok();
  return failure("send");
}

bool TlsLineClient::reply_left_behind(SteadyDeadline deadline) {
  const SteadyDeadline until = std::min(deadline, std::chrono::steady_clock::now() + kLeftBehindWait);
  size_t scanned = 0;
  while (buffered_.find('\n', scanned) == std::string::npos) {
    if (buffered_.size() > kMaxLineBytes) return false;
    scanned = buffered_.size();
    char chunk[16384];
    const ssize_t got = stream_->read_some(chunk, sizeof(chunk), until);
    if (got <= 0) return false;
    received_any_ = true;
    buffered_.append(chunk, size_t(got));
  }
  return true;
}

Status TlsLineClient::receive_line(std::string& line, SteadyDeadline deadline, size_t max_bytes) {
  size_t scanned = 0;  // searched for the newline already: a long line costs time linear in its length
  for (;;) {
    const size_t newline = buffered_.find('\n', scanned);
    if (newline != std::string::npos) {
      line = buffered_.substr(0, newline);
      buffered_.erase(0, newline + 1);
      return Status::ok();
    }
    if (buffered_.size() > max_bytes) {
      return {Errc::io_error,
              address_.text() + ": a reply line longer than " + std::to_string(max_bytes) + " bytes"};
    }
    scanned = buffered_.size();
    char chunk[16384];
    const ssize_t got = stream_->read_some(chunk, sizeof(chunk), deadline);
    if (got < 0) return failure("receive");
    if (got == 0 && !received_any_) return failure("receive");
    if (got == 0) return {Errc::io_error, address_.text() + ": the server closed the connection"};
    received_any_ = true;
    buffered_.append(chunk, size_t(got));
  }
}

}  // namespace nbdsnap
