// SPDX-License-Identifier: BSD-3-Clause
// tls_handshaker.cpp — one thread polling every connection that has not finished its TLS handshake (see
// tls_handshaker.h).
//
// Design notes. The thread owns the connections it polls (`active`, oldest first); add() only appends to
// incoming_; the thread, taking them in, closes the oldest beyond the limit. So a connection's descriptor is
// closed by exactly one thread, and counting (count_, for the log line and pending()) is the only thing add()
// and the thread share besides the queue. An eventfd wakes the poll for new connections and for stop().
#include "tls_handshaker.h"

#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstring>
#include <vector>

namespace nbdsnap {

namespace {

std::string duration_text(std::chrono::milliseconds duration) {
  if (duration.count() % 1000 == 0) return std::to_string(duration.count() / 1000) + " s";
  return std::to_string(duration.count()) + " ms";
}

}  // namespace

TlsHandshaker::~TlsHandshaker() {
  stop();
  if (wake_fd_ >= 0) ::close(wake_fd_);
}

bool TlsHandshaker::start(std::string& error) {
  wake_fd_ = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (wake_fd_ < 0) {
    error = std::string("cannot create the TLS handshake thread's eventfd: ") + std::strerror(errno);
    return false;
  }
  try {
    thread_ = std::thread([this] { run(); });
  } catch (const std::exception& e) {
    error = std::string("cannot start the TLS handshake thread: ") + e.what();
    return false;
  }
  return true;
}

void TlsHandshaker::wake() {
  const uint64_t one = 1;
  (void)!::write(wake_fd_, &one, sizeof(one));
}

void TlsHandshaker::add(int fd, const std::string& peer_address, std::unique_ptr<TlsSession> session) {
  {
    MutexLock lock(mutex_);
    if (stopping_) {
      ::close(fd);
      return;
    }
    // Over max_pending_, the thread closes the oldest when it takes this one in (take_incoming), and counts
    // it then: by that time others may have ended, and nothing is closed.
    incoming_.push_back({fd, peer_address, std::move(session), std::chrono::steady_clock::now() + timeout_});
    ++count_;
  }
  wake();
}

void TlsHandshaker::stop() {
  {
    MutexLock lock(mutex_);
    if (stopping_) return;
    stopping_ = true;
  }
  if (thread_.joinable()) {
    wake();
    thread_.join();
  }
  MutexLock lock(mutex_);
  for (Pending& pending : incoming_) ::close(pending.fd);
  incoming_.clear();
}

size_t TlsHandshaker::pending() const {
  MutexLock lock(mutex_);
  return count_;
}

void TlsHandshaker::finished(size_t count) {
  MutexLock lock(mutex_);
  count_ -= count;
}

bool TlsHandshaker::take_incoming(std::list<Pending>& active) {
  size_t evicted = 0;
  {
    MutexLock lock(mutex_);
    if (stopping_) return false;
    active.splice(active.end(), incoming_);
    evicted = active.size() > max_pending_ ? active.size() - max_pending_ : 0;
    count_ -= evicted;
  }
  for (size_t i = 0; i < evicted; ++i) {
    const Pending& oldest = active.front();
    refusals_.report(
        "closed to let newer ones in (" + std::to_string(max_pending_) + " waited for a handshake)",
        oldest.peer_address,
        std::to_string(max_pending_) +
            " connections are waiting for their TLS handshake (the limit): the oldest, " +
            oldest.peer_address + ", is closed to let newer ones in");
    ::close(oldest.fd);
    active.pop_front();
  }
  return true;
}

bool TlsHandshaker::step(Pending& pending) {
  const TlsSession::Io io = pending.session->handshake();
  if (io == TlsSession::Io::want_read || io == TlsSession::Io::want_write) {
    pending.waiting_for = io;
    return false;
  }
  if (io == TlsSession::Io::ok) {
    const int fd = pending.fd;
    authenticated_(fd, pending.peer_address, std::make_unique<TlsStream>(std::move(pending.session), fd));
    return true;
  }
  // A wrong PSK, a certificate from another CA, a port scanner...: TlsSession's error says which, for an
  // admin; its kind counts the flood (a peer may connect and hang up thousands of times a second).
  const std::string& why =
      pending.session->error().empty() ? "the client closed the connection" : pending.session->error();
  const std::string& kind = pending.session->failure_kind().empty() ? "closed before the TLS handshake ended"
                                                                    : pending.session->failure_kind();
  refusals_.report(kind, pending.peer_address, "refused " + pending.peer_address + ": " + why);
  ::close(pending.fd);
  return true;
}

void TlsHandshaker::run() {
  std::list<Pending> active;  // oldest first
  std::vector<pollfd> entries;
  std::vector<std::list<Pending>::iterator> polled;
  while (take_incoming(active)) {
    // Drop those past their deadline, then wait for the nearest deadline, a ready socket or a wake-up.
    const auto now = std::chrono::steady_clock::now();
    refusals_.flush_due(now);  // a flood that stopped is summed up too
    // At least once a second: a window that another thread opened (an idle session closed,
    // control_socket.cpp) is summed up on time too.
    auto nearest =
        std::min(now + std::chrono::seconds(1), refusals_.next_due().value_or(now + std::chrono::seconds(1)));
    size_t done = 0;
    for (auto it = active.begin(); it != active.end();) {
      if (it->deadline <= now) {
        refusals_.report("closed without a TLS handshake in " + duration_text(timeout_), it->peer_address,
                         "closed " + it->peer_address + ": no TLS handshake within " +
                             duration_text(timeout_) + " (nbdsnapd --handshake-timeout)");
        ::close(it->fd);
        it = active.erase(it);
        ++done;
        continue;
      }
      nearest = std::min(nearest, it->deadline);
      ++it;
    }
    entries.assign(1, pollfd{wake_fd_, POLLIN, 0});
    polled.clear();
    for (auto it = active.begin(); it != active.end(); ++it) {
      entries.push_back({it->fd, short(it->waiting_for == TlsSession::Io::want_write ? POLLOUT : POLLIN), 0});
      polled.push_back(it);
    }
    const auto wait = std::chrono::ceil<std::chrono::milliseconds>(nearest - now);
    const int ready =
        ::poll(entries.data(), entries.size(), int(std::clamp<long long>(wait.count(), 0, INT_MAX)));
    if (ready > 0) {
      uint64_t drained = 0;
      if (entries[0].revents != 0) (void)!::read(wake_fd_, &drained, sizeof(drained));
      for (size_t i = 1; i < entries.size(); ++i) {
        if (entries[i].revents == 0) continue;  // POLLHUP/POLLERR too: the step says what happened
        if (step(*polled[i - 1])) {
          active.erase(polled[i - 1]);
          ++done;
        }
      }
    }
    if (done > 0) finished(done);
  }
  for (Pending& pending : active) ::close(pending.fd);
  finished(active.size());
}

}  // namespace nbdsnap
