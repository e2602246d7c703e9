// socket_kind_test.cpp — recognising each protocol's greeting: the pure recognisers, the URI's socket path,
// and probe_socket_kind() and ControlClient against small servers on Unix sockets in a temporary directory
// (an NBD-like one that greets at once, a control-like one that answers a line, a silent one).
#include <doctest/doctest.h>

#include <atomic>
#include <cstdlib>
#include <functional>
#include <string>
#include <thread>

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "control_client.h"
#include "exit_codes.h"
#include "socket_kind.h"

using namespace nbdsnap::cli;
using namespace std::chrono_literals;

namespace {

const std::string kNbdGreeting = std::string("NBDMAGICIHAVEOPT") + std::string("\0\3", 2);

// A listener on a fresh Unix socket that runs `serve(fd)` for each client on its own thread until destroyed.
class TestServer {
 public:
  explicit TestServer(std::function<void(int)> serve) : serve_(std::move(serve)) {
    char pattern[] = "/tmp/nbdsnap-socket-kind.XXXXXX";
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
  ~TestServer() {
    ::shutdown(listen_fd_, SHUT_RDWR);
    acceptor_.join();
    for (auto& client : clients_) client.join();
    ::close(listen_fd_);
    ::unlink(path_.c_str());
    ::rmdir(dir_.c_str());
  }
  const std::string& path() const { return path_; }

 private:
  std::function<void(int)> serve_;
  std::string dir_, path_;
  int listen_fd_ = -1;
  std::thread acceptor_;
  std::vector<std::thread> clients_;  // acceptor thread only, joined after it
};

// Reads until a newline, end of file or 5 s pass.
std::string read_line(int fd) {
  std::string line;
  char c = 0;
  timeval limit{5, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &limit, sizeof(limit));
  while (line.find('\n') == std::string::npos && ::recv(fd, &c, 1, 0) == 1) line.push_back(c);
  return line;
}

// Like nbdsnapd and nbdkit: greets at once, reads the client flags, closes on flags it does not know.
void nbd_like(int fd) {
  ::send(fd, kNbdGreeting.data(), kNbdGreeting.size(), MSG_NOSIGNAL);
  char flags[4];
  timeval limit{5, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &limit, sizeof(limit));
  (void)::recv(fd, flags, sizeof(flags), MSG_WAITALL);
}

void control_like(int fd) {
  for (std::string line = read_line(fd); !line.empty(); line = read_line(fd)) {
    const std::string reply = "{\"ok\":true,\"version\":\"test\"}\n";
    ::send(fd, reply.data(), reply.size(), MSG_NOSIGNAL);
  }
}

// Reads and says nothing until the client goes (at most 5 s).
void silent(int fd) {
  timeval limit{5, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &limit, sizeof(limit));
  char buffer[256];
  while (::recv(fd, buffer, sizeof(buffer), 0) > 0) {
  }
}

ExitCode code_of(const std::function<void()>& call, std::string* message = nullptr) {
  try {
    call();
  } catch (const CliError& error) {
    if (message != nullptr) *message = error.what();
    return error.code();
  }
  return ExitCode::ok;
}

}  // namespace

TEST_CASE("an_nbd_greeting_is_recognised_from_its_first_8_bytes") {
  CHECK(is_nbd_greeting(kNbdGreeting));
  CHECK(is_nbd_greeting("NBDMAGIC"));
  CHECK(is_nbd_greeting(std::string("NBDMAGIC\x00\x42\x02\x81\x86\x12\x53", 15)));  // oldstyle
  CHECK_FALSE(is_nbd_greeting("NBDMAGI"));  // too short to tell
  CHECK_FALSE(is_nbd_greeting(""));
  CHECK_FALSE(is_nbd_greeting("{\"ok\":true}"));
  CHECK_FALSE(is_nbd_greeting("nbdmagic"));
}

TEST_CASE("a_control_reply_is_a_json_object_with_a_boolean_ok") {
  CHECK(is_control_reply("{\"ok\":true,\"version\":\"1\"}"));
  CHECK(is_control_reply("{\"ok\":false,\"error\":{\"code\":\"invalid\",\"message\":\"x\"}}"));
  CHECK_FALSE(is_control_reply("{\"ok\":\"yes\"}"));
  CHECK_FALSE(is_control_reply("{\"version\":\"1\"}"));
  CHECK_FALSE(is_control_reply("[true]"));
  CHECK_FALSE(is_control_reply(kNbdGreeting));
  CHECK_FALSE(is_control_reply(""));
}

TEST_CASE("the_socket_of_a_unix_nbd_uri_is_its_decoded_socket_parameter") {
  CHECK(unix_socket_of_uri("nbd+unix:///disk@s?socket=/run/nbdsnap/nbdsnapd.sock") == "/run/nbdsnap/nbdsnapd.sock");
  CHECK(unix_socket_of_uri("nbds+unix://agent@/disk?tls-psk-file=/k&socket=/a%20b.sock") == "/a b.sock");
  CHECK(unix_socket_of_uri("nbd+unix:///?socket=/s.sock#frag") == "/s.sock");
  CHECK(unix_socket_of_uri("nbd://host:10809/disk") == "");
  CHECK(unix_socket_of_uri("nbd+unix:///disk") == "");
  CHECK(unix_socket_of_uri("nbd+unix:///disk?tls=on") == "");
  CHECK(unix_socket_of_uri("not a uri") == "");
}

TEST_CASE("probe_tells_an_nbd_socket_a_control_socket_and_a_silent_one_apart_within_its_deadline") {
  TestServer nbd(nbd_like), control(control_like), quiet(silent);
  CHECK(probe_socket_kind(nbd.path(), 1s, Deadline(5s)) == SocketKind::nbd);
  CHECK(probe_socket_kind(control.path(), 200ms, Deadline(5s)) == SocketKind::control);
  const auto start = std::chrono::steady_clock::now();
  CHECK(probe_socket_kind(quiet.path(), 100ms, Deadline(300ms)) == SocketKind::unknown);
  CHECK(std::chrono::steady_clock::now() - start < 3s);
  CHECK(probe_socket_kind(nbd.path() + ".missing", 100ms, Deadline(1s)) == SocketKind::unknown);
}

TEST_CASE("control_client_on_an_nbd_socket_says_so_and_names_the_path") {
  TestServer nbd(nbd_like);
  std::string message;
  CHECK(code_of([&] { ControlClient(nbd.path(), 5s).request("origins"); }, &message) == ExitCode::usage);
  CHECK(message.find(nbd.path() + ": this is an NBD socket, not a control socket") != std::string::npos);
  CHECK(message.find("--control") != std::string::npos);
}

TEST_CASE("control_client_gives_up_on_a_silent_server_after_its_timeout_plus_the_server_wait") {
  TestServer quiet(silent);
  ControlClient client(quiet.path(), 200ms);
  std::string message;
  const auto start = std::chrono::steady_clock::now();
  CHECK(code_of([&] { client.request("events-wait", {{"timeout_ms", 300}}, 300ms); }, &message) == ExitCode::io_error);
  const auto elapsed = std::chrono::steady_clock::now() - start;
  CHECK(elapsed >= 500ms);
  CHECK(elapsed < 4s);
  CHECK(message.find("no reply to events-wait within 0.2 s (--timeout)") != std::string::npos);
}

TEST_CASE("control_client_still_works_with_a_control_server") {
  TestServer control(control_like);
  ControlClient client(control.path(), 5s);
  CHECK(client.request("version")["version"] == "test");
  CHECK(client.request("version")["version"] == "test");
}
