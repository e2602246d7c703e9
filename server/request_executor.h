// request_executor.h — serves one NBD transmission request on the negotiated export and encodes its reply.
//
// validate() checks a request header before any payload is read; execute() calls the export (the engine)
// and returns the complete reply bytes. Pure of sockets: thread-safe as long as the export is, so the
// connection runs many executions at once on its worker threads.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "handshake.h"
#include "nbd_protocol.h"

namespace nbdsnap {

class RequestExecutor {
 public:
  explicit RequestExecutor(NegotiatedSession session) : session_(std::move(session)) {}

  const NegotiatedSession& session() const { return session_; }
  // 0 when the request may run, else the NBD error to answer it with (message says why).
  uint32_t validate(const nbd::RequestHeader& request, std::string& message) const;
  // Runs a validated request. payload holds WRITE data (empty otherwise).
  std::vector<uint8_t> execute(const nbd::RequestHeader& request, std::span<const uint8_t> payload) const;
  // The reply refusing a request with an error.
  std::vector<uint8_t> error_reply(const nbd::RequestHeader& request, uint32_t error, std::string_view message) const;

 private:
  std::vector<uint8_t> read(const nbd::RequestHeader& request) const;
  std::vector<uint8_t> block_status(const nbd::RequestHeader& request) const;
  std::vector<uint8_t> status_reply(const nbd::RequestHeader& request, const Status& status) const;
  NegotiatedSession session_;
};

}  // namespace nbdsnap
