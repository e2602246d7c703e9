// SPDX-License-Identifier: BSD-3-Clause
// request_executor.h — serves one NBD transmission request on the negotiated export and encodes its reply.
//
// validate() checks a request header before any payload is read; execute() calls the export (the engine)
// and returns the complete reply bytes. Pure of sockets: thread-safe as long as the export is, so the
// connection runs many executions at once on its worker threads.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "handshake.h"
#include "mutex.h"
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
  // Takes over a buffer of at least `size` bytes.
  Reply(std::unique_ptr<uint8_t[]> bytes, size_t size) : bytes_(std::move(bytes)), size_(size) {}

  uint8_t* data() { return bytes_.get(); }
  const uint8_t* data() const { return bytes_.get(); }
  size_t size() const { return size_; }
  uint8_t operator[](size_t i) const { return bytes_[i]; }
  // Gives the buffer up (for reuse); the reply is empty afterwards.
  std::unique_ptr<uint8_t[]> release() {
    size_ = 0;
    return std::move(bytes_);
  }

 private:
  std::unique_ptr<uint8_t[]> bytes_;
  size_t size_ = 0;
};

/// Large reply buffers of one size, kept for reuse after their reply was sent. A client reading an image
/// asks for many reads of one size; fresh buffers for them cost page faults (12% of the server's samples
/// under nbdcopy), because glibc gives a worker arena's heap back to the system once it is entirely free.
/// Thread-safe. Holds at most kMaxBuffers buffers and kMaxBytes bytes.
class ReplyBufferPool {
 public:
  static constexpr size_t kMinSize = 64 << 10;  // smaller buffers are cheap to allocate
  static constexpr size_t kMaxBuffers = 16;
  static constexpr size_t kMaxBytes = 4 << 20;
  // A reply of `size` uninitialized bytes, in a kept buffer when one of that size is free.
  Reply make(size_t size);
  // Keeps a sent reply's buffer if there is room and it has the size kept (a new size replaces the old).
  void recycle(Reply reply);

 private:
  Mutex mutex_;  // a leaf lock
  size_t size_ GUARDED_BY(mutex_) = 0;
  std::vector<std::unique_ptr<uint8_t[]>> free_ GUARDED_BY(mutex_);
};

class RequestExecutor {
 public:
  explicit RequestExecutor(NegotiatedSession session) : session_(std::move(session)) {}

  const NegotiatedSession& session() const { return session_; }
  // 0 when the request may run, else the NBD error to answer it with (message says why).
  uint32_t validate(const nbd::RequestHeader& request, std::string& message) const;
  // Runs a validated request. payload holds WRITE data (empty otherwise). READ replies come from `pool`
  // when one is given.
  Reply execute(const nbd::RequestHeader& request, std::span<const uint8_t> payload,
                ReplyBufferPool* pool = nullptr) const;
  // Runs a validated READ or WRITE only if it needs no wait for the engine (ServedExport's
  // *_without_waiting); nullopt when it would have waited, or for other commands: run it with execute() where
  // waiting is fine.
  std::optional<Reply> execute_without_waiting(const nbd::RequestHeader& request,
                                               std::span<const uint8_t> payload,
                                               ReplyBufferPool* pool = nullptr) const;
  // The reply refusing a request with an error.
  Reply error_reply(const nbd::RequestHeader& request, uint32_t error, std::string_view message) const;

 private:
  // nullopt only when may_wait is false and the read would have waited.
  std::optional<Reply> read(const nbd::RequestHeader& request, ReplyBufferPool* pool, bool may_wait) const;
  Reply block_status(const nbd::RequestHeader& request) const;
  Reply status_reply(const nbd::RequestHeader& request, const Status& status) const;
  NegotiatedSession session_;
};

}  // namespace nbdsnap
