// file_device.cpp — pread/pwrite over a descriptor; fallocate for trim/zero; SEEK_DATA/SEEK_HOLE for extents.
#include "file_device.h"

#include <fcntl.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>

namespace nbdsnap {

FileDevice::FileDevice(int fd, std::string path, uint64_t size, bool readonly, bool is_block_device,
                       std::string identity)
    : fd_(fd), path_(std::move(path)), size_(size), readonly_(readonly), is_block_device_(is_block_device),
      identity_(std::move(identity)) {}

FileDevice::~FileDevice() { ::close(fd_); }

Status FileDevice::from_descriptor(int fd, const std::string& path, bool readonly,
                                   std::unique_ptr<FileDevice>& out) {
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    const int err = errno;
    ::close(fd);
    return Status::from_errno(err, "stat " + path);
  }
  uint64_t size = static_cast<uint64_t>(st.st_size);
  const bool block = S_ISBLK(st.st_mode);
  if (block && ::ioctl(fd, BLKGETSIZE64, &size) != 0) {
    const int err = errno;
    ::close(fd);
    return Status::from_errno(err, "size of block device " + path);
  }
  if (!block && !S_ISREG(st.st_mode)) {
    ::close(fd);
    return {Errc::invalid_argument, path + " is neither a regular file nor a block device"};
  }
  // A disk reached through two device nodes (/dev/sda, /dev/disk/by-id/...) is one disk: name it by st_rdev.
  std::string identity = block ? "block " + std::to_string(major(st.st_rdev)) + ":" + std::to_string(minor(st.st_rdev))
                               : "file " + std::to_string(st.st_dev) + ":" + std::to_string(st.st_ino);
  out.reset(new FileDevice(fd, path, size, readonly, block, std::move(identity)));
  return Status::ok();
}

Status FileDevice::open(const std::string& path, bool readonly, std::unique_ptr<FileDevice>& out) {
  const int fd = ::open(path.c_str(), (readonly ? O_RDONLY : O_RDWR) | O_CLOEXEC);
  if (fd < 0) return Status::from_errno(errno, "open " + path);
  return from_descriptor(fd, path, readonly, out);
}

Status FileDevice::create(const std::string& path, uint64_t size, std::unique_ptr<FileDevice>& out,
                          bool& created) {
  created = false;
  int fd = ::open(path.c_str(), O_RDWR | O_CLOEXEC | O_CREAT | O_EXCL, 0600);
  if (fd >= 0) {
    created = true;
  } else if (errno == EEXIST) {
    fd = ::open(path.c_str(), O_RDWR | O_CLOEXEC);
  }
  if (fd < 0) return Status::from_errno(errno, "create " + path);
  struct stat st {};
  if (::fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && size > static_cast<uint64_t>(st.st_size)) {
    // Reserve the space now so running out shows up here, not as a failed copy-on-write later.
    int rc = ::posix_fallocate(fd, 0, static_cast<off_t>(size));
    if (rc == EOPNOTSUPP || rc == EINVAL) rc = ::ftruncate(fd, static_cast<off_t>(size)) == 0 ? 0 : errno;
    if (rc != 0) {
      ::close(fd);
      if (created) ::unlink(path.c_str());
      return Status::from_errno(rc, "allocate " + std::to_string(size) + " bytes for " + path);
    }
  }
  return from_descriptor(fd, path, false, out);
}

std::string FileDevice::file_identity() const { return identity_; }

std::string FileDevice::content_fingerprint() const {
  struct stat st {};
  if (is_block_device_ || ::fstat(fd_, &st) != 0) return {};
  return "file " + std::to_string(st.st_dev) + ":" + std::to_string(st.st_ino) + " size " +
         std::to_string(st.st_size) + " mtime " + std::to_string(st.st_mtim.tv_sec) + "." +
         std::to_string(st.st_mtim.tv_nsec);
}

Status FileDevice::pread(void* buf, uint64_t len, uint64_t offset) {
  if (Status s = check_range(size_, len, offset); !s) return s;
  auto* p = static_cast<char*>(buf);
  while (len > 0) {
    const ssize_t n = ::pread(fd_, p, len, static_cast<off_t>(offset));
    if (n < 0) {
      if (errno == EINTR) continue;
      return Status::from_errno(errno, "read " + path_);
    }
    if (n == 0) return {Errc::io_error, "unexpected end of file reading " + path_};
    p += n;
    len -= static_cast<uint64_t>(n);
    offset += static_cast<uint64_t>(n);
  }
  return Status::ok();
}

Status FileDevice::pwrite(const void* buf, uint64_t len, uint64_t offset, bool fua) {
  if (readonly_) return {Errc::read_only, path_ + " is read-only"};
  if (Status s = check_range(size_, len, offset); !s) return s;
  const auto* p = static_cast<const char*>(buf);
  while (len > 0) {
    const ssize_t n = ::pwrite(fd_, p, len, static_cast<off_t>(offset));
    if (n < 0) {
      if (errno == EINTR) continue;
      return Status::from_errno(errno, "write " + path_);
    }
    p += n;
    len -= static_cast<uint64_t>(n);
    offset += static_cast<uint64_t>(n);
  }
  return fua ? flush() : Status::ok();
}

Status FileDevice::flush() {
  if (::fdatasync(fd_) != 0) return Status::from_errno(errno, "flush " + path_);
  return Status::ok();
}

Status FileDevice::trim(uint64_t len, uint64_t offset, bool fua) {
  if (readonly_) return {Errc::read_only, path_ + " is read-only"};
  if (Status s = check_range(size_, len, offset); !s) return s;
  if (is_block_device_) return {Errc::not_supported, "trim on block devices is not supported"};
  if (::fallocate(fd_, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, static_cast<off_t>(offset),
                  static_cast<off_t>(len)) != 0) {
    if (errno == EOPNOTSUPP) return {Errc::not_supported, "file system cannot punch holes"};
    return Status::from_errno(errno, "trim " + path_);
  }
  return fua ? flush() : Status::ok();
}

Status FileDevice::zero(uint64_t len, uint64_t offset, bool may_trim, bool fua) {
  if (readonly_) return {Errc::read_only, path_ + " is read-only"};
  if (Status s = check_range(size_, len, offset); !s) return s;
  if (!is_block_device_) {
    const int mode = may_trim ? (FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE) : FALLOC_FL_ZERO_RANGE;
    if (::fallocate(fd_, mode, static_cast<off_t>(offset), static_cast<off_t>(len)) == 0) {
      return fua ? flush() : Status::ok();
    }
  }
  return BlockDevice::zero(len, offset, may_trim, fua);  // fall back to writing zeroes
}

Status FileDevice::extents(uint64_t len, uint64_t offset, std::vector<Extent>& out) {
  if (Status s = check_range(size_, len, offset); !s) return s;
  const uint64_t end = offset + len;
  if (is_block_device_) return BlockDevice::extents(len, offset, out);
  uint64_t pos = offset;
  while (pos < end) {
    off_t data = ::lseek(fd_, static_cast<off_t>(pos), SEEK_DATA);
    if (data < 0) {
      if (errno == ENXIO) {  // only a hole up to the end of the file
        out.push_back({pos, end - pos, true, true});
        return Status::ok();
      }
      return BlockDevice::extents(end - pos, pos, out);  // no SEEK_DATA: all data
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
