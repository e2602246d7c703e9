// SPDX-License-Identifier: BSD-3-Clause
// tls_test.cpp — the TLS transport over socket pairs: PSK and X.509 handshakes, who the peer is, refusals
// (wrong key, another CA), bounded waits, and the tls:// address syntax.
#include <doctest/doctest.h>

#include <sys/socket.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <future>
#include <string>

#include "peer_identity.h"
#include "tls_credentials.h"
#include "tls_line_client.h"
#include "tls_stream.h"

using namespace nbdsnap;

namespace {

const std::string kCredentialsScript = NBDSNAP_TLS_CREDENTIALS_SCRIPT;

struct CredentialsDir {
  std::string path;
  CredentialsDir() {
    char pattern[] = "/tmp/nbdsnap-tls-test-XXXXXX";
    REQUIRE(mkdtemp(pattern) != nullptr);
    path = pattern;
  }
  ~CredentialsDir() { std::system(("rm -rf '" + path + "'").c_str()); }
};

bool make(const std::string& arguments) {
  return std::system((kCredentialsScript + " " + arguments).c_str()) == 0;
}

TlsOptions psk(const std::string& file, const std::string& username = "") {
  TlsOptions options;
  options.psk_file = file;
  options.psk_username = username;
  return options;
}

TlsOptions x509(const std::string& dir, bool verify_peer = false) {
  TlsOptions options;
  options.certificates_dir = dir;
  options.verify_peer = verify_peer;
  return options;
}

SteadyDeadline in_seconds(int seconds) {
  return std::chrono::steady_clock::now() + std::chrono::seconds(seconds);
}

std::shared_ptr<const TlsCredentials> load(TlsEndpoint endpoint, const TlsOptions& options) {
  std::shared_ptr<const TlsCredentials> credentials;
  Status status = TlsCredentials::load(endpoint, options, credentials);
  INFO(status.to_string());
  REQUIRE(status.is_ok());
  return credentials;
}

// Both ends of a connected socket pair, each with its TLS session.
struct Pair {
  int fds[2] = {-1, -1};
  std::unique_ptr<TlsStream> server, client;
  Pair(std::shared_ptr<const TlsCredentials> server_credentials,
       std::shared_ptr<const TlsCredentials> client_credentials, const std::string& server_name = "") {
    REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) == 0);
    std::unique_ptr<TlsSession> s, c;
    REQUIRE(TlsSession::create(server_credentials, fds[0], fds[0], "", s).is_ok());
    REQUIRE(TlsSession::create(client_credentials, fds[1], fds[1], server_name, c).is_ok());
    server = std::make_unique<TlsStream>(std::move(s), fds[0]);
    client = std::make_unique<TlsStream>(std::move(c), fds[1]);
  }
  ~Pair() {
    server.reset();
    client.reset();
    ::close(fds[0]);
    ::close(fds[1]);
  }
  // Runs both handshakes at once; true when both succeeded.
  std::pair<bool, bool> handshake() {
    auto server_done = std::async(std::launch::async, [this] {
      const bool ok = server->handshake(in_seconds(5));
      if (!ok) ::shutdown(fds[0], SHUT_RDWR);  // the client's wait ends too, as a closed connection would
      return ok;
    });
    const bool client_ok = client->handshake(in_seconds(5));
    if (!client_ok) ::shutdown(fds[1], SHUT_RDWR);
    return {server_done.get(), client_ok};
  }
};

}  // namespace

TEST_CASE("psk_handshake_carries_data_both_ways_and_names_the_username") {
  CredentialsDir dir;
  REQUIRE(make("psk " + dir.path + "/keys.psk agent1 other"));
  auto server = load(TlsEndpoint::server, psk(dir.path + "/keys.psk"));
  auto client = load(TlsEndpoint::client, psk(dir.path + "/keys.psk", "agent1"));
  Pair pair(server, client);
  const auto [server_ok, client_ok] = pair.handshake();
  REQUIRE(server_ok);
  REQUIRE(client_ok);
  CHECK(pair.server->session().peer().psk_username == "agent1");
  CHECK(pair.server->session().peer().describe() == "psk:agent1");
  CHECK(pair.client->write_all("hello\n", in_seconds(5)));
  char buffer[64];
  const ssize_t got = pair.server->read_some(buffer, sizeof(buffer), in_seconds(5));
  CHECK(std::string(buffer, size_t(std::max<ssize_t>(got, 0))) == "hello\n");
  // A reply larger than one TLS record and than the socket buffer, read while it is sent.
  const std::string large(1 << 20, 'x');
  auto sent = std::async(std::launch::async, [&] { return pair.server->write_all(large, in_seconds(10)); });
  std::string received;
  while (received.size() < large.size()) {
    char chunk[65536];
    const ssize_t n = pair.client->read_some(chunk, sizeof(chunk), in_seconds(10));
    REQUIRE(n > 0);
    received.append(chunk, size_t(n));
  }
  CHECK(sent.get());
  CHECK(received == large);
}

TEST_CASE("a_handshake_closed_without_an_alert_is_not_a_refusal_and_a_refusal_carries_one") {
  CredentialsDir dir;
  REQUIRE(make("psk " + dir.path + "/keys.psk agent1"));
  auto client = load(TlsEndpoint::client, psk(dir.path + "/keys.psk", "agent1"));
  // The server end reads the ClientHello and closes, as nbdsnapd's handshaker does to its oldest waiting
  // handshake in a flood.
  int fds[2];
  REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) == 0);
  std::unique_ptr<TlsSession> c;
  REQUIRE(TlsSession::create(client, fds[1], fds[1], "", c).is_ok());
  TlsStream stream(std::move(c), fds[1]);
  auto closer = std::async(std::launch::async, [&] {
    char hello[4096];
    (void)!::read(fds[0], hello, sizeof(hello));
    ::close(fds[0]);
  });
  CHECK_FALSE(stream.handshake(in_seconds(5)));
  closer.get();
  CHECK(stream.session().closed_by_server_in_handshake());
  CHECK(stream.session().peer_alert().empty());
  INFO(stream.error());
  CHECK(stream.error().find("closed the connection during the TLS handshake without refusing it") !=
        std::string::npos);
  CHECK(stream.error().find("try again") != std::string::npos);
  CHECK(stream.error().find("check that the key") == std::string::npos);
  ::close(fds[1]);

  // A real refusal (an unknown identity) comes with an alert, which the client names.
  REQUIRE(make("psk " + dir.path + "/stranger.psk stranger"));
  auto server = load(TlsEndpoint::server, psk(dir.path + "/keys.psk"));
  Pair pair(server, load(TlsEndpoint::client, psk(dir.path + "/stranger.psk", "stranger")));
  const auto [server_ok, client_ok] = pair.handshake();
  CHECK_FALSE(server_ok);
  CHECK_FALSE(client_ok);
  CHECK_FALSE(pair.client->session().closed_by_server_in_handshake());
  CHECK(pair.client->session().peer_alert() == "The SRP/PSK username is missing or not known");
  CHECK(
      pair.client->error().find(
          "the server refused the TLS handshake with alert 'The SRP/PSK username is missing or not known'") !=
      std::string::npos);
  // The server has no key for that user: the advice is to add one, not to compare keys.
  CHECK(pair.client->error().find("check that the server's --tls-psk file has a key for user 'stranger'") !=
        std::string::npos);
  CHECK(pair.client->error().find("is the one the server's --tls-psk file holds") == std::string::npos);
}

TEST_CASE("a_psk_client_that_hangs_up_after_its_client_hello_is_not_taken_for_a_wrong_key") {
  CredentialsDir dir;
  REQUIRE(make("psk " + dir.path + "/keys.psk agent1"));
  auto client = load(TlsEndpoint::client, psk(dir.path + "/keys.psk", "agent1"));
  auto server = load(TlsEndpoint::server, psk(dir.path + "/keys.psk"));
  // A ClientHello offering agent1 with the right key, as a client sends it before it gives up (its --timeout
  // against a stopped server, or Ctrl-C).
  // Closed after the streams that use them (declared first, destroyed last).
  struct SocketPair {
    int fd[2] = {-1, -1};
    ~SocketPair() {
      for (int f : fd)
        if (f >= 0) ::close(f);
    }
  } capture_pair, server_pair;
  REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, capture_pair.fd) == 0);
  REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, server_pair.fd) == 0);
  int* capture = capture_pair.fd;
  int* fds = server_pair.fd;
  std::unique_ptr<TlsSession> c;
  REQUIRE(TlsSession::create(client, capture[1], capture[1], "", c).is_ok());
  TlsStream client_stream(std::move(c), capture[1]);
  auto reader = std::async(std::launch::async, [&] {
    std::string hello(16384, '\0');
    const ssize_t n = ::read(capture[0], hello.data(), hello.size());
    ::shutdown(capture[0], SHUT_RDWR);
    hello.resize(size_t(std::max<ssize_t>(n, 0)));
    return hello;
  });
  CHECK_FALSE(client_stream.handshake(in_seconds(5)));
  const std::string hello = reader.get();
  REQUIRE_FALSE(hello.empty());
  // The server gets it, and then the end of the connection.
  REQUIRE(::write(fds[1], hello.data(), hello.size()) == ssize_t(hello.size()));
  ::shutdown(fds[1], SHUT_WR);
  std::unique_ptr<TlsSession> s;
  REQUIRE(TlsSession::create(server, fds[0], fds[0], "", s).is_ok());
  TlsStream server_stream(std::move(s), fds[0]);
  CHECK_FALSE(server_stream.handshake(in_seconds(5)));
  INFO(server_stream.error());
  CHECK(server_stream.error().find("does not match the key") == std::string::npos);
  CHECK(server_stream.error().find("the client closed the connection during the TLS handshake") !=
        std::string::npos);
}

TEST_CASE("a_client_with_the_wrong_psk_is_refused") {
  CredentialsDir dir;
  REQUIRE(make("psk " + dir.path + "/server.psk agent1"));
  REQUIRE(make("psk " + dir.path + "/client.psk agent1"));  // same name, another key
  Pair pair(load(TlsEndpoint::server, psk(dir.path + "/server.psk")),
            load(TlsEndpoint::client, psk(dir.path + "/client.psk")));
  const auto [server_ok, client_ok] = pair.handshake();
  CHECK_FALSE(server_ok);
  CHECK_FALSE(client_ok);
  // In words an administrator acts on, naming the user and the files (GnuTLS's own words in parentheses).
  INFO(pair.server->error() << " / " << pair.client->error());
  CHECK(pair.server->error().find("the client's PSK does not match the key for user 'agent1' in " + dir.path +
                                  "/server.psk") != std::string::npos);
  CHECK(pair.client->error().find("the server refused the TLS handshake with alert 'Decrypt error': check "
                                  "that the key of user 'agent1' in " +
                                  dir.path + "/client.psk") != std::string::npos);
}

TEST_CASE("a_client_with_an_unknown_psk_identity_is_refused_with_the_identity_named") {
  CredentialsDir dir;
  REQUIRE(make("psk " + dir.path + "/server.psk agent1"));
  REQUIRE(make("psk " + dir.path + "/client.psk stranger"));
  Pair pair(load(TlsEndpoint::server, psk(dir.path + "/server.psk")),
            load(TlsEndpoint::client, psk(dir.path + "/client.psk")));
  const auto [server_ok, client_ok] = pair.handshake();
  CHECK_FALSE(server_ok);
  CHECK_FALSE(client_ok);
  INFO(pair.server->error());
  CHECK(pair.server->error().find("the client offered an unknown PSK identity 'stranger'") !=
        std::string::npos);
}

TEST_CASE("x509_with_verify_peer_names_the_client_by_dn_and_san") {
  CredentialsDir dir;
  REQUIRE(make("x509 " + dir.path + "/pki agent7"));
  Pair pair(load(TlsEndpoint::server, x509(dir.path + "/pki", true)),
            load(TlsEndpoint::client, x509(dir.path + "/pki")), "localhost");
  const auto [server_ok, client_ok] = pair.handshake();
  INFO(pair.server->error() << " / " << pair.client->error());
  REQUIRE(server_ok);
  REQUIRE(client_ok);
  const PeerIdentity& peer = pair.server->session().peer();
  CHECK(peer.dn == "CN=agent7,O=nbdsnap test");
  CHECK(identity_matches("dn:CN=agent7,O=nbdsnap test", peer));
  CHECK(identity_matches("san:agent7.test", peer));
  CHECK_FALSE(identity_matches("san:agent1.test", peer));
  CHECK_FALSE(identity_matches("psk:agent7", peer));
}

TEST_CASE("a_client_certificate_from_another_ca_is_refused_under_verify_peer") {
  CredentialsDir dir;
  REQUIRE(make("x509 " + dir.path + "/pki"));
  REQUIRE(make("x509 " + dir.path + "/other"));
  // The client trusts the server's CA (so only the server's check can fail) but holds the other CA's cert.
  REQUIRE(std::system(("cp " + dir.path + "/pki/ca-cert.pem " + dir.path + "/other/ca-cert.pem").c_str()) ==
          0);
  Pair pair(load(TlsEndpoint::server, x509(dir.path + "/pki", true)),
            load(TlsEndpoint::client, x509(dir.path + "/other")), "localhost");
  const auto [server_ok, client_ok] = pair.handshake();
  CHECK_FALSE(server_ok);
  INFO(pair.server->error());
  // A GnuTLS client does not offer a certificate of a CA the server does not name: the server sees none.
  CHECK(pair.server->error().find("the client sent no certificate signed by " + dir.path +
                                  "/pki/ca-cert.pem") != std::string::npos);
}

TEST_CASE("a_client_refuses_a_server_certificate_for_another_host") {
  CredentialsDir dir;
  REQUIRE(make("x509 " + dir.path + "/pki"));
  Pair pair(load(TlsEndpoint::server, x509(dir.path + "/pki")),
            load(TlsEndpoint::client, x509(dir.path + "/pki")), "backup.example");
  const auto [server_ok, client_ok] = pair.handshake();
  CHECK_FALSE(client_ok);
  CHECK(pair.client->error().find("server's certificate") != std::string::npos);
}

TEST_CASE("a_handshake_with_a_silent_peer_ends_at_its_deadline") {
  CredentialsDir dir;
  REQUIRE(make("psk " + dir.path + "/keys.psk agent1"));
  int fds[2];
  REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) == 0);
  std::unique_ptr<TlsSession> session;
  REQUIRE(
      TlsSession::create(load(TlsEndpoint::server, psk(dir.path + "/keys.psk")), fds[0], fds[0], "", session)
          .is_ok());
  TlsStream stream(std::move(session), fds[0]);
  const auto start = std::chrono::steady_clock::now();
  CHECK_FALSE(stream.handshake(std::chrono::steady_clock::now() + std::chrono::milliseconds(200)));
  CHECK(stream.timed_out());
  CHECK(std::chrono::steady_clock::now() - start < std::chrono::seconds(2));
  ::close(fds[0]);
  ::close(fds[1]);
}

TEST_CASE("credentials_that_cannot_be_loaded_say_which_file") {
  CredentialsDir dir;
  std::shared_ptr<const TlsCredentials> out;
  Status missing = TlsCredentials::load(TlsEndpoint::server, x509(dir.path), out);
  CHECK(missing.message().find(dir.path + "/server-cert.pem") != std::string::npos);
  Status verify = TlsCredentials::load(TlsEndpoint::server, x509(dir.path, true), out);
  CHECK(verify.message().find("ca-cert.pem") != std::string::npos);
  std::ofstream(dir.path + "/bad.psk") << "agent1:nothex\n";
  Status bad = TlsCredentials::load(TlsEndpoint::server, psk(dir.path + "/bad.psk"), out);
  CHECK(bad.message().find("bad.psk line 1") != std::string::npos);
  std::ofstream(dir.path + "/two.psk") << "a:00ff\nb:ff00\n";
  Status ambiguous = TlsCredentials::load(TlsEndpoint::client, psk(dir.path + "/two.psk"), out);
  CHECK(ambiguous.message().find("holds 2 keys") != std::string::npos);
  CHECK_FALSE(TlsCredentials::load(TlsEndpoint::server, {}, out).is_ok());
}

TEST_CASE("a_store_keeps_its_credentials_when_a_reload_fails") {
  CredentialsDir dir;
  REQUIRE(make("psk " + dir.path + "/keys.psk agent1"));
  TlsCredentialStore store(TlsEndpoint::server, psk(dir.path + "/keys.psk"));
  REQUIRE(store.load().is_ok());
  auto first = store.current();
  std::ofstream(dir.path + "/keys.psk") << "broken\n";
  CHECK_FALSE(store.reload().is_ok());
  CHECK(store.current() == first);
  REQUIRE(make("psk " + dir.path + "/keys.psk agent2"));  // psktool rewrites the file
  CHECK(store.reload().is_ok());
  CHECK(store.current() != first);
}

TEST_CASE("tls_addresses_parse_user_host_and_port") {
  TlsAddress address;
  REQUIRE(parse_tls_address("tls://agent1@127.0.0.1:10809", address).is_ok());
  CHECK(address.user == "agent1");
  CHECK(address.host == "127.0.0.1");
  CHECK(address.port == 10809);
  REQUIRE(parse_tls_address("tls://[::1]:5", address).is_ok());
  CHECK(address.host == "::1");
  CHECK(address.user.empty());
  CHECK_FALSE(parse_tls_address("tls://host", address).is_ok());
  CHECK_FALSE(parse_tls_address("tls://host:0", address).is_ok());
  CHECK_FALSE(parse_tls_address("tls://host:12x", address).is_ok());
  CHECK_FALSE(parse_tls_address("tcp://host:1", address).is_ok());
}

TEST_CASE("identity_patterns") {
  PeerIdentity local;
  local.local = true;
  CHECK(identity_matches("local", local));
  CHECK(identity_matches("*", PeerIdentity{}));
  CHECK_FALSE(identity_matches("local", PeerIdentity{}));
  CHECK_FALSE(identity_matches("psk:", PeerIdentity{}));
  std::string error;
  CHECK(valid_identity_pattern("psk:agent1", error));
  CHECK(valid_identity_pattern("dn:CN=a b,O=c", error));
  CHECK_FALSE(valid_identity_pattern("psk:", error));
  CHECK_FALSE(valid_identity_pattern("agent1", error));
  CHECK(error.find("psk:NAME") != std::string::npos);
  CHECK(PeerIdentity{}.describe() == "anonymous");
}
