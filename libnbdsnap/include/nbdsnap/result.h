// SPDX-License-Identifier: BSD-3-Clause
// nbdsnap/result.h — libnbdsnap's errors as values: every call returns a Result<T>, either a T or an Error
// that carries the server's code, errno and message (docs/control.md, "Replies"), or the client's own.
//
// No call of the library throws (beyond std::bad_alloc from the standard library). Accessing value() of a
// failed Result, or error() of a successful one, is a programming error (it aborts through std::get).
#pragma once

#include <string>
#include <utility>
#include <variant>

namespace nbdsnap::client {

// Who said no: the server answered {"ok": false, ...}, or the client could not get an answer.
enum class ErrorSource { server, client };

// The client's own codes (ErrorSource::client). Server codes are listed in docs/control.md; new ones may
// appear, so compare codes as strings and treat unknown ones as failures of the command.
inline constexpr const char* kTimeout = "timeout";                     // errno ETIMEDOUT
inline constexpr const char* kConnectionFailed = "connection_failed";  // connect(2) failed; errno says why
inline constexpr const char* kConnectionLost = "connection_lost";      // the connection ended or broke
inline constexpr const char* kWrongSocket = "wrong_socket";            // an NBD server answered, not nbdsnap
inline constexpr const char* kProtocolError = "protocol_error";        // a reply that is not the protocol's
inline constexpr const char* kNotConnected = "not_connected";          // the handle is dead or closed
inline constexpr const char* kInvalidRequest = "invalid_request";      // the call's arguments cannot be sent
inline constexpr const char* kGenerationChanged = "generation_changed";  // CBT pages of two generations
inline constexpr const char* kBadCredentials = "bad_credentials";  // TLS files missing, unreadable or refused

struct Error {
  ErrorSource source = ErrorSource::client;
  std::string code;     // "not_found", "busy", ... (server) or one of the k* codes above (client)
  int errno_value = 0;  // the server's "errno", or the local errno (0 when there is none)
  std::string message;  // one line for people; names the object or the socket concerned

  bool from_server() const { return source == ErrorSource::server; }
  // "MESSAGE (CODE)", as the nbdsnap CLI prints a server's refusal.
  std::string describe() const { return message + " (" + code + ")"; }
};

template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : state_(std::in_place_index<0>, std::move(value)) {}      // NOLINT: implicit by design
  Result(Error error) : state_(std::in_place_index<1>, std::move(error)) {}  // NOLINT

  bool ok() const { return state_.index() == 0; }
  explicit operator bool() const { return ok(); }
  // REQUIRES: ok().
  T& value() & { return std::get<0>(state_); }
  const T& value() const& { return std::get<0>(state_); }
  T&& value() && { return std::get<0>(std::move(state_)); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  // REQUIRES: !ok().
  const Error& error() const { return std::get<1>(state_); }

 private:
  std::variant<T, Error> state_;
};

template <>
class [[nodiscard]] Result<void> {
 public:
  Result() = default;
  Result(Error error) : error_(std::move(error)), failed_(true) {}  // NOLINT: implicit by design

  bool ok() const { return !failed_; }
  explicit operator bool() const { return ok(); }
  // REQUIRES: !ok().
  const Error& error() const { return error_; }

 private:
  Error error_;
  bool failed_ = false;
};

}  // namespace nbdsnap::client
