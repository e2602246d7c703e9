// request_executor.h — serves one NBD transmission request on the negotiated export and encodes its reply.
//
// validate() checks a request header before any payload is read; execute() calls the export (the engine)
// and returns the complete reply bytes. Pure of sockets: thread-safe as long as the export is, so the
// connection runs many executions at once on its worker threads.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "handshake.h"
#include "nbd_protocol.h"

namespace nbdsnap {

/// The bytes of one reply, contiguous, as they go on the wire. A buffer made by size is not zero-filled:
/// a READ reply's data is read in place behind its header, and zeroing it first cost a pass over the data.
class Reply {
 public:
  Reply() = default;
  // Uninitialized bytes: the caller fills all of them.
  explicit Reply(size_t size) : bytes_(std::make_unique_for_overwrite<uint8_t[]>(size)), size_(size) {}
  explicit Reply(std::span<const uint8_t> encoded);

  uint8_t* data() { return bytes_.get(); }
  const uint8_t* data() const { return bytes_.get(); }
  size_t size() const { return size_; }
  uint8_t operator[](size_t i) const { return bytes_[i]; }

 private:
  std::unique_ptr<uint8_t[]> bytes_;
  size_t size_ = 0;
};

class RequestExecutor {
 public:
  explicit RequestExecutor(NegotiatedSession session) : session_(std::move(session)) {}

  const NegotiatedSession& session() const { return session_; }
  // 0 when the request may run, else the NBD error to answer it with (message says why).
  uint32_t validate(const nbd::RequestHeader& request, std::string& message) const;
  // Runs a validated request. payload holds WRITE data (empty otherwise).
  Reply execute(const nbd::RequestHeader& request, std::span<const uint8_t> payload) const;
  // The reply refusing a request with an error.
  Reply error_reply(const nbd::RequestHeader& request, uint32_t error, std::string_view message) const;

 private:
  Reply read(const nbd::RequestHeader& request) const;
  Reply block_status(const nbd::RequestHeader& request) const;
  Reply status_reply(const nbd::RequestHeader& request, const Status& status) const;
  NegotiatedSession session_;
};

}  // namespace nbdsnap
