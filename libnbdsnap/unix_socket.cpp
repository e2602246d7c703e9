// SPDX-License-Identifier: BSD-3-Clause
// unix_socket.cpp — non-blocking Unix socket I/O with poll(2) bounded by a deadline (see unix_socket.h).
#include "unix_socket.h"

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstring>
#include <thread>

#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

namespace nbdsnap::client {

namespace {

// Waits until fd is ready for `events` or the deadline passes. False with errno ETIMEDOUT (or poll's).
bool wait_ready(int fd, short events, Deadline deadline) {
  for (;;) {
    pollfd entry{fd, events, 0};
    const int ready = ::poll(&entry, 1, poll_milliseconds(deadline));
    if (ready > 0) return true;  // also for POLLERR/POLLHUP: the next call reports what happened
    if (ready < 0 && errno == EINTR) continue;
    if (ready == 0) errno = ETIMEDOUT;
    return false;
  }
}

}  // namespace

int poll_milliseconds(Deadline deadline) {
  const auto left = deadline - std::chrono::steady_clock::now();
  if (left <= std::chrono::steady_clock::duration::zero()) return 0;
  const auto ms = std::chrono::ceil<std::chrono::milliseconds>(left).count();
  return static_cast<int>(std::min<long long>(ms, INT_MAX));
}

int connect_unix(const std::string& path, Deadline deadline) {
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  if (path.empty() || path.size() >= sizeof(address.sun_path)) {
    errno = ENAMETOOLONG;
    return -1;
  }
  std::memcpy(address.sun_path, path.c_str(), path.size() + 1);
  const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  // A non-blocking connect to a Unix socket either completes at once or fails with EAGAIN when the server's
  // listen backlog is full (it cannot be waited for with poll): try again until the deadline.
  for (;;) {
    if (::connect(fd, reinterpret_cast<const sockaddr*>(&address), sizeof(address)) == 0) return fd;
    const int err = errno;
    if (err == EINTR) continue;
    if (err != EAGAIN || std::chrono::steady_clock::now() >= deadline) {
      ::close(fd);
      errno = err == EAGAIN ? ETIMEDOUT : err;
      return -1;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
}

bool send_all(int fd, std::string_view data, Deadline deadline) {
  while (!data.empty()) {
    const ssize_t sent = ::send(fd, data.data(), data.size(), MSG_NOSIGNAL);
    if (sent > 0) {
      data.remove_prefix(static_cast<size_t>(sent));
      continue;
    }
    if (sent < 0 && errno == EINTR) continue;
    if (sent < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      if (!wait_ready(fd, POLLOUT, deadline)) return false;
      continue;
    }
    return false;
  }
  return true;
}

ssize_t receive_some(int fd, char* buffer, size_t capacity, Deadline deadline) {
  for (;;) {
    const ssize_t received = ::recv(fd, buffer, capacity, 0);
    if (received >= 0) return received;
    if (errno == EINTR) continue;
    if (errno != EAGAIN && errno != EWOULDBLOCK) return -1;
    if (!wait_ready(fd, POLLIN, deadline)) return -1;
  }
}

}  // namespace nbdsnap::client
