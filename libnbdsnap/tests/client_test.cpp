// SPDX-License-Identifier: BSD-3-Clause
// client_test.cpp — the Client handle against fake servers: connecting, refusals as values, timeouts and the
// dead state they leave, the wrong socket, malformed replies, the raw call, and close().
#include <doctest/doctest.h>

#include <cerrno>

#include "fake_server.h"
#include "nbdsnap/client.h"

using namespace nbdsnap::client;
using namespace std::chrono_literals;

namespace {

Options quick(std::chrono::milliseconds timeout) {
  Options options;
  options.timeout = timeout;
  options.timeout_name = "--timeout";
  return options;
}

Client connected(const std::string& path, std::chrono::milliseconds timeout = 5s) {
  Result<Client> client = Client::connect(path, quick(timeout));
  REQUIRE(client.ok());
  return std::move(client).value();
}

}  // namespace

TEST_CASE("connecting_to_a_missing_socket_or_an_impossible_path_fails_with_errno") {
  Result<Client> missing = Client::connect("/nonexistent/nbdsnap/control.sock", quick(1s));
  REQUIRE_FALSE(missing.ok());
  CHECK(missing.error().code == kConnectionFailed);
  CHECK(missing.error().errno_value == ENOENT);
  CHECK(missing.error().message.find("/nonexistent/nbdsnap/control.sock") != std::string::npos);
  Result<Client> too_long = Client::connect("/" + std::string(200, 'x'), quick(1s));
  REQUIRE_FALSE(too_long.ok());
  CHECK(too_long.error().errno_value == ENAMETOOLONG);
  CHECK(Client::connect("", quick(1s)).error().errno_value == ENAMETOOLONG);
}

TEST_CASE("a_refusal_carries_the_servers_code_errno_and_message_and_leaves_the_client_connected") {
  fake::Server server(fake::replying([](const std::string& line) {
    if (line.find("snapshot-info") != std::string::npos) {
      return std::string(
          R"({"ok":false,"error":{"code":"not_found","errno":2,"message":"no snapshot 'x'"}})");
    }
    return std::string(R"({"ok":true,"version":"9.9","protocol":1,"front_end":"nbdsnapd"})");
  }));
  Client client = connected(server.path());
  Result<Snapshot> info = client.snapshot_info("x");
  REQUIRE_FALSE(info.ok());
  CHECK(info.error().from_server());
  CHECK(info.error().code == "not_found");
  CHECK(info.error().errno_value == ENOENT);
  CHECK(info.error().message == "no snapshot 'x'");
  CHECK(info.error().describe() == "no snapshot 'x' (not_found)");
  CHECK(client.state() == State::connected);
  Result<ServerVersion> version = client.version();
  REQUIRE(version.ok());
  CHECK(version->version == "9.9");
  CHECK(version->front_end == "nbdsnapd");
}

TEST_CASE("a_silent_server_times_out_after_the_timeout_plus_the_server_wait_and_the_client_is_dead") {
  fake::Server quiet(fake::silent);
  Client client = connected(quiet.path(), 200ms);
  const auto start = std::chrono::steady_clock::now();
  Result<EventBatch> events = client.wait_events(0, 300ms);
  const auto elapsed = std::chrono::steady_clock::now() - start;
  REQUIRE_FALSE(events.ok());
  CHECK(events.error().code == kTimeout);
  CHECK(events.error().errno_value == ETIMEDOUT);
  CHECK(events.error().message.find("no reply to events-wait within 0.2 s (--timeout)") != std::string::npos);
  CHECK(elapsed >= 500ms);
  CHECK(elapsed < 4s);
  CHECK(client.state() == State::dead);
  // A late reply must never be taken for the next call's: the connection is not used again.
  Result<ServerVersion> after = client.version();
  REQUIRE_FALSE(after.ok());
  CHECK(after.error().code == kNotConnected);
  CHECK(after.error().message.find("no reply to events-wait") != std::string::npos);
}

// A stopping nbdsnapd ends the waits in flight at once with no event and closes the connection.
TEST_CASE(
    "an_events_wait_a_stopping_server_ends_early_and_closes_is_a_lost_connection_saying_where_to_resume") {
  fake::Server stopping([](int fd) {
    (void)fake::read_line(fd);
    fake::send_text(fd, "{\"ok\":true,\"events\":[],\"last_sequence\":7}\n");
  });  // and closes
  Client client = connected(stopping.path());
  Result<EventBatch> events = client.wait_events(7, 10s);
  REQUIRE_FALSE(events.ok());
  CHECK(events.error().code == kConnectionLost);
  CHECK(events.error().message.find("ending events-wait early with no event") != std::string::npos);
  CHECK(events.error().message.find("resume with after=7") != std::string::npos);
  CHECK(client.state() == State::dead);
  // The same through call(), as the CLI's `events --wait` and `--follow` send it.
  fake::Server stopping_too([](int fd) {
    (void)fake::read_line(fd);
    fake::send_text(fd, "{\"ok\":true,\"events\":[],\"last_sequence\":3}\n");
  });
  Client raw = connected(stopping_too.path());
  Result<std::string> reply = raw.call(R"({"command":"events-wait","after":3,"timeout_ms":10000})", 10s);
  REQUIRE_FALSE(reply.ok());
  CHECK(reply.error().code == kConnectionLost);
  CHECK(reply.error().message.find("resume with after=3") != std::string::npos);
}

TEST_CASE("an_events_wait_answered_early_with_no_event_on_a_connection_that_stays_open_is_no_event") {
  // The same reply for the version asked at the end.
  fake::Server early(fake::replying([](const std::string&) {
    return std::string(R"({"ok":true,"events":[],"last_sequence":0,"version":"test"})");
  }));
  Client client = connected(early.path());
  const auto start = std::chrono::steady_clock::now();
  Result<EventBatch> events = client.wait_events(0, 300ms);
  REQUIRE(events.ok());
  CHECK(events->events.empty());
  CHECK(std::chrono::steady_clock::now() - start < 5s);  // looked at most what was left of the wait
  CHECK(client.state() == State::connected);
  CHECK(client.wait_events(0, 0ms).ok());  // not looked at: the wait was over
  CHECK(client.version().ok());            // the conversation goes on in step
}

TEST_CASE("a_client_on_an_nbd_socket_says_so_and_names_the_path") {
  fake::Server nbd(fake::nbd_like);
  Client client = connected(nbd.path());
  Result<std::vector<Origin>> origins = client.origins();
  REQUIRE_FALSE(origins.ok());
  CHECK(origins.error().code == kWrongSocket);
  CHECK(origins.error().message.find(nbd.path() + ": this is an NBD socket, not a control socket") !=
        std::string::npos);
  CHECK(client.state() == State::dead);
}

TEST_CASE("a_malformed_reply_is_a_protocol_error_and_ends_the_connection") {
  fake::Server server(fake::replying([](const std::string&) { return std::string("hello"); }));
  Client client = connected(server.path());
  Result<std::vector<Snapshot>> list = client.snapshots();
  REQUIRE_FALSE(list.ok());
  CHECK(list.error().code == kProtocolError);
  CHECK(list.error().message == "malformed reply from the control socket: hello");
  CHECK(client.state() == State::dead);
}

// A broken or hostile server must not make the client hold an endless line: past 64 MiB it is no reply.
TEST_CASE("a_reply_line_without_end_is_a_protocol_error_past_64_mib") {
  fake::Server server([](int fd) {
    fake::read_line(fd);
    const std::string block(1 << 20, 'x');
    while (::send(fd, block.data(), block.size(), MSG_NOSIGNAL) > 0) {
    }
  });
  Client client = connected(server.path(), 60s);
  Result<std::vector<Snapshot>> list = client.snapshots();
  REQUIRE_FALSE(list.ok());
  CHECK(list.error().code == kProtocolError);
  CHECK(list.error().message.find("a reply line longer than 67108864 bytes") != std::string::npos);
  CHECK(client.state() == State::dead);
}

TEST_CASE("the_raw_call_sends_any_command_and_returns_the_reply_line") {
  fake::Server server(fake::replying([](const std::string& line) {
    return line.find("\"future-command\"") != std::string::npos
               ? std::string(R"({"ok":true,"new_field":[1,2]})")
               : std::string(R"({"ok":true})");
  }));
  Client client = connected(server.path());
  Result<std::string> reply = client.call(R"({"command":"future-command","x":1})");
  REQUIRE(reply.ok());
  CHECK(*reply == R"({"new_field":[1,2],"ok":true})");
  Result<std::string> bad = client.call("[1,2]");
  REQUIRE_FALSE(bad.ok());
  CHECK(bad.error().code == kInvalidRequest);
  CHECK(client.state() == State::connected);  // nothing was sent
  Result<void> not_utf8 = client.snapshot_destroy(std::string("\xff\xfe", 2));
  REQUIRE_FALSE(not_utf8.ok());
  CHECK(not_utf8.error().code == kInvalidRequest);
  CHECK(client.state() == State::connected);
}

TEST_CASE("a_closed_client_refuses_every_call") {
  fake::Server server(fake::control_like);
  Client client = connected(server.path());
  client.close();
  CHECK(client.state() == State::closed);
  Result<ServerVersion> version = client.version();
  REQUIRE_FALSE(version.ok());
  CHECK(version.error().code == kNotConnected);
  CHECK(version.error().message.find("closed") != std::string::npos);
  client.close();  // idempotent
}

namespace {

// A transport of our own (as a TLS one would be): answers from a script, records what was sent.
class ScriptedTransport final : public Transport {
 public:
  explicit ScriptedTransport(std::vector<std::string> replies, std::vector<std::string>* sent)
      : replies_(std::move(replies)), sent_(sent) {}
  Result<void> connect(Deadline) override { return {}; }
  Result<void> send_line(std::string_view line, Deadline) override {
    sent_->emplace_back(line);
    return {};
  }
  Result<std::string> receive_line(Deadline) override {
    if (next_ == replies_.size()) return Error{ErrorSource::client, kConnectionLost, 0, "script ended"};
    return replies_[next_++];
  }
  std::string endpoint() const override { return "scripted transport"; }

 private:
  std::vector<std::string> replies_;
  size_t next_ = 0;
  std::vector<std::string>* sent_;
};

}  // namespace

TEST_CASE("a_transport_of_its_own_plugs_into_the_client") {
  std::vector<std::string> sent;
  auto transport = std::make_unique<ScriptedTransport>(
      std::vector<std::string>{R"({"ok":true,"version":"t","protocol":1,"front_end":"nbdsnapd"})"}, &sent);
  Result<Client> client = Client::connect(std::move(transport));
  REQUIRE(client.ok());
  CHECK(client->endpoint() == "scripted transport");
  REQUIRE(client->version().ok());
  REQUIRE(sent.size() == 1);
  CHECK(sent[0] == "{\"command\":\"version\"}\n");
  Result<std::vector<Origin>> lost = client->origins();
  REQUIRE_FALSE(lost.ok());
  CHECK(lost.error().code == kConnectionLost);
  CHECK(client->state() == State::dead);
}

TEST_CASE("a_long_mark_dirty_list_goes_in_requests_below_the_line_limit_and_stops_at_an_error") {
  std::vector<std::string> sent;
  auto transport = std::make_unique<ScriptedTransport>(
      std::vector<std::string>{R"({"ok":true})", R"({"ok":true})",
                               R"({"ok":false,"error":{"code":"not_found","errno":2,"message":"gone"}})"},
      &sent);
  Result<Client> client = Client::connect(std::move(transport));
  REQUIRE(client.ok());
  std::vector<ByteRange> ranges;
  for (uint64_t i = 0; i < 40000; ++i) ranges.push_back({i * 8192, 4096});
  Result<void> marked = client->cbt_mark_dirty("disk", ranges);
  REQUIRE_FALSE(marked.ok());
  CHECK(marked.error().code == "not_found");
  REQUIRE(sent.size() == 3);
  for (const std::string& line : sent) CHECK(line.size() < (1u << 20));
  CHECK(sent[2].find("\"offset\":327663616") != std::string::npos);  // the last range, 39999 * 8192
}
