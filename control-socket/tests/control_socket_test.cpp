// SPDX-License-Identifier: BSD-3-Clause
// control_socket_test.cpp — the control socket server with real Unix sockets: framing, limits, lifecycle.
#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include <doctest/doctest.h>

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <mutex>
#include <string>

#include "control_socket.h"

using nbdsnap::ControlSocketServer;

namespace {

// A private directory removed at the end of the test.
struct TempDir {
  std::string path;
  TempDir() {
    char pattern[] = "/tmp/nbdsnap-control-socket-XXXXXX";
    REQUIRE(mkdtemp(pattern) != nullptr);
    path = pattern;
  }
  ~TempDir() { std::system(("rm -rf '" + path + "'").c_str()); }
  std::string socket() const { return path + "/control.sock"; }
};

sockaddr_un address_of(const std::string& path) {
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  std::strncpy(address.sun_path, path.c_str(), sizeof(address.sun_path) - 1);
  return address;
}

// A blocking client connection.
struct Client {
  int fd = -1;
  explicit Client(const std::string& path) {
    fd = socket(AF_UNIX, SOCK_STREAM, 0);
    auto address = address_of(path);
    if (connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) != 0) {
      close(fd);
      fd = -1;
    }
  }
  ~Client() {
    if (fd >= 0) close(fd);
  }
  bool connected() const { return fd >= 0; }
  bool send_text(const std::string& text) const {
    size_t done = 0;
    while (done < text.size()) {
      ssize_t n = send(fd, text.data() + done, text.size() - done, MSG_NOSIGNAL);
      if (n <= 0) return false;
      done += static_cast<size_t>(n);
    }
    return true;
  }
  // One reply line without its newline; empty optional-like result "<eof>" when the server closed.
  std::string read_line() const {
    std::string line;
    char c;
    while (true) {
      ssize_t n = recv(fd, &c, 1, 0);
      if (n <= 0) return "<eof>";
      if (c == '\n') return line;
      line.push_back(c);
    }
  }
};

ControlSocketServer::LineHandler echo() {
  return [](const std::string& line) { return "echo " + line; };
}

int thread_count() {
  std::ifstream status("/proc/self/status");
  std::string key;
  while (status >> key) {
    if (key == "Threads:") {
      int n = 0;
      status >> n;
      return n;
    }
  }
  return -1;
}

}  // namespace

TEST_CASE("replies_to_each_line_in_order_even_when_lines_arrive_together_or_in_pieces") {
  TempDir dir;
  ControlSocketServer server;
  std::string error;
  REQUIRE(server.start(dir.socket(), echo(), error));
  Client client(dir.socket());
  REQUIRE(client.connected());
  REQUIRE(client.send_text("one\ntwo\n"));
  CHECK(client.read_line() == "echo one");
  CHECK(client.read_line() == "echo two");
  REQUIRE(client.send_text("thr"));
  REQUIRE(client.send_text("ee\r\n"));
  CHECK(client.read_line() == "echo three");
}

TEST_CASE("skips_blank_lines") {
  TempDir dir;
  ControlSocketServer server;
  std::string error;
  REQUIRE(server.start(dir.socket(), echo(), error));
  Client client(dir.socket());
  REQUIRE(client.send_text("\n  \nx\n"));
  CHECK(client.read_line() == "echo x");
}

TEST_CASE("a_blocking_handler_does_not_hold_up_other_clients") {
  TempDir dir;
  std::mutex mutex;
  std::condition_variable released_cv;
  bool released = false;
  auto handler = [&](const std::string& line) -> std::string {
    std::unique_lock lock(mutex);
    if (line == "wait") {
      // Bounded so a broken server fails the test instead of hanging it.
      bool ok = released_cv.wait_for(lock, std::chrono::seconds(30), [&] { return released; });
      return ok ? "released" : "still waiting";
    }
    released = true;
    released_cv.notify_all();
    return "released the other";
  };
  ControlSocketServer server;
  std::string error;
  REQUIRE(server.start(dir.socket(), handler, error));
  Client waiter(dir.socket()), releaser(dir.socket());
  REQUIRE(waiter.send_text("wait\n"));
  REQUIRE(releaser.send_text("release\n"));
  CHECK(releaser.read_line() == "released the other");
  CHECK(waiter.read_line() == "released");
}

TEST_CASE("a_line_over_one_mib_gets_a_bad_request_reply_then_the_connection_ends_and_others_are_served") {
  TempDir dir;
  ControlSocketServer server;
  std::string error;
  REQUIRE(server.start(dir.socket(), echo(), error));
  {
    Client exact(dir.socket());
    std::string line(1u << 20, 'a');
    REQUIRE(exact.send_text(line + "\n"));
    CHECK(exact.read_line() == "echo " + line);
  }
  // Longer than the limit in one line (the rest is read and dropped up to its newline, then the reply).
  Client big(dir.socket());
  std::string huge((3u << 20) + 10, 'b');
  REQUIRE(big.send_text(huge + "\n"));
  const std::string reply = big.read_line();
  CHECK(reply.find("\"code\":\"bad_request\"") != std::string::npos);
  CHECK(reply.find("longer than 1048576 bytes") != std::string::npos);
  CHECK(big.read_line() == "<eof>");
  // A client that stops sending in the middle of an overlong line just loses its connection.
  Client cut(dir.socket());
  REQUIRE(cut.send_text(std::string((1u << 20) + 10, 'c')));
  shutdown(cut.fd, SHUT_WR);
  CHECK(cut.read_line() == "<eof>");
  Client other(dir.socket());
  REQUIRE(other.send_text("still here\n"));
  CHECK(other.read_line() == "echo still here");
}

TEST_CASE("a_handler_that_throws_closes_only_its_client") {
  TempDir dir;
  ControlSocketServer server;
  std::string error;
  auto handler = [](const std::string& line) -> std::string {
    if (line == "throw") throw std::runtime_error("boom");
    return "fine";
  };
  REQUIRE(server.start(dir.socket(), handler, error));
  Client thrower(dir.socket());
  REQUIRE(thrower.send_text("throw\n"));
  CHECK(thrower.read_line() == "<eof>");
  Client other(dir.socket());
  REQUIRE(other.send_text("x\n"));
  CHECK(other.read_line() == "fine");
}

TEST_CASE("socket_file_is_private_to_its_owner") {
  TempDir dir;
  ControlSocketServer server;
  std::string error;
  REQUIRE(server.start(dir.socket(), echo(), error));
  struct stat st {};
  REQUIRE(lstat(dir.socket().c_str(), &st) == 0);
  CHECK(S_ISSOCK(st.st_mode));
  CHECK((st.st_mode & 07777) == 0600);
}

TEST_CASE("replaces_a_stale_socket_file_nobody_listens_on") {
  TempDir dir;
  {
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    auto address = address_of(dir.socket());
    REQUIRE(bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) == 0);
    close(fd);  // leaves the socket file behind, as a crashed process would
  }
  ControlSocketServer server;
  std::string error;
  REQUIRE_MESSAGE(server.start(dir.socket(), echo(), error), error);
  Client client(dir.socket());
  REQUIRE(client.send_text("hi\n"));
  CHECK(client.read_line() == "echo hi");
}

TEST_CASE("refuses_a_socket_another_server_listens_on") {
  TempDir dir;
  ControlSocketServer first, second;
  std::string error;
  REQUIRE(first.start(dir.socket(), echo(), error));
  CHECK_FALSE(second.start(dir.socket(), echo(), error));
  CHECK(error.find("in use") != std::string::npos);
  Client client(dir.socket());
  REQUIRE(client.send_text("first\n"));
  CHECK(client.read_line() == "echo first");
}

TEST_CASE("refuses_a_path_that_is_not_a_socket_and_leaves_it_alone") {
  TempDir dir;
  std::ofstream(dir.socket()) << "precious";
  ControlSocketServer server;
  std::string error;
  CHECK_FALSE(server.start(dir.socket(), echo(), error));
  CHECK(error.find("not a socket") != std::string::npos);
  std::ifstream in(dir.socket());
  std::string content;
  in >> content;
  CHECK(content == "precious");
}

TEST_CASE("refuses_a_path_too_long_for_a_unix_socket") {
  ControlSocketServer server;
  std::string error;
  CHECK_FALSE(server.start("/tmp/" + std::string(200, 'x'), echo(), error));
  CHECK_FALSE(error.empty());
}

TEST_CASE("stop_wakes_idle_clients_joins_threads_and_removes_the_socket") {
  TempDir dir;
  ControlSocketServer server;
  std::string error;
  REQUIRE(server.start(dir.socket(), echo(), error));
  Client idle1(dir.socket()), idle2(dir.socket());
  REQUIRE(idle1.send_text("a\n"));
  CHECK(idle1.read_line() == "echo a");
  REQUIRE(idle2.connected());
  server.stop();
  CHECK(idle1.read_line() == "<eof>");
  CHECK(idle2.read_line() == "<eof>");
  CHECK(access(dir.socket().c_str(), F_OK) != 0);
  server.stop();                                       // idempotent
  REQUIRE(server.start(dir.socket(), echo(), error));  // and restartable
  Client again(dir.socket());
  REQUIRE(again.send_text("b\n"));
  CHECK(again.read_line() == "echo b");
}

TEST_CASE("stop_within_leaves_a_handler_that_outlasts_it_and_a_later_stop_waits_for_it") {
  // nbdsnapd's stop gives a control request stuck on a file system that does not answer a bounded wait.
  TempDir dir;
  std::mutex mutex;
  std::condition_variable cv;
  bool entered = false;
  bool released = false;
  auto handler = [&](const std::string&) -> std::string {
    std::unique_lock lock(mutex);
    entered = true;
    cv.notify_all();
    // Bounded so a broken server fails the test instead of hanging it.
    cv.wait_for(lock, std::chrono::seconds(30), [&] { return released; });
    return "done";
  };
  ControlSocketServer server;
  std::string error;
  REQUIRE(server.start(dir.socket(), handler, error));
  Client waiter(dir.socket());
  REQUIRE(waiter.send_text("wait\n"));
  {
    std::unique_lock lock(mutex);
    REQUIRE(cv.wait_for(lock, std::chrono::seconds(30), [&] { return entered; }));
  }
  CHECK_FALSE(server.stop_within(std::chrono::milliseconds(100)));
  CHECK(access(dir.socket().c_str(), F_OK) != 0);  // stopped all the same: no new client
  CHECK(Client(dir.socket()).connected() == false);
  {
    std::lock_guard lock(mutex);
    released = true;
  }
  cv.notify_all();
  // The handler's thread marks itself finished although it was detached; a later stop waits for it.
  CHECK(server.stop_within(std::chrono::seconds(30)));
}

TEST_CASE("thousands_of_connections_do_not_accumulate_threads") {
  TempDir dir;
  ControlSocketServer server;
  std::string error;
  REQUIRE(server.start(dir.socket(), echo(), error));
  int before = thread_count();
  for (int i = 0; i < 3000; ++i) {
    Client client(dir.socket());
    REQUIRE(client.send_text("x\n"));
    REQUIRE(client.read_line() == "echo x");
  }
  // Each finished client is joined at the next accept; only the last few can still be alive.
  CHECK(thread_count() < before + 50);
}
