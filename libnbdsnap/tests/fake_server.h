// SPDX-License-Identifier: BSD-3-Clause
// fake_server.h — small servers on Unix sockets in a temporary directory for libnbdsnap's tests: one that
// greets like NBD, one that answers request lines with a function's reply, one that never says anything.
#pragma once

#include <doctest/doctest.h>

#include <functional>
#include <string>
#include <thread>
#include <vector>

#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

namespace fake {

inline const std::string kNbdGreeting = std::string("NBDMAGICIHAVEOPT") + std::string("\0\3", 2);

// A listener on a fresh Unix socket that runs `serve(fd)` for each client on its own thread until destroyed.
class Server {
 public:
  explicit Server(std::function<void(int)> serve) : serve_(std::move(serve)) {
    char pattern[] = "/tmp/libnbdsnap-test.XXXXXX";
    dir_ = ::mkdtemp(pattern);
    path_ = dir_ + "/s.sock";
    listen_fd_ = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un address{};
    address.sun_family = AF_UNIX;
    path_.copy(address.sun_path, sizeof(address.sun_path) - 1);
    REQUIRE(::bind(listen_fd_, reinterpret_cast<sockaddr*>(&address), sizeof(address)) == 0);
    REQUIRE(::listen(listen_fd_, 8) == 0);
    acceptor_ = std::thread([this] {
      for (;;) {
        const int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
        if (fd < 0) return;  // shut down
        clients_.emplace_back([this, fd] {
          serve_(fd);
          ::close(fd);
        });
      }
    });
  }
  ~Server() {
    ::shutdown(listen_fd_, SHUT_RDWR);
    acceptor_.join();
    for (auto& client : clients_) client.join();
    ::close(listen_fd_);
    ::unlink(path_.c_str());
    ::rmdir(dir_.c_str());
  }
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;
  const std::string& path() const { return path_; }

 private:
  std::function<void(int)> serve_;
  std::string dir_, path_;
  int listen_fd_ = -1;
  std::thread acceptor_;
  std::vector<std::thread> clients_;  // acceptor thread only, joined after it
};

// Reads until a newline, end of file or 5 s pass; returns the line without its newline ("" at the end).
inline std::string read_line(int fd) {
  std::string line;
  char c = 0;
  timeval limit{5, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &limit, sizeof(limit));
  while (::recv(fd, &c, 1, 0) == 1) {
    if (c == '\n') return line;
    line.push_back(c);
  }
  return {};
}

inline void send_text(int fd, const std::string& text) {
  ::send(fd, text.data(), text.size(), MSG_NOSIGNAL);
}

// Like nbdsnapd and nbdkit: greets at once, reads the client flags, closes on flags it does not know.
inline void nbd_like(int fd) {
  send_text(fd, kNbdGreeting);
  char flags[4];
  timeval limit{5, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &limit, sizeof(limit));
  (void)::recv(fd, flags, sizeof(flags), MSG_WAITALL);
}

// Answers each request line with answer(line) plus a newline.
inline std::function<void(int)> replying(std::function<std::string(const std::string&)> answer) {
  return [answer = std::move(answer)](int fd) {
    for (std::string line = read_line(fd); !line.empty(); line = read_line(fd))
      send_text(fd, answer(line) + "\n");
  };
}

inline void control_like(int fd) {
  replying([](const std::string&) { return std::string("{\"ok\":true,\"version\":\"test\"}"); })(fd);
}

// Reads and says nothing until the client goes (at most 5 s).
inline void silent(int fd) {
  timeval limit{5, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &limit, sizeof(limit));
  char buffer[256];
  while (::recv(fd, buffer, sizeof(buffer), 0) > 0) {
  }
}

}  // namespace fake
