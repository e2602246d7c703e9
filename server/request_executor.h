// SPDX-License-Identifier: BSD-3-Clause
// request_executor.h — serves one NBD transmission request on the negotiated export and encodes its reply.
//
// validate() checks a request header before any payload is read; execute() calls the export (the engine)
// and returns the complete reply bytes. Pure of sockets: thread-safe as long as the export is, so the
// connection runs many executions at once on its worker threads.
#pragma once

#include <cstdint>
#include <cstdlib>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "handshake.h"
#include "mutex.h"
#include "nbd_protocol.h"

namespace nbdsnap {

/// The bytes of one reply, contiguous, as they go on the wire. A buffer made by size is not zero-filled:
/// a READ reply's data is read in place behind its header, and zeroing it first cost a pass over the data.
/// A READ reply's buffer (with_aligned_data) places the data after the header on an aligned address, with
/// unused bytes in front of the header: with --cache none the engine reads O_DIRECT straight into it instead
/// of through a bounce buffer and a copy (core/direct_io.h). data() is always where the reply starts.
class Reply {
 public:
  // The largest alignment given to a READ reply's data: a page. O_DIRECT wants buffers aligned to what
  // core/direct_io.cpp finds: statx's stx_dio_mem_align (a device's DMA alignment, at most its logical block
  // size), else the logical block size (512 B or 4 KiB) or a file system's block size (4 KiB on ext4 and XFS
  // by default). A device needing more still works: its reads take the bounce buffer as before.
  static constexpr size_t kMaxDataAlignment = 4096;
  // Data shorter than this is never aligned: no device has an O_DIRECT block below 512 bytes.
  static constexpr size_t kMinAlignedData = 512;
  // Room for the header of a reply with aligned data (a READ reply's: 16 or 20 bytes).
  static constexpr size_t kMaxHeader = 32;

  Reply() = default;
  // A moved-from reply is empty (no bytes, size 0).
  Reply(Reply&& other) noexcept
      : storage_(std::move(other.storage_)),
        capacity_(std::exchange(other.capacity_, 0)),
        alignment_(std::exchange(other.alignment_, 1)),
        start_(std::exchange(other.start_, 0)),
        size_(std::exchange(other.size_, 0)) {}
  Reply& operator=(Reply&& other) noexcept {
    storage_ = std::move(other.storage_);
    capacity_ = std::exchange(other.capacity_, 0);
    alignment_ = std::exchange(other.alignment_, 1);
    start_ = std::exchange(other.start_, 0);
    size_ = std::exchange(other.size_, 0);
    return *this;
  }
  // `size` uninitialized bytes: the caller fills all of them. Throws std::bad_alloc.
  explicit Reply(size_t size);
  explicit Reply(std::span<const uint8_t> encoded);
  // `header` (<= kMaxHeader) bytes then `length` uninitialized bytes of data (the caller fills all of them)
  // starting at an address aligned to data_alignment(length). Throws std::bad_alloc.
  static Reply with_aligned_data(size_t header, size_t length);
  // min(kMaxDataAlignment, the largest power of two <= length), or 1 (none) below kMinAlignedData. Every read
  // that O_DIRECT can take as it is has a length that is a multiple of the device's block (a power of two
  // that is never below its memory alignment), so this alignment suffices for it, and the unused bytes
  // (fewer than the alignment plus kMaxHeader) stay below both the data's length and a page plus 32 bytes.
  static size_t data_alignment(size_t length);
  // The bytes a with_aligned_data() reply of `length` data bytes holds, whatever its header.
  static size_t aligned_capacity(size_t length) { return length + data_alignment(length) + kMaxHeader; }

  uint8_t* data() { return storage_.get() + start_; }
  const uint8_t* data() const { return storage_.get() + start_; }
  size_t size() const { return size_; }
  uint8_t operator[](size_t i) const { return data()[i]; }

 private:
  friend class ReplyBufferPool;
  struct Free {
    void operator()(uint8_t* p) const { std::free(p); }
  };
  using Storage = std::unique_ptr<uint8_t, Free>;
  Reply(Storage storage, size_t capacity, size_t alignment, size_t start, size_t size)
      : storage_(std::move(storage)),
        capacity_(capacity),
        alignment_(alignment),
        start_(start),
        size_(size) {}
  // A reply with aligned data in `storage` of aligned_capacity(length) bytes (new or recycled).
  static Reply with_aligned_data(Storage storage, size_t header, size_t length);
  // malloc'd storage of `capacity` bytes, never null. Throws std::bad_alloc.
  static Storage allocate(size_t capacity);

  Storage storage_;
  size_t capacity_ = 0;   // bytes of storage_
  size_t alignment_ = 1;  // of the data of a with_aligned_data() reply
  size_t start_ = 0;      // where the reply starts in storage_
  size_t size_ = 0;
};

/// Large READ reply buffers of one capacity, kept for reuse after their reply was sent. A client reading an
/// image asks for many reads of one size; fresh buffers for them cost page faults (12% of the server's
/// samples under nbdcopy), because glibc gives a worker arena's heap back to the system once it is entirely
/// free. A kept buffer keeps its alignment: a reply made from it has its data on the same aligned address as
/// a new one (Reply::with_aligned_data), whatever its header's size.
/// Thread-safe. Holds at most kMaxBuffers buffers and kMaxBytes bytes (capacities, the pads included).
class ReplyBufferPool {
 public:
  static constexpr size_t kMinSize = 64 << 10;  // smaller buffers are cheap to allocate
  static constexpr size_t kMaxBuffers = 16;
  static constexpr size_t kMaxBytes = 4 << 20;
  // Reply::with_aligned_data(header, length), in a kept buffer when one of its capacity is free.
  Reply make(size_t header, size_t length);
  // Keeps a sent reply's buffer if it came from make() (or with_aligned_data()), there is room and it has the
  // capacity kept (a new capacity replaces the old).
  void recycle(Reply reply);
  // Tests: buffers kept now.
  size_t kept() const EXCLUDES(mutex_);

 private:
  mutable Mutex mutex_;  // a leaf lock
  size_t capacity_ GUARDED_BY(mutex_) = 0;
  std::vector<Reply::Storage> free_ GUARDED_BY(mutex_);
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
  // The reply refusing a request with an error.
  Reply error_reply(const nbd::RequestHeader& request, uint32_t error, std::string_view message) const;

 private:
  Reply read(const nbd::RequestHeader& request, ReplyBufferPool* pool) const;
  Reply block_status(const nbd::RequestHeader& request) const;
  Reply status_reply(const nbd::RequestHeader& request, const Status& status) const;
  NegotiatedSession session_;
};

}  // namespace nbdsnap
