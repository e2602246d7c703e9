// SPDX-License-Identifier: BSD-3-Clause
// file_device.h — a BlockDevice over a regular file or a block device (pread/pwrite on a descriptor), locked
// against other writers for as long as it is open (file_lock.h).
// With cache none the descriptor is O_DIRECT and requests pass through direct_io.h.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "block_device.h"
#include "direct_io.h"
#include "extent_clone.h"
#include "file_lock.h"
#include "unique_fd.h"

namespace nbdsnap {

// The locks on the file behind a loop device, held as long as this object lives (file_lock.h: a loop device
// and its backing file are two inodes, so their locks do not meet; a server on each would write one disk
// past the other's tracker). Move-only; thread-compatible.
class LoopBackingLock {
 public:
  LoopBackingLock() = default;

  // When `fd`, an open descriptor of `path`, is a loop device or a partition of one, opens the loop device's
  // backing file by the path the kernel shows (/sys/block/loopN/loop/backing_file), checks that it is the
  // file loop(4) holds (LOOP_GET_STATUS64's device and inode) and takes the lock of `mode` on the whole file
  // (whatever lo_offset and sizelimit cover: file_lock.h locks whole files); a backing block device that is a
  // loop device too is followed the same way. Nothing to lock: no loop device, a loop device without a
  // file, or a backing file deleted (" (deleted)" in sysfs: no path reaches it). Errors: those of lock_file
  // on the backing file, its path followed by "(the backing file of PATH)"; bad_state when the file found
  // by that path is another one (renamed or replaced meanwhile); the errno of the ioctl or of the open.
  static Status acquire(int fd, const std::string& path, FileLockMode mode, LoopBackingLock& out);

 private:
  std::vector<UniqueFd> fds_;  // the locked backing files, outermost first
};

class FileDevice final : public BlockDevice {
 public:
  // Opens an existing file or block device. readonly opens O_RDONLY, takes a shared lock (others may read,
  // nobody may write) and refuses writes; otherwise the file is locked exclusively and a block device is
  // opened O_EXCL. A loop device's backing file is locked the same way (LoopBackingLock). A file another
  // process holds is refused with busy naming the holder; a file this process already holds (as an origin or
  // storage) with already_exists. cache none opens it O_DIRECT (direct_io.h): requests of any alignment still
  // work, and minimum_io_size() becomes at least the direct-I/O alignment; a file system without O_DIRECT is
  // refused with not_supported naming the file.
  static Status open(const std::string& path, bool readonly, std::unique_ptr<FileDevice>& out,
                     FileCache cache = FileCache::writeback);
  // Creates (or opens) a regular file, locks it exclusively (as open), and makes it at least `size` bytes:
  // every byte allocated, or only the size set when `sparse` (the rule and its errors: storage_allocation.h;
  // no_space names the file, the size and the free space). created tells whether the file did not exist
  // before (a created file is removed again when this fails; an existing one gets its old size back).
  // cache: as for open().
  static Status create(const std::string& path, uint64_t size, std::unique_ptr<FileDevice>& out,
                       bool& created, FileCache cache = FileCache::writeback, bool sparse = false);
  // Opens `path` with open(2) `flags` (O_CLOEXEC added); a block device opened read-write also with O_EXCL,
  // the kernel's exclusive claim, so a mounted device, one stacked under device mapper or RAID, or one
  // another program opened exclusively is refused with busy naming its holder. Returns the descriptor, or -1
  // with `error` set. Thread-safe. Used by open() and create(), and by the nbdkit filter for the file behind
  // an origin (its plugin opened the device without O_EXCL).
  static int open_node(const std::string& path, int flags, Status& error);
  // The file_identity() a FileDevice of `path` would have, found without opening it for I/O (stat; a loop
  // device is opened read-only without O_EXCL, only to ask loop(4) for its backing file), so that a file in
  // use is refused before anything opens it. Empty when nothing exists at `path`; other stat errors returned.
  static Status identity_of(const std::string& path, std::string& identity);
  // The file_identity() of what descriptor `fd` of this process has open, from the attributes the kernel
  // keeps (statx AT_STATX_DONT_SYNC): a file's device and inode never change, so its file system is not
  // asked, and a stalled one (a hung NFS server, FUSE) cannot hold the caller. A loop device is asked for
  // its backing file (an ioctl on `fd`). False when `fd` is not open.
  static bool identity_of_descriptor(int fd, std::string& identity);
  // The content_fingerprint() a FileDevice of `path` would have now, if `path` still names the regular file
  // or block device `identity` names (stat; a block device's page cache is written back first, through a
  // read-only descriptor of its own); empty otherwise. For front ends whose plugin opens the file itself
  // (the filter).
  static std::string content_fingerprint_of(const std::string& path, const std::string& identity);
  // The file system (st_dev) a regular file's identity names; false for a block device's or an empty one.
  static bool file_system_of(const std::string& identity, uint64_t& st_dev);
  ~FileDevice() override;
  FileDevice(const FileDevice&) = delete;
  FileDevice& operator=(const FileDevice&) = delete;

  uint64_t size() const override { return size_; }
  Status pread(void* buf, uint64_t len, uint64_t offset) override;
  Status pwrite(const void* buf, uint64_t len, uint64_t offset, bool fua) override;
  Status flush() override;
  Status trim(uint64_t offset, uint64_t len, bool fua) override;
  Status zero(uint64_t offset, uint64_t len, bool may_trim, bool fua) override;
  Status extents(uint64_t offset, uint64_t len, std::vector<Extent>& out) override;
  bool can_trim() const override { return !is_block_device_; }
  // Block devices: the larger of BLKIOMIN and the logical block size (BLKSSZGET). Regular files: 1 (the page
  // cache takes writes of any size). With cache none, at least the direct-I/O alignment.
  uint64_t minimum_io_size() const override { return minimum_io_size_; }
  bool is_read_only() const override { return readonly_; }
  // A regular file's identity, size, modification and change times: a write that lands within the same
  // timestamp tick as our own last write is not seen. A block device's count of writes since boot
  // (block_device_writes.h), after writing back its page cache (fdatasync: may wait on a stalled disk).
  std::string content_fingerprint() const override;

  // "file DEV:INODE" for a regular file (every hard link and path of it), "block MAJOR:MINOR" for a block
  // device (every node of it). A loop device (or a partition of one) is its backing file: that file's
  // identity, followed by " at OFFSET" when the device starts inside it (disk_use.h); a loop device the
  // kernel does not describe (LOOP_GET_STATUS64 fails) keeps "block MAJOR:MINOR". Found once, at open.
  std::string file_identity() const override;
  // Regular files: the descriptor and the file system's block size; null for block devices.
  const SharableFile* sharable_file() const override { return is_block_device_ ? nullptr : &sharable_; }

  const std::string& path() const { return path_; }
  bool is_block_device() const { return is_block_device_; }
  FileCache cache() const { return direct_ ? FileCache::none : FileCache::writeback; }
  // The O_DIRECT path (null with cache writeback); tests look at its counters.
  const DirectFileIo* direct_io() const { return direct_.get(); }

 private:
  // Takes ownership of fd (closing it on failure) and reads its kind and size.
  static Status from_descriptor(UniqueFd fd, const std::string& path, bool readonly,
                                std::unique_ptr<FileDevice>& out, FileCache cache);
  // Switches fd to O_DIRECT and builds direct_ (cache none).
  Status enable_direct_io();
  FileDevice(int fd, std::string path, uint64_t size, bool readonly, bool is_block_device,
             std::string identity, uint64_t minimum_io_size);
  int fd_;
  std::string path_;
  uint64_t size_;
  bool readonly_;
  bool is_block_device_;
  std::string identity_;
  uint64_t minimum_io_size_;
  int buffered_fd_ = -1;                  // cache none, a size not a multiple of the alignment: the tail's fd
  std::unique_ptr<DirectFileIo> direct_;  // cache none
  SharableFile sharable_;                 // regular files: fd_, block size and path (extent_clone.h)
  LoopBackingLock backing_lock_;          // a loop device's backing file, locked as fd_ is
};

}  // namespace nbdsnap
