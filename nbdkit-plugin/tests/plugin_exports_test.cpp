// SPDX-License-Identifier: BSD-3-Clause
// plugin_exports_test.cpp — which names are origins, and asking "nbdkit" for the list: a fake server on a
// Unix socket plays nbdkit, running the filter's part (PluginExports::record) when it answers NBD_OPT_LIST.
#include <doctest/doctest.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "mutex.h"
#include "nbd_protocol.h"
#include "plugin_exports.h"
#include "self_client.h"

using namespace nbdsnap;
using namespace std::chrono_literals;

namespace {

// One connection of a fake NBD server in a thread: the greeting, then `serve` on the accepted socket.
class FakeServer {
 public:
  explicit FakeServer(std::function<void(int fd)> serve) {
    char pattern[] = "/tmp/nbdsnap-self-client-XXXXXX";
    REQUIRE(mkdtemp(pattern) != nullptr);
    dir_ = pattern;
    path_ = dir_ + "/nbd.sock";
    listener_ = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un address{};
    address.sun_family = AF_UNIX;
    path_.copy(address.sun_path, sizeof address.sun_path - 1);
    REQUIRE(::bind(listener_, reinterpret_cast<sockaddr*>(&address), sizeof address) == 0);
    REQUIRE(::listen(listener_, 4) == 0);
    thread_ = std::thread([this, serve = std::move(serve)] {
      const int fd = ::accept(listener_, nullptr, nullptr);
      if (fd < 0) return;
      std::vector<uint8_t> greeting = nbd::encode_greeting(nbd::kFlagFixedNewstyle | nbd::kFlagNoZeroes);
      send_all(fd, greeting);
      uint8_t client_flags[4];
      receive_all(fd, client_flags, sizeof client_flags);
      serve(fd);
      ::close(fd);
    });
  }
  ~FakeServer() {
    ::shutdown(listener_, SHUT_RDWR);
    thread_.join();
    ::close(listener_);
    ::unlink(path_.c_str());
    ::rmdir(dir_.c_str());
  }
  NbdListener listener() const { return {path_, ""}; }

  static void send_all(int fd, const std::vector<uint8_t>& bytes) {
    (void)!::send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL);
  }
  static bool receive_all(int fd, uint8_t* data, size_t length) {
    while (length > 0) {
      const ssize_t n = ::recv(fd, data, length, 0);
      if (n <= 0) return false;
      data += n;
      length -= static_cast<size_t>(n);
    }
    return true;
  }
  // Reads one option; returns its number (0 when the client went away).
  static uint32_t receive_option(int fd) {
    uint8_t header[nbd::kOptionHeaderSize];
    if (!receive_all(fd, header, sizeof header)) return 0;
    const nbd::OptionHeader option =
        nbd::parse_option_header(std::span<const uint8_t, nbd::kOptionHeaderSize>(header));
    std::vector<uint8_t> data(option.length);
    if (!receive_all(fd, data.data(), data.size())) return 0;
    return option.option;
  }
  static void reply(int fd, uint32_t option, uint32_t type, const std::vector<uint8_t>& payload = {}) {
    std::vector<uint8_t> out;
    nbd::append_option_reply(out, option, type, payload);
    send_all(fd, out);
  }
  static std::vector<uint8_t> server_entry(const std::string& name) {
    std::vector<uint8_t> payload;
    nbd::put_u32(payload, static_cast<uint32_t>(name.size()));
    nbd::put_bytes(payload, name);
    return payload;
  }

 private:
  std::string dir_;
  std::string path_;
  int listener_ = -1;
  std::thread thread_;
};

}  // namespace

TEST_CASE("only_the_default_export_counts_as_listed_until_a_list_is_read") {
  PluginExports exports("default");
  CHECK_FALSE(exports.list_known());
  CHECK(exports.is_listed(""));
  CHECK_FALSE(exports.is_listed("other"));
  CHECK(exports.export_of("default") == "");
  CHECK(exports.origin_of("") == "default");
  exports.record({"a.img", "b.img"});
  CHECK(exports.list_known());
  CHECK_FALSE(exports.is_listed(""));  // file dir=: no default export
  CHECK(exports.is_listed("a.img"));
  CHECK(exports.export_of("default") == "default");  // then a listed file of that name is meant
  CHECK(exports.export_of("a.img") == "a.img");
  CHECK(exports.describe() == "\"a.img\", \"b.img\"");
  exports.record({""});
  CHECK(exports.export_of("default") == "");
  CHECK_FALSE(exports.is_listed("a.img"));  // the newest list is the truth
}

TEST_CASE("the_export_list_in_messages_is_shortened") {
  PluginExports exports("default");
  std::vector<std::string> names;
  for (int i = 0; i < 10; ++i) names.push_back("d" + std::to_string(i));
  exports.record(names);
  CHECK(exports.describe() == "\"d0\", \"d1\", \"d2\", \"d3\", \"d4\", \"d5\", \"d6\", \"d7\" and 2 more");
}

TEST_CASE("refresh_asks_the_server_and_needs_the_filter_to_have_seen_the_list") {
  PluginExports exports("default");
  FakeServer server([&](int fd) {
    for (bool recorded = false;;) {
      const uint32_t option = FakeServer::receive_option(fd);
      if (option != nbd::kOptList) return;
      if (!recorded) exports.record({"a.img"});  // nbdkit runs the filter's .list_exports
      recorded = true;
      FakeServer::reply(fd, option, nbd::kRepServer, FakeServer::server_entry("a.img"));
      FakeServer::reply(fd, option, nbd::kRepAck);
    }
  });
  std::unique_ptr<SelfClient> client;
  REQUIRE(SelfClient::connect(server.listener(), 5s, client));
  CHECK(exports.refresh(*client));
  CHECK(exports.is_listed("a.img"));
  // The second answer comes without the filter seeing the list (a filter above it answered).
  Status second = exports.refresh(*client);
  CHECK(second.code() == Errc::io_error);
  CHECK(second.message().find("without asking the nbdsnap filter") != std::string::npos);
}

TEST_CASE("refresh_reports_a_server_that_requires_tls") {
  PluginExports exports("default");
  FakeServer server([](int fd) {
    const uint32_t option = FakeServer::receive_option(fd);
    FakeServer::reply(fd, option, nbd::kRepErrTlsReqd);
  });
  std::unique_ptr<SelfClient> client;
  REQUIRE(SelfClient::connect(server.listener(), 5s, client));
  Status s = exports.refresh(*client);
  CHECK(s.code() == Errc::not_supported);
  CHECK(s.message().find("NBD_REP_ERR_TLS_REQD") != std::string::npos);
  CHECK_FALSE(exports.list_known());
}

TEST_CASE("info_opens_an_export_and_reports_a_refused_name") {
  std::vector<std::string> asked;
  FakeServer server([&](int fd) {
    for (int i = 0; i < 2; ++i) {
      uint8_t header[nbd::kOptionHeaderSize];
      if (!FakeServer::receive_all(fd, header, sizeof header)) return;
      const auto option = nbd::parse_option_header(std::span<const uint8_t, nbd::kOptionHeaderSize>(header));
      std::vector<uint8_t> data(option.length);
      if (!FakeServer::receive_all(fd, data.data(), data.size())) return;
      const std::string name(data.begin() + 4, data.begin() + 4 + nbd::get_u32(data.data()));
      asked.push_back(name);
      if (name == "nope") {
        FakeServer::reply(fd, option.option, nbd::kRepErrUnknown);
        continue;
      }
      std::vector<uint8_t> info;
      nbd::put_u16(info, nbd::kInfoExport);
      nbd::put_u64(info, 1 << 20);
      nbd::put_u16(info, 0);
      FakeServer::reply(fd, option.option, nbd::kRepInfo, info);
      FakeServer::reply(fd, option.option, nbd::kRepAck);
    }
  });
  std::unique_ptr<SelfClient> client;
  REQUIRE(SelfClient::connect(server.listener(), 5s, client));
  CHECK(client->info("a.img"));
  CHECK(client->info("nope").code() == Errc::not_found);
  client.reset();
  CHECK(asked == std::vector<std::string>{"a.img", "nope"});
}

TEST_CASE("a_server_that_never_answers_ends_in_a_timeout") {
  FakeServer server([](int fd) {  // reads the option, answers nothing, and keeps the connection until the end
    FakeServer::receive_option(fd);
    uint8_t byte;
    while (FakeServer::receive_all(fd, &byte, 1)) {
    }
  });
  std::unique_ptr<SelfClient> client;
  REQUIRE(SelfClient::connect(server.listener(), 200ms, client));
  std::vector<std::string> names;
  const auto start = std::chrono::steady_clock::now();
  Status s = client->list(names);
  CHECK(s.code() == Errc::io_error);
  CHECK(s.message().find("no answer in time") != std::string::npos);
  CHECK(std::chrono::steady_clock::now() - start >= 150ms);
  CHECK(std::chrono::steady_clock::now() - start < 5s);
  client.reset();  // closing lets the fake server's read end
}

TEST_CASE("no_server_is_a_clear_error") {
  std::unique_ptr<SelfClient> client;
  Status s = SelfClient::connect({"/nonexistent/nbdsnap.sock", ""}, 1s, client);
  CHECK_FALSE(s);
  CHECK(s.message().find("connect to /nonexistent/nbdsnap.sock") != std::string::npos);
}

namespace {

// A server that greets every connection it accepts with `greeting` (and reads a newstyle client's flags),
// then keeps it open until the server ends; on IPv4 127.0.0.1 or a Unix socket. It records, per connection,
// whether SelfClient::is_own_tcp_peer said the peer is a live client, and how many bytes the client sent
// after the greeting (read until the client closed).
class GreetingServer {
 public:
  GreetingServer(std::vector<uint8_t> greeting, bool tcp) : greeting_(std::move(greeting)) {
    if (tcp) {
      listener_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
      sockaddr_in address{};
      address.sin_family = AF_INET;
      address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
      REQUIRE(::bind(listener_, reinterpret_cast<sockaddr*>(&address), sizeof address) == 0);
      socklen_t length = sizeof address;
      REQUIRE(::getsockname(listener_, reinterpret_cast<sockaddr*>(&address), &length) == 0);
      where_.tcp_host_port = "127.0.0.1:" + std::to_string(ntohs(address.sin_port));
    } else {
      char pattern[] = "/tmp/nbdsnap-self-client-XXXXXX";
      REQUIRE(mkdtemp(pattern) != nullptr);
      dir_ = pattern;
      where_.unix_path = dir_ + "/nbd.sock";
      listener_ = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
      sockaddr_un address{};
      address.sun_family = AF_UNIX;
      where_.unix_path.copy(address.sun_path, sizeof address.sun_path - 1);
      REQUIRE(::bind(listener_, reinterpret_cast<sockaddr*>(&address), sizeof address) == 0);
    }
    REQUIRE(::listen(listener_, 16) == 0);
    acceptor_ = std::thread([this] {
      for (;;) {
        sockaddr_storage peer{};
        socklen_t length = sizeof peer;
        const int fd = ::accept(listener_, reinterpret_cast<sockaddr*>(&peer), &length);
        if (fd < 0) return;
        const bool own = peer.ss_family == AF_INET &&
                         SelfClient::is_own_tcp_peer(reinterpret_cast<const sockaddr_in&>(peer));
        FakeServer::send_all(fd, greeting_);
        connections_.emplace_back([this, fd, own] {
          size_t after = 0;
          uint8_t byte;
          while (FakeServer::receive_all(fd, &byte, 1)) ++after;
          ::close(fd);
          MutexLock lock(mutex_);
          own_.push_back(own);
          sent_after_greeting_.push_back(after);
        });
      }
    });
  }
  ~GreetingServer() {
    ::shutdown(listener_, SHUT_RDWR);
    acceptor_.join();
    for (std::thread& connection : connections_) connection.join();
    ::close(listener_);
    if (!dir_.empty()) {
      ::unlink(where_.unix_path.c_str());
      ::rmdir(dir_.c_str());
    }
  }
  const NbdListener& where() const { return where_; }
  // Connections ended so far: whether each peer was a live client, and the bytes it sent after the greeting.
  std::vector<bool> own() {
    MutexLock lock(mutex_);
    return own_;
  }
  std::vector<size_t> sent_after_greeting() {
    MutexLock lock(mutex_);
    return sent_after_greeting_;
  }
  // Waits (at most 5 s) until `count` connections have ended.
  bool await_ended(size_t count) {
    for (int i = 0; i < 500; ++i) {
      {
        MutexLock lock(mutex_);
        if (own_.size() >= count) return true;
      }
      std::this_thread::sleep_for(10ms);
    }
    return false;
  }

 private:
  const std::vector<uint8_t> greeting_;
  NbdListener where_;
  std::string dir_;
  int listener_ = -1;
  std::thread acceptor_;
  std::vector<std::thread> connections_;  // only the acceptor adds, only the destructor joins (after it)
  Mutex mutex_;
  std::vector<bool> own_ GUARDED_BY(mutex_);
  std::vector<size_t> sent_after_greeting_ GUARDED_BY(mutex_);
};

std::vector<uint8_t> oldstyle_greeting(uint64_t size) {
  std::vector<uint8_t> greeting;
  nbd::put_u64(greeting, nbd::kInitPasswd);
  nbd::put_u64(greeting, nbd::kOldstyleMagic);
  nbd::put_u64(greeting, size);
  nbd::put_u32(greeting, 0);               // flags
  greeting.resize(greeting.size() + 124);  // zeros
  return greeting;
}

}  // namespace

// nbdkit -o opens the export for a connection before it greets it; the filter's own client must tell that
// server apart, send it nothing (NBD_OPT_ABORT would be a malformed request), and read the greeting whole
// (a close with unread bytes is a reset nbdkit logs as an error).
TEST_CASE("an_oldstyle_server_is_recognised_and_left_without_a_stray_byte") {
  GreetingServer server(oldstyle_greeting(1 << 20), false);
  std::unique_ptr<SelfClient> client;
  bool oldstyle = false;
  const Status s = SelfClient::connect(server.where(), 5s, client, &oldstyle);
  CHECK(s.code() == Errc::not_supported);
  CHECK(s.message().find("oldstyle") != std::string::npos);
  CHECK(oldstyle);
  CHECK_FALSE(client);
  REQUIRE(server.await_ended(1));
  CHECK(server.sent_after_greeting() == std::vector<size_t>{0});
  CHECK(SelfClient::live_count() == 0);

  PluginExports exports("disk");
  exports.record_oldstyle();
  CHECK(exports.oldstyle());
  CHECK(exports.list_known());
  CHECK(exports.is_listed(""));
  CHECK_FALSE(exports.is_listed("other"));
  CHECK(exports.export_of("disk") == "");
  CHECK(exports.describe().find("oldstyle") != std::string::npos);
}

// A chain of connections that each make another (an .open that connects to nbdkit, which opens...) ends at
// kMaxLive live clients, whatever asks; one more waits for one to end, within its timeout.
TEST_CASE("at_most_kMaxLive_own_clients_live_at_once") {
  GreetingServer server(nbd::encode_greeting(nbd::kFlagFixedNewstyle | nbd::kFlagNoZeroes), false);
  std::vector<std::unique_ptr<SelfClient>> clients(SelfClient::kMaxLive);
  for (auto& client : clients) REQUIRE(SelfClient::connect(server.where(), 5s, client));
  CHECK(SelfClient::live_count() == SelfClient::kMaxLive);
  std::unique_ptr<SelfClient> one_more;
  const auto start = std::chrono::steady_clock::now();
  const Status refused = SelfClient::connect(server.where(), 200ms, one_more);
  CHECK(refused.code() == Errc::busy);
  CHECK(refused.message().find("without end") != std::string::npos);
  CHECK(std::chrono::steady_clock::now() - start >= 150ms);  // it waited for a client to end
  // One that ends while another waits makes room for it.
  std::thread ender([&] {
    std::this_thread::sleep_for(100ms);
    clients.back().reset();
  });
  CHECK(SelfClient::connect(server.where(), 5s, one_more));
  ender.join();
  clients.clear();
  one_more.reset();
  CHECK(SelfClient::live_count() == 0);
}

// Over TCP, nbdkit's .open learns the peer's address only: a live client is bound to its port before it
// connects, so the server can ask at once; once the client is gone, the address is no longer its own.
TEST_CASE("a_tcp_peer_is_known_as_an_own_client_while_it_lives") {
  GreetingServer server(nbd::encode_greeting(nbd::kFlagFixedNewstyle | nbd::kFlagNoZeroes), true);
  sockaddr_in address{};
  {
    std::unique_ptr<SelfClient> client;
    REQUIRE(SelfClient::connect(server.where(), 5s, client));
    CHECK(SelfClient::live_count() == 1);
  }
  REQUIRE(server.await_ended(1));
  CHECK(server.own() == std::vector<bool>{true});
  // An ordinary client of the same listener is not one.
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  address.sin_port = htons(static_cast<uint16_t>(std::stoi(server.where().tcp_host_port.substr(10))));
  REQUIRE(::connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) == 0);
  ::close(fd);
  REQUIRE(server.await_ended(2));
  CHECK(server.own() == std::vector<bool>{true, false});
  CHECK(SelfClient::live_count() == 0);
}

// Oldstyle nbdkit opens one name for every client (its clients name none): the first open's name is the
// export from then on, whichever it is ("" or what a filter above maps it to), and another is refused.
TEST_CASE("under_oldstyle_the_first_name_opened_is_the_only_export") {
  PluginExports exports("disk");
  exports.record_oldstyle();
  CHECK(exports.oldstyle_export().empty());
  CHECK(exports.accept_oldstyle_open("a.img"));
  CHECK(exports.accept_oldstyle_open("a.img"));
  CHECK(exports.oldstyle_export() == "a.img");
  const Status second = exports.accept_oldstyle_open("b.img");
  CHECK(second.code() == Errc::bad_state);
  CHECK(second.message().find("opened 'a.img'") != std::string::npos);
}
