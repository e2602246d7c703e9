// SPDX-License-Identifier: BSD-3-Clause
// direct_io.h — the page-cache mode of origin and storage files (`--cache none|writeback`), and reads and
// writes of any offset, length and buffer on a descriptor opened O_DIRECT.
//
// Design notes
// - Names. nbdkit's file plugin says `cache=none` for O_DIRECT and `cache=default` for the page cache; QEMU
//   says `cache.direct=on` and calls the page-cache mode `writeback`. nbdsnap takes `none` and `writeback`.
// - Alignment. O_DIRECT transfers need the file offset and length to be multiples of the file's direct-I/O
//   alignment and the buffer address to be aligned too (open(2), "O_DIRECT"): statx(STATX_DIOALIGN) tells
//   both where the kernel knows (Linux 6.1+); otherwise the logical block size of a block device (BLKSSZGET)
//   or the file system's block size (st_blksize) for a file, for offsets and memory alike. The offset
//   alignment is never below the memory alignment, so every block boundary inside an aligned bounce buffer is
//   a valid address.
// - Aligned requests (the engine's chunk copies and storage writes: chunks are never smaller than the
//   device's minimum I/O size, which FileDevice raises to the alignment) go straight to the descriptor.
//   Others go through an aligned bounce buffer: a read reads the covering blocks and copies out; a write
//   reads the partial first and last blocks, copies the new bytes in and writes the covering blocks back
//   (read-modify-write), like QEMU's block layer does for its request_alignment.
// - Read-modify-write of a block must not lose a concurrent write to the other bytes of that block (two 512
//   byte writes into one 4 KiB block are not overlapping requests for the client). Every RMW holds the lock
//   of its edge blocks (a striped set of mutexes keyed by block number), so RMWs of one block are serialised.
//   An aligned write that covers a block an RMW is changing overlaps that RMW's request in bytes, and NBD
//   leaves the outcome of concurrent overlapping writes to the server (proto.md, "Ordering of messages and
//   writes").
// - A regular file whose size is not a multiple of the alignment has a last partial block that O_DIRECT
//   cannot write without growing the file. Bytes from the last aligned boundary to the end go through a
//   second, buffered open of the same file (opened through /proc/self/fd, so it is the same inode even if the
//   path was replaced); Linux keeps direct and buffered I/O of one file coherent.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <mutex>
#include <string>

#include "status.h"

namespace nbdsnap {

enum class FileCache {
  writeback,  // the page cache (the default; nbdkit file's cache=default)
  none,       // O_DIRECT (nbdkit file's cache=none, QEMU's cache.direct=on)
};

// "none" or "writeback" to the mode; invalid_argument naming `what` (the option as the user spells it) and
// the values otherwise.
Status parse_file_cache(const std::string& text, const std::string& what, FileCache& out);
const char* file_cache_name(FileCache cache);

// Direct-I/O alignment of an open descriptor, in bytes (powers of two, >= 1).
struct DirectIoAlignment {
  uint64_t offset = 4096;  // file offsets and lengths; >= memory
  uint64_t memory = 4096;  // buffer addresses
};
// The alignment of fd (see the design notes for where it comes from).
DirectIoAlignment direct_io_alignment(int fd);

// Reads and writes of any shape on a descriptor opened O_DIRECT. Does not own the descriptors.
// Thread-safe: any number of threads may call pread/pwrite at once.
class DirectFileIo {
 public:
  // fd: opened O_DIRECT. buffered_fd: the same file without O_DIRECT, or -1 when size is a multiple of
  // alignment.offset (then it is never needed). path names the file in errors.
  DirectFileIo(int fd, int buffered_fd, uint64_t size, DirectIoAlignment alignment, std::string path);
  DirectFileIo(const DirectFileIo&) = delete;
  DirectFileIo& operator=(const DirectFileIo&) = delete;

  // Exactly len bytes at offset (the caller checked the range against the size). io_error on a short read,
  // no_memory when a bounce buffer cannot be allocated, errno-based errors otherwise.
  Status pread(void* buf, uint64_t len, uint64_t offset);
  Status pwrite(const void* buf, uint64_t len, uint64_t offset);

  const DirectIoAlignment& alignment() const { return alignment_; }
  // Tests: how many requests went through the bounce buffer.
  uint64_t bounced_requests() const { return bounced_; }

 private:
  // The part of the file O_DIRECT may touch: [0, direct_end_), a multiple of alignment_.offset.
  bool is_aligned(const void* buf, uint64_t len, uint64_t offset) const;
  Status read_bounced(char* buf, uint64_t len, uint64_t offset);
  Status write_bounced(const char* buf, uint64_t len, uint64_t offset);
  size_t stripe_of(uint64_t block) const { return block % stripes_.size(); }

  const int fd_;
  const int buffered_fd_;
  const uint64_t direct_end_;
  const DirectIoAlignment alignment_;
  const std::string path_;
  // Leaf locks (core/lock_order.h), held around one RMW's read and write. Plain std::mutex: a pair taken with
  // std::scoped_lock (one acquisition, deadlock-free), guarding bytes on disk rather than members.
  std::array<std::mutex, 64> stripes_;
  std::atomic<uint64_t> bounced_{0};
};

// Plain pread/pwrite loops over a descriptor (EINTR retried, short transfers continued); `path` names the
// file in errors. A read that meets the end of the file is an io_error.
Status read_fully(int fd, void* buf, uint64_t len, uint64_t offset, const std::string& path);
Status write_fully(int fd, const void* buf, uint64_t len, uint64_t offset, const std::string& path);

}  // namespace nbdsnap
