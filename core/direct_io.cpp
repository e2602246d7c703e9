// SPDX-License-Identifier: BSD-3-Clause
// direct_io.cpp — O_DIRECT alignment discovery and the bounce-buffer path for requests it cannot take as
// they are (design notes in direct_io.h).
#include "direct_io.h"

#include <fcntl.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <memory>

namespace nbdsnap {

Status parse_file_cache(const std::string& text, const std::string& what, FileCache& out) {
  if (text == "none") {
    out = FileCache::none;
  } else if (text == "writeback") {
    out = FileCache::writeback;
  } else {
    return {Errc::invalid_argument,
            what + " '" + text +
                "' is not a cache mode: give none (O_DIRECT, bypassing the page cache) or "
                "writeback (the page cache, the default)"};
  }
  return Status::ok();
}

const char* file_cache_name(FileCache cache) {
  return cache == FileCache::none ? "none" : "writeback";
}

namespace {

uint64_t power_of_two_at_least(uint64_t value) {
  uint64_t p = 1;
  while (p < value) p <<= 1;
  return p;
}

uint64_t round_down(uint64_t value, uint64_t unit) {
  return value / unit * unit;
}
uint64_t round_up(uint64_t value, uint64_t unit) {
  return (value + unit - 1) / unit * unit;
}

struct FreeDeleter {
  void operator()(void* p) const { std::free(p); }
};
using BounceBuffer = std::unique_ptr<char[], FreeDeleter>;

// An aligned buffer of `bytes` (rounded up to the alignment, as aligned_alloc requires), or null.
BounceBuffer allocate_bounce(uint64_t bytes, uint64_t alignment) {
  return BounceBuffer(static_cast<char*>(std::aligned_alloc(alignment, round_up(bytes, alignment))));
}

}  // namespace

DirectIoAlignment direct_io_alignment(int fd) {
  DirectIoAlignment out;
  struct statx sx {};
  if (::statx(fd, "", AT_EMPTY_PATH, STATX_DIOALIGN, &sx) == 0 && (sx.stx_mask & STATX_DIOALIGN) != 0 &&
      sx.stx_dio_offset_align != 0) {
    out.offset = power_of_two_at_least(sx.stx_dio_offset_align);
    out.memory = power_of_two_at_least(std::max<uint64_t>(sx.stx_dio_mem_align, sizeof(void*)));
    // A block boundary inside a bounce buffer must be a valid buffer address too (the edge blocks of an RMW
    // are read there): never align offsets more loosely than memory. A coarser offset alignment is still
    // valid.
    out.offset = std::max(out.offset, out.memory);
    return out;
  }
  struct stat st {};
  int logical_block = 0;
  if (::fstat(fd, &st) == 0 && S_ISBLK(st.st_mode) && ::ioctl(fd, BLKSSZGET, &logical_block) == 0 &&
      logical_block > 0) {
    out.offset = power_of_two_at_least(static_cast<uint64_t>(logical_block));
  } else if (st.st_blksize > 0) {
    out.offset = power_of_two_at_least(static_cast<uint64_t>(st.st_blksize));
  }
  out.memory = out.offset;  // buffers aligned to the logical block size (open(2), O_DIRECT)
  return out;
}

DirectFileIo::DirectFileIo(int fd, int buffered_fd, uint64_t size, DirectIoAlignment alignment,
                           std::string path)
    : fd_(fd),
      buffered_fd_(buffered_fd),
      direct_end_(round_down(size, alignment.offset)),
      alignment_(alignment),
      path_(std::move(path)) {}

bool DirectFileIo::is_aligned(const void* buf, uint64_t len, uint64_t offset) const {
  return offset % alignment_.offset == 0 && len % alignment_.offset == 0 &&
         reinterpret_cast<uintptr_t>(buf) % alignment_.memory == 0 && offset + len <= direct_end_;
}

Status DirectFileIo::pread(void* buf, uint64_t len, uint64_t offset) {
  if (len == 0) return Status::ok();
  if (is_aligned(buf, len, offset)) return read_fully(fd_, buf, len, offset, path_);
  bounced_.fetch_add(1, std::memory_order_relaxed);
  return read_bounced(static_cast<char*>(buf), len, offset);
}

Status DirectFileIo::pwrite(const void* buf, uint64_t len, uint64_t offset) {
  if (len == 0) return Status::ok();
  if (is_aligned(buf, len, offset)) return write_fully(fd_, buf, len, offset, path_);
  bounced_.fetch_add(1, std::memory_order_relaxed);
  return write_bounced(static_cast<const char*>(buf), len, offset);
}

Status DirectFileIo::read_bounced(char* buf, uint64_t len, uint64_t offset) {
  uint64_t end = offset + len;
  if (end > direct_end_) {  // the file's last partial block: buffered
    const uint64_t split = std::max(offset, direct_end_);
    if (Status s = read_fully(buffered_fd_, buf + (split - offset), end - split, split, path_); !s) return s;
    if (split == offset) return Status::ok();
    end = split;
  }
  const uint64_t first = round_down(offset, alignment_.offset);
  const uint64_t last = round_up(end, alignment_.offset);
  BounceBuffer bounce = allocate_bounce(last - first, alignment_.memory);
  if (!bounce) return {Errc::no_memory, "no memory for a direct-I/O bounce buffer reading " + path_};
  if (Status s = read_fully(fd_, bounce.get(), last - first, first, path_); !s) return s;
  std::memcpy(buf, bounce.get() + (offset - first), end - offset);
  return Status::ok();
}

Status DirectFileIo::write_bounced(const char* buf, uint64_t len, uint64_t offset) {
  uint64_t end = offset + len;
  if (end > direct_end_) {  // the file's last partial block: buffered, never grown by a whole block
    const uint64_t split = std::max(offset, direct_end_);
    if (Status s = write_fully(buffered_fd_, buf + (split - offset), end - split, split, path_); !s) return s;
    if (split == offset) return Status::ok();
    end = split;
  }
  const uint64_t a = alignment_.offset;
  const uint64_t first = round_down(offset, a);
  const uint64_t last = round_up(end, a);
  BounceBuffer bounce = allocate_bounce(last - first, alignment_.memory);
  if (!bounce) return {Errc::no_memory, "no memory for a direct-I/O bounce buffer writing " + path_};
  const bool partial_head = offset != first;
  const bool partial_tail = end != last;
  if (!partial_head && !partial_tail) {  // aligned in the file, only the buffer was not: no RMW
    std::memcpy(bounce.get(), buf, end - offset);
    return write_fully(fd_, bounce.get(), last - first, first, path_);
  }
  // RMW: the edge blocks' stripes are held from reading their old bytes to writing them back.
  std::mutex& head_lock = stripes_[stripe_of(first / a)];
  std::mutex& tail_lock = stripes_[stripe_of((last - 1) / a)];
  std::unique_lock<std::mutex> head(head_lock, std::defer_lock);
  std::unique_lock<std::mutex> tail(tail_lock, std::defer_lock);
  if (&head_lock == &tail_lock) {
    head.lock();
  } else {
    std::lock(head, tail);
  }
  if (partial_head) {
    if (Status s = read_fully(fd_, bounce.get(), a, first, path_); !s) return s;
  }
  if (partial_tail && (last - a != first || !partial_head)) {
    if (Status s = read_fully(fd_, bounce.get() + (last - a - first), a, last - a, path_); !s) return s;
  }
  std::memcpy(bounce.get() + (offset - first), buf, end - offset);
  return write_fully(fd_, bounce.get(), last - first, first, path_);
}

Status read_fully(int fd, void* buf, uint64_t len, uint64_t offset, const std::string& path) {
  auto* p = static_cast<char*>(buf);
  while (len > 0) {
    const ssize_t n = ::pread(fd, p, len, static_cast<off_t>(offset));
    if (n < 0) {
      if (errno == EINTR) continue;
      return Status::from_errno(errno, "read " + path);
    }
    if (n == 0) return {Errc::io_error, "unexpected end of file reading " + path};
    p += n;
    len -= static_cast<uint64_t>(n);
    offset += static_cast<uint64_t>(n);
  }
  return Status::ok();
}

Status write_fully(int fd, const void* buf, uint64_t len, uint64_t offset, const std::string& path) {
  const auto* p = static_cast<const char*>(buf);
  while (len > 0) {
    const ssize_t n = ::pwrite(fd, p, len, static_cast<off_t>(offset));
    if (n < 0) {
      if (errno == EINTR) continue;
      return Status::from_errno(errno, "write " + path);
    }
    p += n;
    len -= static_cast<uint64_t>(n);
    offset += static_cast<uint64_t>(n);
  }
  return Status::ok();
}

}  // namespace nbdsnap
