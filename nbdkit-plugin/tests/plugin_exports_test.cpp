// SPDX-License-Identifier: BSD-3-Clause
// plugin_exports_test.cpp — which names are origins, and asking "nbdkit" for the list: a fake server on a
// Unix socket plays nbdkit, running the filter's part (PluginExports::record) when it answers NBD_OPT_LIST.
#include <doctest/doctest.h>

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <functional>
#include <string>
#include <thread>
#include <vector>

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
