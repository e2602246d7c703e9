// SPDX-License-Identifier: BSD-3-Clause
// unique_fd.h — the one owner of an open file descriptor: closed when its owner goes, however the scope
// ends. A raw descriptor held across string building or an allocation leaks when std::bad_alloc comes out,
// and with it the file's OFD lock (file_lock.h): the file then stays "already open in this process" until
// the process ends.
// Thread-safety: none of its own (like the int it wraps); move-only.
#pragma once

#include <unistd.h>

#include <utility>

namespace nbdsnap {

class UniqueFd {
 public:
  UniqueFd() = default;
  explicit UniqueFd(int fd) : fd_(fd) {}
  UniqueFd(UniqueFd&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
  UniqueFd& operator=(UniqueFd&& other) noexcept {
    reset(std::exchange(other.fd_, -1));
    return *this;
  }
  UniqueFd(const UniqueFd&) = delete;
  UniqueFd& operator=(const UniqueFd&) = delete;
  ~UniqueFd() { reset(); }

  int get() const { return fd_; }
  bool valid() const { return fd_ >= 0; }
  // Gives the descriptor up to the caller, who closes it.
  int release() { return std::exchange(fd_, -1); }
  // Closes the descriptor held (if any) and holds `fd` instead.
  void reset(int fd = -1) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = fd;
  }

 private:
  int fd_ = -1;
};

}  // namespace nbdsnap
