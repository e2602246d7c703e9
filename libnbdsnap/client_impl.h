// SPDX-License-Identifier: BSD-3-Clause
// client_impl.h — the state behind a Client handle and the one request/reply exchange every call goes
// through. Internal to libnbdsnap.
#pragma once

#include <atomic>
#include <chrono>
#include <memory>
#include <string>

#include <nlohmann/json.hpp>

#include "client_failure.h"
#include "mutex.h"
#include "nbdsnap/client.h"

namespace nbdsnap::client {

struct Client::Impl {
  Impl(std::unique_ptr<Transport> t, Options o) : transport(std::move(t)), options(std::move(o)) {}

  // Sends {"command": command, ...arguments} and waits for its reply line, at most options.timeout plus
  // server_wait. Returns the reply object without "ok", or the server's refusal, or a client error (after
  // which the handle is dead).
  Result<nlohmann::json> exchange(const std::string& command, nlohmann::json arguments,
                                  std::chrono::milliseconds server_wait) EXCLUDES(call_mutex);

  // cbt-map or cbt-raw-map with `arguments`: one page, checked (cbt_page_check.h). Errors: the exchange's,
  // kProtocolError (an inconsistent page; the connection stays up).
  Result<nlohmann::json> one_page(const std::string& command, const nlohmann::json& arguments)
      EXCLUDES(call_mutex);
  // As one_page, following `more` page after page (cbt_paging.cpp): the first reply with every page's
  // ranges (or runs) and the last page's next_offset; more is false. Errors: one_page's,
  // kGenerationChanged (pages of two generations), kProtocolError (a page that does not move on, or whose
  // block_size or device_size differs from the first's).
  Result<nlohmann::json> all_pages(const std::string& command, nlohmann::json arguments) EXCLUDES(call_mutex);

  // After an events-wait answered early with no event: ok if the connection stays open for `grace`;
  // kConnectionLost (the server stopped: the message says to resume with `after`) or kProtocolError (it sent
  // a line unasked) otherwise, and the handle is dead.
  Result<void> still_open(std::chrono::milliseconds grace, const nlohmann::json& arguments)
      REQUIRES(call_mutex);
  // Ends the connection; `to` is dead or closed.
  void end(State to, const std::string& why) REQUIRES(call_mutex);
  // "within 30 s (--timeout)" for messages.
  std::string within() const;

  // Held for each exchange (requests are answered in order on one connection) and by close().
  Mutex call_mutex;
  std::unique_ptr<Transport> transport GUARDED_BY(call_mutex);
  const Options options;
  std::string endpoint_name;  // set once at connect
  std::atomic<State> state{State::connected};
  std::string end_reason GUARDED_BY(call_mutex);  // why the handle is dead
};

}  // namespace nbdsnap::client
