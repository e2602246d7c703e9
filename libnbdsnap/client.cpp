// SPDX-License-Identifier: BSD-3-Clause
// client.cpp — the Client handle: connecting, its states, and the request/reply exchange (client.h).
//
// Design notes. Every call builds one JSON request line, sends it and reads one reply line while holding
// call_mutex, because the server answers a connection's requests in order: two threads interleaving their
// lines would each read the other's reply. A call that ends without knowing the conversation's state (the
// reply did not come in time, the connection broke, the reply was not JSON) ends the connection: a late
// reply would otherwise be taken for the next call's. The state is an atomic so state() never waits
// behind a call in flight.
#include "client_impl.h"

#include <cerrno>
#include <cstdio>

namespace nbdsnap::client {

namespace {

std::string seconds_text(std::chrono::milliseconds timeout) {
  char text[32];
  std::snprintf(text, sizeof(text), "%g s", static_cast<double>(timeout.count()) / 1000);
  return text;
}

// The transport's error, reworded where the call knows more (which command, which timeout).
// `where` names the endpoint, `within` the timeout ("within 30 s").
Error exchange_failure(const Error& error, const std::string& where, const std::string& within,
                       const std::string& command, bool sending) {
  if (error.code != kTimeout) return error;
  if (sending) {
    return client_failure(kTimeout, ETIMEDOUT,
                          where + ": cannot send " + command + " " + within + ": the server does not read");
  }
  return client_failure(
      kTimeout, ETIMEDOUT,
      where + ": no reply to " + command + " " + within + "; the server may still carry it out");
}

}  // namespace

const char* library_version() {
  return NBDSNAP_VERSION;
}

std::string Client::Impl::within() const {
  std::string text = "within " + seconds_text(options.timeout);
  if (!options.timeout_name.empty()) text += " (" + options.timeout_name + ")";
  return text;
}

void Client::Impl::end(State to, const std::string& why) {
  transport.reset();
  state = to;
  if (to == State::dead) end_reason = why;
}

Result<nlohmann::json> Client::Impl::exchange(const std::string& command, nlohmann::json arguments,
                                              std::chrono::milliseconds server_wait) {
  arguments["command"] = command;
  std::string line;
  try {
    line = arguments.dump() + "\n";
  } catch (const nlohmann::json::exception&) {  // a string that is not UTF-8
    return client_failure(kInvalidRequest, EINVAL, command + ": names and paths must be UTF-8 text");
  }
  MutexLock lock(call_mutex);
  if (state != State::connected) {
    const std::string reason =
        state == State::closed ? "it was closed" : "an earlier call failed: " + end_reason;
    return client_failure(kNotConnected, ENOTCONN, endpoint_name + ": not connected (" + reason + ")");
  }
  const Deadline deadline = std::chrono::steady_clock::now() + options.timeout + server_wait;
  if (Result<void> sent = transport->send_line(line, deadline); !sent) {
    Error error = exchange_failure(sent.error(), endpoint_name, within(), command, true);
    end(State::dead, error.message);
    return error;
  }
  Result<std::string> received = transport->receive_line(deadline);
  if (!received) {
    Error error = exchange_failure(received.error(), endpoint_name, within(), command, false);
    end(State::dead, error.message);
    return error;
  }
  nlohmann::json reply = nlohmann::json::parse(*received, nullptr, /*allow_exceptions=*/false);
  if (!reply.is_object() || !reply.contains("ok") || !reply["ok"].is_boolean()) {
    Error error = client_failure(kProtocolError, EPROTO,
                                 "malformed reply from the control socket: " + received->substr(0, 200));
    end(State::dead, error.message);
    return error;
  }
  if (reply["ok"].get<bool>()) {
    reply.erase("ok");
    return reply;
  }
  const nlohmann::json refusal = reply.value("error", nlohmann::json::object());
  Error error{ErrorSource::server, "unknown", 0, "(no message)"};
  if (refusal.is_object()) {
    if (refusal.contains("code") && refusal["code"].is_string())
      error.code = refusal["code"].get<std::string>();
    if (refusal.contains("message") && refusal["message"].is_string()) {
      error.message = refusal["message"].get<std::string>();
    }
    if (refusal.contains("errno") && refusal["errno"].is_number_integer()) {
      error.errno_value = refusal["errno"].get<int>();
    }
  }
  return error;
}

Client::Client(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Client::Client(Client&&) noexcept = default;
Client& Client::operator=(Client&&) noexcept = default;
Client::~Client() {
  close();
}

Result<Client> Client::connect(const std::string& address, const Options& options) {
  if (is_tls_address(address)) {
    Result<std::unique_ptr<Transport>> transport = tls_transport(address, options.tls);
    if (!transport) return transport.error();
    return connect(std::move(transport).value(), options);
  }
  return connect(unix_socket_transport(address), options);
}

Result<Client> Client::connect(std::unique_ptr<Transport> transport, const Options& options) {
  if (!transport) return client_failure(kInvalidRequest, EINVAL, "no transport given");
  auto impl = std::make_unique<Impl>(std::move(transport), options);
  {
    MutexLock lock(impl->call_mutex);
    impl->endpoint_name = impl->transport->endpoint();
    Result<void> connected = impl->transport->connect(std::chrono::steady_clock::now() + options.timeout);
    if (!connected) {
      Error error = connected.error();
      if (error.code == kTimeout) {
        error.message = impl->endpoint_name + ": cannot connect " + impl->within() + ": " + error.message;
      }
      return error;
    }
  }
  return Client(std::move(impl));
}

State Client::state() const {
  return impl_ ? impl_->state.load() : State::closed;
}

void Client::close() {
  if (!impl_) return;
  MutexLock lock(impl_->call_mutex);
  if (impl_->state != State::closed) impl_->end(State::closed, {});
}

std::string Client::endpoint() const {
  return impl_ ? impl_->endpoint_name : std::string("(moved-from client)");
}

Result<std::string> Client::call(const std::string& request_json, std::chrono::milliseconds server_wait) {
  if (!impl_) return client_failure(kNotConnected, ENOTCONN, "a moved-from client");
  nlohmann::json request = nlohmann::json::parse(request_json, nullptr, /*allow_exceptions=*/false);
  if (!request.is_object() || !request.contains("command") || !request["command"].is_string()) {
    return client_failure(kInvalidRequest, EINVAL, "a request is a JSON object with a \"command\" string");
  }
  const std::string command = request["command"].get<std::string>();
  Result<nlohmann::json> reply = impl_->exchange(command, std::move(request), server_wait);
  if (!reply) return reply.error();
  reply->emplace("ok", true);
  return reply->dump();
}

}  // namespace nbdsnap::client
