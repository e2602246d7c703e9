// SPDX-License-Identifier: BSD-3-Clause
// extent_clone.h — first touch by sharing extents (reflink): a chunk's old data is preserved by cloning the
// origin file's extents into the difference-storage file instead of reading and writing its bytes.
//
// Design notes
// - Which call. ioctl FICLONERANGE (ioctl_ficlonerange(2)) shares the source range's extents with the
//   destination or fails; it never copies bytes, so when it returns the old data is in the storage file
//   without a byte moved. copy_file_range(2) may share extents too, but silently falls back to copying bytes
//   (in the kernel, or across file systems), so a caller cannot tell which happened nor keep the copy on its
//   own path with its buffers and writeback; we want either a clone or our own copy, hence FICLONERANGE.
// - Where it works. Both files on one file system that shares extents (XFS made with reflink=1, btrfs).
//   Block devices, files on other file systems, and devices without a file of their own (nbdkit's next
//   plugin in the filter, test wrappers) keep the copy path: BlockDevice::sharable_file() is null for them.
// - Decided once per (origin, storage area) pair: the first clone tells. EXDEV (another file system),
//   EOPNOTSUPP/ENOTTY (no sharing there), EINVAL (the file system refuses the pair) and EBADF (a descriptor
//   it cannot clone through) are refused before anything changes, so that chunk is copied instead and the
//   pair copies for good; the decision is logged once at info. Any other error (EIO, ENOSPC, EPERM...) is a
//   failed copy: the snapshot is corrupted, the origin write goes on (invariant 2).
// - Alignment. FICLONERANGE wants both offsets and the length to be multiples of the file system's block size
//   (a partial last block only at the end of both files). Chunks are powers of two of at least 4 KiB, and the
//   chunk map gives a chunk a storage slot rounded up to the block size while sharing is possible, so slots
//   stay aligned; a chunk or slot that is not (an origin's partial last chunk, a storage range starting off a
//   block boundary, a file system with blocks larger than a chunk) is copied, without changing the decision.
// - Invariant 1. The ioctl has returned before the origin write is issued (the chunk map clones on the
//   writer's path, synchronously); from then on the file system copies the shared extent when the origin is
//   written (copy-on-write in the file system). The kernel writes the origin's dirty page cache of the range
//   back before sharing it, so the clone holds what the origin held, also with the page cache (and with
//   O_DIRECT origins, which have no dirty pages).
// - Space. A cloned slot of fully allocated storage gives its blocks back to the file system, and the
//   origin's next write to the chunk allocates new ones: the total is what copying uses, and the storage's
//   used/free accounting, its limit and the low-space event count slots exactly as before. What changes is
//   who holds the reserve: the origin write now needs a block, so on a file system that other programs fill
//   at the same moment it can meet ENOSPC where an overwrite in place could not; with sparse storage no block
//   is given back at all, so on a full file system every origin write to a cloned chunk needs one it cannot
//   get. Invariant 2 says such a write must not fail because of the snapshot: when an origin write meets
//   ENOSPC and a chunk it covers shares extents with a slot, the snapshot is corrupted and those slots are
//   punched (ChunkMap::unshare_for_write), so the origin holds its blocks alone again and the write is
//   issued once more, as an overwrite in place. A punch may itself need a block (XFS refuses one now and
//   then on a file system full to the last block): then the files the snapshot created are emptied by
//   truncation, which needs none. Storage the user gave as an existing file or range is never emptied, so
//   there such a write can still fail; a clone that failed part way has its slot punched the same way.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <string>

#include "mutex.h"
#include "status.h"

namespace nbdsnap {

// `--reflink auto|off` (nbdsnapd) and `nbdsnap-reflink=auto|off` (the filter).
enum class ReflinkMode {
  automatic,  // share extents where origin and storage allow it (the default)
  off,        // always copy bytes
};
// "auto" or "off" to the mode; invalid_argument naming `what` (the option as the user spells it) otherwise.
Status parse_reflink_mode(const std::string& text, const std::string& what, ReflinkMode& out);
const char* reflink_mode_name(ReflinkMode mode);

// A regular file a device reads and writes at the device's own offsets, open read-write or read-only.
struct SharableFile {
  int fd = -1;
  uint64_t block_size = 0;  // the file system's block size, bytes (>= 1)
  std::string path;         // for messages
};

// Clones [src_offset, src_offset+len) of src_fd into dst_fd at dst_offset (FICLONERANGE). Returns 0 or the
// errno of the failure. Thread-safe.
int clone_file_range(int src_fd, uint64_t src_offset, int dst_fd, uint64_t dst_offset, uint64_t len);
// Gives [offset, offset+len) of fd back to the file system (fallocate PUNCH_HOLE, KEEP_SIZE). Returns 0 or
// the errno of the failure. Used on a cloned storage slot of a corrupted snapshot so that the origin no
// longer shares those blocks (ChunkMap::unshare_for_write). Thread-safe.
int punch_file_range(int fd, uint64_t offset, uint64_t len);
// Empties the regular file open on fd and gives it its size back (ftruncate to 0, then to the size it had):
// every block it held goes back to the file system. Unlike a punch, a truncation needs no block reserved, so
// it works on a file system full to the last block. Returns 0 or the errno of the failure. Thread-safe.
int empty_file(int fd);
// Whether a clone that failed with `error` was refused before anything changed because the pair cannot share
// extents (EXDEV, EOPNOTSUPP, ENOTTY, EINVAL, EBADF): then copying is the answer, not a corruption.
bool clone_unsupported(int error);

// Tests only: called instead of the ioctl with clone_file_range()'s arguments, returns 0 or an errno. Set it
// while no copy-on-write runs (the pointer is atomic). nullptr restores the ioctl.
using ExtentCloneHook = int (*)(int src_fd, uint64_t src_offset, int dst_fd, uint64_t dst_offset,
                                uint64_t len);
void set_extent_clone_hook(ExtentCloneHook hook);

// The decision of one origin in one snapshot, per storage area: share extents or copy. Thread-safe; its
// mutex is a leaf (core/lock_order.h) and the log is called without it.
class ExtentSharing {
 public:
  enum class Outcome {
    cloned,  // the chunk's old data is in the storage slot
    copy,    // copy the chunk (this pair copies, or this chunk or slot is not aligned)
    failed,  // the clone failed: a failed copy (`failure` says why)
  };
  // origin_name and snapshot_name name the pair in the log; log_info (may be empty) receives one line per
  // decision.
  ExtentSharing(ReflinkMode mode, std::string snapshot_name, std::string origin_name,
                std::function<void(const std::string&)> log_info);
  ExtentSharing(const ExtentSharing&) = delete;
  ExtentSharing& operator=(const ExtentSharing&) = delete;

  // Whether a chunk going to storage area `area` may be cloned at all: sharing is on, the origin has a file
  // (`origin` not null) and the area has not been decided for copying. Logs the origin-side reason once when
  // it cannot (reflink off, no file). Cheap; called before a storage slot is allocated.
  bool may_clone(const SharableFile* origin, uint32_t area) EXCLUDES(mutex_);
  // The block size storage slots of chunks of `chunk_size` bytes are rounded up to while sharing is possible:
  // 1 when it is not, or when the block is larger than a chunk (chunks then never start on a block boundary,
  // so none is cloned, and rounding would only waste storage).
  uint64_t slot_alignment(const SharableFile* origin, uint64_t chunk_size) const;
  // Preserves len bytes of the origin at origin_offset in the storage file at storage_offset (area `area`),
  // by cloning when the pair shares extents. storage null: the area has no file (decided copy).
  Outcome preserve(const SharableFile& origin, uint64_t origin_offset, const SharableFile* storage,
                   uint32_t area, uint64_t storage_offset, uint64_t len, Status& failure) EXCLUDES(mutex_);

 private:
  enum class Decision { undecided, clone, copy };
  // Sets area's decision; true when this call changed it (then the caller logs it: once per decision).
  // Copying is for good: a pair decided for copying stays so.
  bool decide(uint32_t area, Decision decision) EXCLUDES(mutex_);
  void log(const std::string& text) const;

  const ReflinkMode mode_;
  const std::string snapshot_name_;
  const std::string origin_name_;
  const std::function<void(const std::string&)> log_info_;
  mutable Mutex mutex_;
  std::map<uint32_t, Decision> decisions_ GUARDED_BY(mutex_);
  bool origin_reason_logged_ GUARDED_BY(mutex_) = false;
};

}  // namespace nbdsnap
