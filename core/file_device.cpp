// SPDX-License-Identifier: BSD-3-Clause
// file_device.cpp — pread/pwrite over a descriptor; fallocate for trim/zero; SEEK_DATA/SEEK_HOLE for extents;
// the lock (file_lock.h), also on a loop device's backing file, and, for read-write block devices, O_EXCL
// taken at open.
#include "file_device.h"

#include <fcntl.h>
#include <linux/fs.h>
#include <linux/loop.h>
#include <linux/major.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/sysmacros.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>
#include <utility>

#include "block_device_writes.h"
#include "file_lock.h"
#include "scope_exit.h"
#include "storage_allocation.h"

namespace nbdsnap {

FileDevice::FileDevice(int fd, std::string path, uint64_t size, bool readonly, bool is_block_device,
                       std::string identity, uint64_t minimum_io_size)
    : fd_(fd),
      path_(std::move(path)),
      size_(size),
      readonly_(readonly),
      is_block_device_(is_block_device),
      identity_(std::move(identity)),
      minimum_io_size_(minimum_io_size) {}

namespace {

std::string block_identity(dev_t rdev) {
  return "block " + std::to_string(major(rdev)) + ":" + std::to_string(minor(rdev));
}

std::string file_identity_of(dev_t device, uint64_t inode) {
  return "file " + std::to_string(device) + ":" + std::to_string(inode);
}

// A disk reached through two device nodes (/dev/sda, /dev/disk/by-id/...) is one disk: name it by st_rdev.
std::string identity_of_stat(const struct stat& st) {
  if (S_ISBLK(st.st_mode)) return block_identity(st.st_rdev);
  return file_identity_of(st.st_dev, st.st_ino);
}

// A device number as loop(4) reports it in lo_device and lo_rdevice: the kernel's own encoding
// (new_encode_dev in include/linux/kdev_t.h: minor bits 0-7, major bits 8-19, the rest of the minor from bit
// 20 on), which is not glibc's dev_t; rebuilt with makedev so that it compares with stat's st_dev.
dev_t decode_kernel_dev(uint64_t encoded) {
  return makedev(static_cast<unsigned>((encoded >> 8) & 0xfff),
                 static_cast<unsigned>((encoded & 0xff) | ((encoded >> 12) & 0xfff00)));
}

// Whether block device `rdev` is a loop device or a partition of one, from sysfs (a partition of a loop
// device has the extended major 259, not LOOP_MAJOR). start: where it begins on the loop device (0 for the
// loop device itself). Without sysfs, LOOP_MAJOR decides and start is unknown (nullopt).
bool is_loop_device(dev_t rdev, std::optional<uint64_t>& start) {
  namespace fs = std::filesystem;
  std::error_code error;
  start = 0;
  if (!fs::exists("/sys/dev/block", error)) {
    start.reset();
    return major(rdev) == LOOP_MAJOR;
  }
  const fs::path sys = "/sys/dev/block/" + std::to_string(major(rdev)) + ":" + std::to_string(minor(rdev));
  if (fs::exists(sys / "partition", error)) {
    const fs::path disk = fs::canonical(sys, error).parent_path();
    if (error || !fs::exists(disk / "loop", error)) return false;
    std::ifstream in(sys / "start");
    uint64_t sectors = 0;
    if (in >> sectors) {
      start = sectors * 512;  // sysfs counts 512-byte sectors whatever the logical block size
    } else {
      start.reset();
    }
    return true;
  }
  return major(rdev) == LOOP_MAJOR || fs::exists(sys / "loop", error);
}

// A loop device is its backing file: writes to /dev/loopN land in that file, so the two must have one
// identity (and two loop devices over one file too). The loop(4) ioctl LOOP_GET_STATUS64 on the device (or on
// one of its partitions, which answers for the whole loop device) tells the backing file's device and inode
// (lo_device, lo_inode), or, when the backing is itself a block device, that device's number (lo_rdevice),
// and where in the backing the loop device starts (lo_offset). A loop device that starts at byte 0 is named
// exactly as its backing file, so byte ranges of both compare directly; one that starts elsewhere (lo_offset,
// or a partition) gets " at OFFSET" after the backing's identity, which disk_use.cpp counts as using the
// whole backing file. Empty when `fd` is no loop device or the kernel does not answer (not bound, no
// permission): the caller keeps the device's own identity then.
// Loop devices stacked deeper than this are named by the last one reached (no real setup comes near it).
constexpr int kMaxLoopDepth = 8;

// The device node of block device `rdev`, from sysfs (DEVNAME in its uevent: /dev/loop3), or empty.
std::string device_node_of(dev_t rdev) {
  std::ifstream uevent("/sys/dev/block/" + std::to_string(major(rdev)) + ":" + std::to_string(minor(rdev)) +
                       "/uevent");
  std::string line;
  while (std::getline(uevent, line)) {
    if (line.rfind("DEVNAME=", 0) == 0) return "/dev/" + line.substr(8);
  }
  return {};
}

std::string loop_backing_identity(int fd, dev_t rdev, int depth = 0);

// The identity of block device `rdev` when it backs a loop device: a loop device itself is followed to its
// own backing file (a loop device over a loop device over a file is that file too), anything else is named by
// its device number.
std::string backing_block_identity(dev_t rdev, int depth) {
  if (depth < kMaxLoopDepth) {
    const std::string node = device_node_of(rdev);
    // Read-only without O_EXCL: neither claims the device nor conflicts with an O_EXCL holder.
    const UniqueFd fd(node.empty() ? -1 : ::open(node.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK));
    if (fd.valid()) {
      struct stat st {};
      std::string inner;
      if (::fstat(fd.get(), &st) == 0 && S_ISBLK(st.st_mode) && st.st_rdev == rdev)
        inner = loop_backing_identity(fd.get(), rdev, depth + 1);
      if (!inner.empty()) return inner;
    }
  }
  return block_identity(rdev);
}

// A loop device is its backing file: writes to /dev/loopN land in that file, so the two must have one
// identity (and two loop devices over one file too). The loop(4) ioctl LOOP_GET_STATUS64 on the device (or on
// one of its partitions, which answers for the whole loop device) tells the backing file's device and inode
// (lo_device, lo_inode), or, when the backing is itself a block device, that device's number (lo_rdevice:
// followed when it is a loop device too), and where in the backing the loop device starts (lo_offset). A loop
// device that starts at byte 0 of the file at the end of the chain is named exactly as that file, so byte
// ranges of both compare directly; one that starts elsewhere (lo_offset, or a partition, added up along the
// chain) gets " at OFFSET" after the file's identity, which disk_use.cpp counts as using the whole file.
// Empty when `fd` is no loop device or the kernel does not answer (not bound, no permission): the caller
// keeps the device's own identity then.
std::string loop_backing_identity(int fd, dev_t rdev, int depth) {
  std::optional<uint64_t> start;
  if (!is_loop_device(rdev, start)) return {};
  struct loop_info64 info {};
  if (::ioctl(fd, LOOP_GET_STATUS64, &info) != 0) return {};
  std::string backing = info.lo_rdevice != 0
                            ? backing_block_identity(decode_kernel_dev(info.lo_rdevice), depth)
                            : file_identity_of(decode_kernel_dev(info.lo_device), info.lo_inode);
  // Where the backing's own name says it starts (a loop device deeper in the chain): " at N" or unknown.
  std::optional<uint64_t> inner_offset = 0;
  if (const size_t at = backing.find(" at "); at != std::string::npos) {
    const std::string where = backing.substr(at + 4);
    backing.resize(at);
    if (where.find_first_not_of("0123456789") == std::string::npos && !where.empty()) {
      inner_offset = std::stoull(where);
    } else {
      inner_offset.reset();
    }
  }
  if (!start || !inner_offset) return backing + " at unknown offset";
  const uint64_t offset = info.lo_offset + *start + *inner_offset;
  return offset == 0 ? backing : backing + " at " + std::to_string(offset);
}

// The identity of the open file or device `fd` (whose stat is `st`): a loop device's is its backing file's.
std::string identity_of_open(int fd, const struct stat& st) {
  if (S_ISBLK(st.st_mode)) {
    if (std::string loop = loop_backing_identity(fd, st.st_rdev); !loop.empty()) return loop;
  }
  return identity_of_stat(st);
}

// The path of the file behind loop device `rdev` (or behind the loop device a partition `rdev` belongs to),
// as the kernel shows it: sysfs's loop/backing_file, the file's whole path now (renames followed; once it is
// unlinked, with " (deleted)" after it), or, without sysfs, lo_file_name (the path losetup gave, cut at 63
// bytes).
std::string loop_backing_path(dev_t rdev, const struct loop_info64& info) {
  namespace fs = std::filesystem;
  std::error_code error;
  fs::path sys = "/sys/dev/block/" + std::to_string(major(rdev)) + ":" + std::to_string(minor(rdev));
  if (fs::exists(sys / "partition", error)) sys = fs::canonical(sys, error).parent_path();
  std::ifstream in(sys / "loop" / "backing_file");
  std::string path;
  if (std::getline(in, path) && !path.empty()) return path;
  return std::string(reinterpret_cast<const char*>(info.lo_file_name),
                     ::strnlen(reinterpret_cast<const char*>(info.lo_file_name), LO_NAME_SIZE));
}

// Opens the file behind the loop device `device` (`rdev`, described by `info`) for a lock of `mode` and
// checks that it is the file loop(4) holds (lo_device and lo_inode: the inode, a device node for a block
// device backing). backing is -1 when it was deleted (unreachable by path: nothing to lock); refused when the
// path leads elsewhere.
Status open_loop_backing_file(dev_t rdev, const struct loop_info64& info, const std::string& device,
                              FileLockMode mode, std::string& path, UniqueFd& backing) {
  backing.reset();
  path = loop_backing_path(rdev, info);
  if (path.empty()) return {Errc::bad_state, "loop(4) names no backing file for " + device + " to lock"};
  const int flags = mode == FileLockMode::exclusive ? O_RDWR : O_RDONLY;
  // O_NONBLOCK: a FIFO put at that path must not hang the open.
  UniqueFd fd(::open(path.c_str(), flags | O_CLOEXEC | O_NOCTTY | O_NONBLOCK));
  const int open_error = errno;
  struct stat st {};
  if (fd.valid() && ::fstat(fd.get(), &st) == 0 && st.st_dev == decode_kernel_dev(info.lo_device) &&
      st.st_ino == static_cast<ino_t>(info.lo_inode)) {
    backing = std::move(fd);
    return Status::ok();
  }
  const bool opened = fd.valid();
  fd.reset();
  static const std::string kDeleted = " (deleted)";
  if (path.size() > kDeleted.size() &&
      path.compare(path.size() - kDeleted.size(), kDeleted.size(), kDeleted) == 0)
    return Status::ok();
  if (!opened)
    return Status::from_errno(open_error,
                              "open " + path + ", the backing file of " + device + ", to lock it");
  return {Errc::bad_state,
          path + " is another file than the one behind " + device +
              " (renamed or replaced meanwhile?), so that one cannot be locked against other "
              "servers; try again, or set up the loop device again"};
}

// A block device's minimum I/O size: BLKIOMIN (the kernel's io_min, e.g. a RAID chunk), at least the logical
// block size. 1 when the kernel tells neither.
uint64_t block_device_minimum_io(int fd) {
  unsigned int io_min = 0;
  int logical_block = 0;
  if (::ioctl(fd, BLKIOMIN, &io_min) != 0) io_min = 0;
  if (::ioctl(fd, BLKSSZGET, &logical_block) != 0 || logical_block < 0) logical_block = 0;
  return std::max<uint64_t>({1, io_min, static_cast<uint64_t>(logical_block)});
}

// The block size extents of a regular file are shared in (FICLONERANGE's alignment): the file system's block
// (statfs f_bsize), or the file's preferred I/O size when that is larger, to be safe rather than refused.
uint64_t file_block_size(int fd, const struct stat& st) {
  struct statfs fs {};
  const uint64_t fs_block = ::fstatfs(fd, &fs) == 0 && fs.f_bsize > 0 ? static_cast<uint64_t>(fs.f_bsize) : 1;
  return std::max<uint64_t>({1, fs_block, st.st_blksize > 0 ? static_cast<uint64_t>(st.st_blksize) : 1});
}

}  // namespace

Status LoopBackingLock::acquire(int fd, const std::string& path, FileLockMode mode, LoopBackingLock& out) {
  LoopBackingLock held;
  int device = fd;
  std::string device_path = path;
  for (int depth = 0; depth < kMaxLoopDepth; ++depth) {
    struct stat st {};
    if (::fstat(device, &st) != 0) return Status::from_errno(errno, "stat " + device_path);
    std::optional<uint64_t> start;
    if (!S_ISBLK(st.st_mode) || !is_loop_device(st.st_rdev, start)) break;
    struct loop_info64 info {};
    if (::ioctl(device, LOOP_GET_STATUS64, &info) != 0) {
      if (errno == ENXIO) break;  // no file bound: nothing to lock
      return Status::from_errno(errno, "ask loop(4) for the backing file of " + device_path);
    }
    std::string backing_path;
    UniqueFd backing;
    if (Status s = open_loop_backing_file(st.st_rdev, info, device_path, mode, backing_path, backing); !s)
      return s;
    if (!backing.valid()) break;  // deleted
    const int backing_fd = backing.get();
    held.fds_.push_back(std::move(backing));  // on std::bad_alloc `backing` keeps it (and closes it)
    const std::string described = backing_path + " (the backing file of " + device_path + ")";
    if (Status s = lock_file(backing_fd, described, mode); !s) return s;
    device = backing_fd;  // a loop device over a loop device: lock that one's file too
    device_path = backing_path;
  }
  out = std::move(held);
  return Status::ok();
}

FileDevice::~FileDevice() {
  direct_.reset();
  if (buffered_fd_ >= 0) ::close(buffered_fd_);
  ::close(fd_);
}

Status FileDevice::from_descriptor(UniqueFd fd, const std::string& path, bool readonly,
                                   std::unique_ptr<FileDevice>& out, FileCache cache) {
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) return Status::from_errno(errno, "stat " + path);
  uint64_t size = static_cast<uint64_t>(st.st_size);
  const bool block = S_ISBLK(st.st_mode);
  if (block && ::ioctl(fd.get(), BLKGETSIZE64, &size) != 0) {
    return Status::from_errno(errno, "size of block device " + path);
  }
  if (!block && !S_ISREG(st.st_mode)) {
    return {Errc::invalid_argument, path + " is neither a regular file nor a block device"};
  }
  std::string identity = identity_of_open(fd.get(), st);
  const uint64_t minimum_io = block ? block_device_minimum_io(fd.get()) : 1;
  std::string path_copy = path;
  // The device owns the descriptor once it is made: `fd` keeps it until then, also when new throws.
  out.reset(
      new FileDevice(fd.get(), std::move(path_copy), size, readonly, block, std::move(identity), minimum_io));
  const int owned = fd.release();
  if (!block) out->sharable_ = {owned, file_block_size(owned, st), path};
  if (cache == FileCache::none) {
    if (Status s = out->enable_direct_io(); !s) {
      out.reset();  // closes fd
      return s;
    }
  }
  return Status::ok();
}

Status FileDevice::enable_direct_io() {
  const DirectIoAlignment alignment = direct_io_alignment(fd_);
  if (!is_block_device_ && size_ % alignment.offset != 0) {
    // A second open file description without O_DIRECT for the last partial block (direct_io.h); through
    // /proc/self/fd so that it is the inode we locked, whatever the path names now. It takes no lock of its
    // own.
    const std::string self = "/proc/self/fd/" + std::to_string(fd_);
    buffered_fd_ = ::open(self.c_str(), (readonly_ ? O_RDONLY : O_RDWR) | O_CLOEXEC);
    if (buffered_fd_ < 0) return Status::from_errno(errno, "reopen " + path_ + " for its last partial block");
  }
  const int flags = ::fcntl(fd_, F_GETFL);
  if (flags < 0 || ::fcntl(fd_, F_SETFL, flags | O_DIRECT) != 0) {
    if (errno == EINVAL) {
      return {Errc::not_supported, "cache mode none needs direct I/O (O_DIRECT), which the file system of " +
                                       path_ +
                                       " does not support: use cache mode writeback for it, or move it"};
    }
    return Status::from_errno(errno, "set O_DIRECT on " + path_);
  }
  direct_ = std::make_unique<DirectFileIo>(fd_, buffered_fd_, size_, alignment, path_);
  minimum_io_size_ = std::max(minimum_io_size_, alignment.offset);
  return Status::ok();
}

namespace {

// Who holds a block device that refused an exclusive open: its mount point, the devices stacked on it (device
// mapper, RAID), or a process holding a lock on its node (another nbdsnap, QEMU); empty when none is found.
std::string block_device_holder(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0 || !S_ISBLK(st.st_mode)) return {};
  const std::string number = std::to_string(major(st.st_rdev)) + ":" + std::to_string(minor(st.st_rdev));
  std::ifstream mounts("/proc/self/mountinfo");
  std::string line;
  while (std::getline(mounts, line)) {
    std::istringstream fields(line);
    std::string id, parent, device, root, mount_point;
    if (fields >> id >> parent >> device >> root >> mount_point && device == number)
      return "mounted on " + mount_point;
  }
  std::error_code ec;
  for (const auto& holder :
       std::filesystem::directory_iterator("/sys/dev/block/" + number + "/holders", ec)) {
    return "held by " + holder.path().filename().string();
  }
  std::string processes;
  for (const LockHolder& holder : find_lock_holders(st.st_dev, st.st_ino, 0, 0, FileLockMode::exclusive)) {
    processes +=
        (processes.empty() ? "opened by " : "; ") + holder.command + ", pid " + std::to_string(holder.pid);
  }
  return processes;
}

}  // namespace

int FileDevice::open_node(const std::string& path, int flags, Status& error) {
  struct stat st {};
  const bool exclusive_block =
      (flags & O_ACCMODE) == O_RDWR && ::stat(path.c_str(), &st) == 0 && S_ISBLK(st.st_mode);
  const int fd = ::open(path.c_str(), flags | O_CLOEXEC | (exclusive_block ? O_EXCL : 0));
  if (fd >= 0) return fd;
  const int err = errno;
  if (err == EBUSY && exclusive_block) {
    const std::string holder = block_device_holder(path);
    error = {Errc::busy, path + " is in use (" +
                             (holder.empty() ? "opened exclusively by another program" : holder) +
                             "): writes nbdsnap does not see would reach it; unmount or stop its user first"};
  } else {
    error = Status::from_errno(err, "open " + path);
  }
  return -1;
}

Status FileDevice::open(const std::string& path, bool readonly, std::unique_ptr<FileDevice>& out,
                        FileCache cache) {
  Status error;
  UniqueFd fd(open_node(path, readonly ? O_RDONLY : O_RDWR, error));
  if (!fd.valid()) return error;
  const FileLockMode mode = readonly ? FileLockMode::shared_read : FileLockMode::exclusive;
  LoopBackingLock backing;
  if (Status s = lock_file(fd.get(), path, mode); !s) return s;
  if (Status s = LoopBackingLock::acquire(fd.get(), path, mode, backing); !s) return s;
  if (Status s = from_descriptor(std::move(fd), path, readonly, out, cache); !s) return s;
  out->backing_lock_ = std::move(backing);
  return Status::ok();
}

Status FileDevice::create(const std::string& path, uint64_t size, std::unique_ptr<FileDevice>& out,
                          bool& created, FileCache cache, bool sparse) {
  created = false;
  Status error;
  UniqueFd fd(::open(path.c_str(), O_RDWR | O_CLOEXEC | O_CREAT | O_EXCL, 0600));
  if (fd.valid()) {
    created = true;
  } else if (errno == EEXIST) {
    fd.reset(open_node(path, O_RDWR, error));
    if (!fd.valid()) return error;
  } else {
    return Status::from_errno(errno, "create " + path);
  }
  // Whatever ends this call without a device (an error, std::bad_alloc), a file it made and locked goes
  // again. Only such a file: another call (or process) that opened it meanwhile and won its lock uses it.
  ScopeExit remove_created([&] { ::unlink(path.c_str()); }, ScopeExitArmed::later);
  // Locked before anything changes the file: an existing file may be another process's disk.
  LoopBackingLock backing;
  if (Status s = lock_file(fd.get(), path, FileLockMode::exclusive); !s) return s;
  if (created) remove_created.arm();
  if (Status s = LoopBackingLock::acquire(fd.get(), path, FileLockMode::exclusive, backing); !s) return s;
  struct stat st {};
  if (::fstat(fd.get(), &st) == 0 && S_ISREG(st.st_mode) && size > static_cast<uint64_t>(st.st_size)) {
    if (Status s = allocate_storage_file(fd.get(), path, size, static_cast<uint64_t>(st.st_size), sparse); !s)
      return s;
  }
  if (Status s = from_descriptor(std::move(fd), path, false, out, cache); !s) return s;
  out->backing_lock_ = std::move(backing);
  remove_created.dismiss();
  return Status::ok();
}

bool FileDevice::file_system_of(const std::string& identity, uint64_t& st_dev) {
  // identity_of_stat()'s "file DEV:INODE".
  unsigned long long device = 0, inode = 0;
  if (std::sscanf(identity.c_str(), "file %llu:%llu", &device, &inode) != 2) return false;
  st_dev = device;
  return true;
}

std::string FileDevice::file_identity() const {
  return identity_;
}

Status FileDevice::identity_of(const std::string& path, std::string& identity) {
  identity.clear();
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0)
    return errno == ENOENT ? Status::ok() : Status::from_errno(errno, "stat " + path);
  identity = identity_of_stat(st);
  std::optional<uint64_t> start;
  if (S_ISBLK(st.st_mode) && is_loop_device(st.st_rdev, start)) {
    // Asking loop(4) needs a descriptor: opened read-only without O_EXCL, which neither claims the device nor
    // conflicts with an O_EXCL holder (an origin).
    const UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK));
    if (fd.valid()) {
      struct stat opened {};
      if (::fstat(fd.get(), &opened) == 0)
        identity = identity_of_open(fd.get(), opened);  // the device opened, not the path
    }
  }
  return Status::ok();
}

bool FileDevice::identity_of_descriptor(int fd, std::string& identity) {
  identity.clear();
  struct statx x {};
  if (::statx(fd, "", AT_EMPTY_PATH | AT_STATX_DONT_SYNC, STATX_TYPE | STATX_INO, &x) != 0) return false;
  struct stat st {};  // what identity_of_open reads of it
  st.st_mode = x.stx_mode;
  st.st_ino = x.stx_ino;
  st.st_dev = makedev(x.stx_dev_major, x.stx_dev_minor);
  st.st_rdev = makedev(x.stx_rdev_major, x.stx_rdev_minor);
  identity = identity_of_open(fd, st);
  return true;
}

namespace {

// A regular file's content_fingerprint(). The change time too: anyone can set a file's mtime back (touch -r,
// cp -p, rsync -t), nobody but the kernel sets its ctime, and every write moves it.
std::string fingerprint_of_stat(const struct stat& st) {
  return "file " + std::to_string(st.st_dev) + ":" + std::to_string(st.st_ino) + " size " +
         std::to_string(st.st_size) + " mtime " + std::to_string(st.st_mtim.tv_sec) + "." +
         std::to_string(st.st_mtim.tv_nsec) + " ctime " + std::to_string(st.st_ctim.tv_sec) + "." +
         std::to_string(st.st_ctim.tv_nsec);
}

}  // namespace

std::string FileDevice::content_fingerprint() const {
  struct stat st {};
  if (::fstat(fd_, &st) != 0) return {};
  if (!S_ISBLK(st.st_mode)) return fingerprint_of_stat(st);
  // Our writes still in the page cache would be counted when written back, after the save: write them now.
  // A failure leaves the count unsettled: a fingerprint equal to no other then (a new generation next time).
  if (::fdatasync(fd_) != 0) {
    return uncounted_block_device_fingerprint(
        st.st_rdev, Status::from_errno(errno, "writing back its page cache").message());
  }
  // With what the device is (a loop device: its backing file and offset): the kernel keeps a loop device's
  // counts when it is detached and bound to another file.
  return block_device_fingerprint(st.st_rdev) + " of " + file_identity();
}

std::string FileDevice::content_fingerprint_of(const std::string& path, const std::string& identity) {
  struct stat st {};
  if (path.empty() || ::stat(path.c_str(), &st) != 0) return {};
  if (S_ISREG(st.st_mode)) return identity_of_stat(st) == identity ? fingerprint_of_stat(st) : std::string();
  if (!S_ISBLK(st.st_mode)) return {};
  // Opened read-only without O_EXCL (it claims nothing): the identity of the device opened (a loop device is
  // its backing file, asked of loop(4)), and a plugin's writes still in the device's page cache, shared by
  // every descriptor of it, written back first as content_fingerprint() does with its own.
  const UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK));
  struct stat opened {};
  if (!fd.valid() || ::fstat(fd.get(), &opened) != 0 || !S_ISBLK(opened.st_mode) ||
      identity_of_open(fd.get(), opened) != identity) {
    return {};
  }
  if (::fdatasync(fd.get()) != 0) {
    return uncounted_block_device_fingerprint(
        opened.st_rdev, Status::from_errno(errno, "writing back its page cache").message());
  }
  return block_device_fingerprint(opened.st_rdev) + " of " + identity;
}

Status FileDevice::pread(void* buf, uint64_t len, uint64_t offset) {
  if (Status s = check_range(size_, offset, len); !s) return s;
  if (direct_) return direct_->pread(buf, len, offset);
  return read_fully(fd_, buf, len, offset, path_);
}

Status FileDevice::pwrite(const void* buf, uint64_t len, uint64_t offset, bool fua) {
  if (readonly_) return {Errc::read_only, path_ + " is read-only"};
  if (Status s = check_range(size_, offset, len); !s) return s;
  Status written = direct_ ? direct_->pwrite(buf, len, offset) : write_fully(fd_, buf, len, offset, path_);
  if (!written) return written;
  return fua ? flush() : Status::ok();
}

Status FileDevice::flush() {
  if (::fdatasync(fd_) != 0) return Status::from_errno(errno, "flush " + path_);
  return Status::ok();
}

Status FileDevice::trim(uint64_t offset, uint64_t len, bool fua) {
  if (readonly_) return {Errc::read_only, path_ + " is read-only"};
  if (Status s = check_range(size_, offset, len); !s) return s;
  if (is_block_device_) return {Errc::not_supported, "trim on block devices is not supported"};
  if (::fallocate(fd_, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, static_cast<off_t>(offset),
                  static_cast<off_t>(len)) != 0) {
    if (errno == EOPNOTSUPP) return {Errc::not_supported, "file system cannot punch holes"};
    return Status::from_errno(errno, "trim " + path_);
  }
  return fua ? flush() : Status::ok();
}

Status FileDevice::zero(uint64_t offset, uint64_t len, bool may_trim, bool fua) {
  if (readonly_) return {Errc::read_only, path_ + " is read-only"};
  if (Status s = check_range(size_, offset, len); !s) return s;
  if (!is_block_device_) {
    const int mode = may_trim ? (FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE) : FALLOC_FL_ZERO_RANGE;
    if (::fallocate(fd_, mode, static_cast<off_t>(offset), static_cast<off_t>(len)) == 0) {
      return fua ? flush() : Status::ok();
    }
  }
  return BlockDevice::zero(offset, len, may_trim, fua);  // fall back to writing zeroes
}

Status FileDevice::extents(uint64_t offset, uint64_t len, std::vector<Extent>& out) {
  if (Status s = check_range(size_, offset, len); !s) return s;
  const uint64_t end = offset + len;
  if (is_block_device_) return BlockDevice::extents(offset, len, out);
  uint64_t pos = offset;
  while (pos < end) {
    off_t data = ::lseek(fd_, static_cast<off_t>(pos), SEEK_DATA);
    if (data < 0) {
      if (errno == ENXIO) {  // only a hole up to the end of the file
        out.push_back({pos, end - pos, true, true});
        return Status::ok();
      }
      return BlockDevice::extents(pos, end - pos, out);  // no SEEK_DATA: all data
    }
    if (static_cast<uint64_t>(data) > pos) {
      const uint64_t hole_end = std::min<uint64_t>(static_cast<uint64_t>(data), end);
      out.push_back({pos, hole_end - pos, true, true});
      pos = hole_end;
      if (pos >= end) break;
    }
    off_t hole = ::lseek(fd_, static_cast<off_t>(pos), SEEK_HOLE);
    const uint64_t data_end = hole < 0 ? end : std::min<uint64_t>(static_cast<uint64_t>(hole), end);
    out.push_back({pos, data_end - pos, false, false});
    pos = data_end;
  }
  return Status::ok();
}

}  // namespace nbdsnap
