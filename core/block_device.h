// SPDX-License-Identifier: BSD-3-Clause
// block_device.h — the one interface through which the engine touches bytes.
//
// Origins, difference storage and test fakes all implement it. Implementations must be thread-safe:
// the engine calls them from many threads at once on disjoint or overlapping ranges.
//
// Argument order of byte ranges, here and across core/ and the front ends: a range is (offset, length), as
// NBD's requests carry it (proto.md: offset, then length) and as Range and Extent hold it — trim(offset,
// len), zero(offset, len), extents(offset, len), check_range(size, offset, len). The one exception is a call
// that moves bytes through a caller's buffer: it keeps POSIX pread(2)/pwrite(2)'s (buf, count, offset), the
// count beside the buffer it sizes — pread/pwrite here, and the read/write of Origin, Image, ChunkMap,
// DiffStorage and the server's exports. nbdkit's callbacks keep nbdkit's own (count, offset) signatures at
// the filter's boundary (nbdkit-plugin/nbdsnap_filter.cpp) and pass (offset, count) on. Units: bytes.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "status.h"

namespace nbdsnap {

struct SharableFile;  // extent_clone.h

// A run of bytes with one allocation state (for NBD base:allocation).
struct Extent {
  uint64_t offset = 0;
  uint64_t length = 0;
  bool hole = false;  // reads as zeroes and is not allocated
  bool zero = false;  // reads as zeroes
  bool operator==(const Extent&) const = default;
};

class BlockDevice {
 public:
  virtual ~BlockDevice() = default;

  virtual uint64_t size() const = 0;
  // Reads exactly len bytes at offset; a short read is an error.
  virtual Status pread(void* buf, uint64_t len, uint64_t offset) = 0;
  // Writes exactly len bytes; fua asks for the data to be durable before returning.
  virtual Status pwrite(const void* buf, uint64_t len, uint64_t offset, bool fua) = 0;
  virtual Status flush() = 0;
  // Discards a range (reads of it afterwards are unspecified unless can_trim_zeroes). Default: not supported.
  virtual Status trim(uint64_t offset, uint64_t len, bool fua);
  // Makes a range read as zeroes; may_trim allows deallocating. Default: writes zero buffers.
  virtual Status zero(uint64_t offset, uint64_t len, bool may_trim, bool fua);
  // Appends the allocation extents covering [offset, offset+len) to out. Default: all data.
  virtual Status extents(uint64_t offset, uint64_t len, std::vector<Extent>& out);
  virtual bool can_trim() const { return false; }
  // The smallest unit the device reads and writes on its own, in bytes (a block device's BLKIOMIN and logical
  // block size): chunks and tracking blocks are never smaller (sizing.h). 1: no minimum.
  virtual uint64_t minimum_io_size() const { return 1; }
  virtual bool is_read_only() const { return false; }
  // A text that changes whenever the content may have been changed by someone else (for a file: its
  // identity, size, modification and change times; for a block device: the kernel's count of its writes,
  // block_device_writes.h). CBT saved at a clean stop is resumed only if this is
  // still the same, since writes made while nothing tracked the device are missing from the map. Empty:
  // cannot tell.
  virtual std::string content_fingerprint() const { return {}; }
  // Names the file or disk behind the device ("file DEV:INODE", "block MAJOR:MINOR"), so the engine can
  // refuse to use one disk twice: as two origins, as storage of two snapshots, or as an origin and storage
  // (copy-on-write would overwrite the data it preserves). A loop device is named by its backing file
  // (FileDevice). Empty: unknown, never matches.
  virtual std::string file_identity() const { return {}; }
  // The regular file whose bytes this device reads and writes at the same offsets, so that copy-on-write can
  // share its extents with difference storage (extent_clone.h). Null when there is none: block devices,
  // devices reached through another layer (nbdkit's next plugin), wrappers that change what is read. Valid
  // as long as the device lives.
  virtual const SharableFile* sharable_file() const { return nullptr; }
};

// Checks that [offset, offset+len) lies inside a device of the given size without overflow.
Status check_range(uint64_t device_size, uint64_t offset, uint64_t len);

}  // namespace nbdsnap
