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

#include "reply_shape.h"

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

// events-wait: a server that stops (or restarts) ends the waits in flight at once, answers them with no event
// and closes the connection (docs/control.md, events-wait). An answer with no event that comes more than
// kEarlyWaitEnd before the wait was over is therefore looked at: if the connection closes within
// kCloseAfterCutWait (or what is left of the wait), the call fails with kConnectionLost, saying where to
// resume, instead of returning "no event came" to an agent that would then wait on a dead connection. (The
// Python client does the same: python/nbdsnap/client.py, wait_events.)
constexpr std::chrono::milliseconds kEarlyWaitEnd{20};
constexpr std::chrono::milliseconds kCloseAfterCutWait{1000};

// "after" of an events-wait request, as text.
std::string after_of(const nlohmann::json& arguments) {
  const auto it = arguments.find("after");
  return it != arguments.end() && it->is_number_unsigned() ? std::to_string(it->get<uint64_t>()) : "0";
}

// An events-wait that lost its connection (the server stopped between two waits of `nbdsnap events --follow`,
// or during one) says where a new connection resumes.
void add_resume_hint(Error& error, const std::string& command, const nlohmann::json& arguments) {
  if (command == "events-wait" && error.code == kConnectionLost) {
    error.message += ": connect again and resume with after=" + after_of(arguments);
  }
}

bool no_event(const nlohmann::json& reply) {
  const auto events = reply.find("events");
  return events != reply.end() && events->is_array() && events->empty();
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
  const auto sent_at = std::chrono::steady_clock::now();
  const Deadline deadline = sent_at + options.timeout + server_wait;
  if (Result<void> sent = transport->send_line(line, deadline); !sent) {
    Error error = exchange_failure(sent.error(), endpoint_name, within(), command, true);
    add_resume_hint(error, command, arguments);
    end(State::dead, error.message);
    return error;
  }
  Result<std::string> received = transport->receive_line(deadline);
  if (!received) {
    Error error = exchange_failure(received.error(), endpoint_name, within(), command, false);
    add_resume_hint(error, command, arguments);
    end(State::dead, error.message);
    return error;
  }
  if (std::string problem = reply_nesting_problem(*received); !problem.empty()) {
    Error error = client_failure(kProtocolError, EPROTO, "server's reply to " + command + ": " + problem);
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
    // Read tolerantly, a field of another type reads as empty: a CBT range of length "64K" as no change.
    if (std::string problem = reply_shape_problem(command, reply); !problem.empty()) {
      Error error = client_failure(kProtocolError, EPROTO,
                                   "server's reply to " + command + ": " + problem +
                                       "; is the server (nbdsnapd or the nbdkit filter) the same version as "
                                       "nbdsnap " NBDSNAP_VERSION "?");
      end(State::dead, error.message);
      return error;
    }
    if (command == "events-wait" && no_event(reply)) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          sent_at + server_wait - std::chrono::steady_clock::now());
      if (left > kEarlyWaitEnd) {
        if (Result<void> open = still_open(std::min(left, kCloseAfterCutWait), arguments); !open)
          return open.error();
      }
    }
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

Result<void> Client::Impl::still_open(std::chrono::milliseconds grace, const nlohmann::json& arguments) {
  Result<std::string> unasked = transport->receive_line(std::chrono::steady_clock::now() + grace);
  if (!unasked && unasked.error().code == kTimeout) return {};  // still open: no event came after all
  Error error =
      unasked ? client_failure(kProtocolError, EPROTO,
                               endpoint_name + ": a line the client did not ask for after events-wait: " +
                                   unasked->substr(0, 200))
              : client_failure(kConnectionLost, unasked.error().errno_value,
                               endpoint_name +
                                   ": the server closed the connection, ending events-wait early with "
                                   "no event (it stopped or restarted): connect again and resume with "
                                   "after=" +
                                   after_of(arguments));
  end(State::dead, error.message);
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
