// SPDX-License-Identifier: BSD-3-Clause
// memory_device.cpp — sparse pages in a map; FaultyDevice forwards unless told to fail.
#include "memory_device.h"

#include <algorithm>
#include <cstring>

namespace nbdsnap {

MemoryDevice::MemoryDevice(uint64_t size) : size_(size) {}

Status MemoryDevice::pread(void* buf, uint64_t len, uint64_t offset) {
  if (Status s = check_range(size_, offset, len); !s) return s;
  auto* out = static_cast<uint8_t*>(buf);
  MutexLock lock(mutex_);
  while (len > 0) {
    const uint64_t page = offset / kPageSize, in_page = offset % kPageSize;
    const uint64_t n = std::min(len, kPageSize - in_page);
    auto it = pages_.find(page);
    if (it == pages_.end()) {
      std::memset(out, 0, n);
    } else {
      std::memcpy(out, it->second.get() + in_page, n);
    }
    out += n;
    offset += n;
    len -= n;
  }
  return Status::ok();
}

Status MemoryDevice::write_or_zero(const void* buf, uint64_t len, uint64_t offset) {
  if (Status s = check_range(size_, offset, len); !s) return s;
  const auto* in = static_cast<const uint8_t*>(buf);
  MutexLock lock(mutex_);
  while (len > 0) {
    const uint64_t page = offset / kPageSize, in_page = offset % kPageSize;
    const uint64_t n = std::min(len, kPageSize - in_page);
    auto it = pages_.find(page);
    if (in == nullptr && n == kPageSize) {
      if (it != pages_.end()) pages_.erase(it);  // a whole zero page needs no storage
    } else {
      if (it == pages_.end()) {
        it = pages_.emplace(page, std::make_unique<uint8_t[]>(kPageSize)).first;  // zero-filled
      }
      if (in) {
        std::memcpy(it->second.get() + in_page, in, n);
      } else {
        std::memset(it->second.get() + in_page, 0, n);
      }
    }
    if (in) in += n;
    offset += n;
    len -= n;
  }
  return Status::ok();
}

Status MemoryDevice::pwrite(const void* buf, uint64_t len, uint64_t offset, bool) {
  return write_or_zero(buf, len, offset);
}
Status MemoryDevice::trim(uint64_t offset, uint64_t len, bool) {
  return write_or_zero(nullptr, len, offset);
}
Status MemoryDevice::zero(uint64_t offset, uint64_t len, bool, bool) {
  return write_or_zero(nullptr, len, offset);
}

Status MemoryDevice::extents(uint64_t offset, uint64_t len, std::vector<Extent>& out) {
  if (Status s = check_range(size_, offset, len); !s) return s;
  MutexLock lock(mutex_);
  const uint64_t end = offset + len;
  uint64_t pos = offset;
  while (pos < end) {
    uint64_t page = pos / kPageSize;
    auto it = pages_.lower_bound(page);
    const bool present = it != pages_.end() && it->first == page;
    uint64_t run_end;
    if (present) {  // data up to the first missing page
      while (it != pages_.end() && it->first == page) ++it, ++page;
      run_end = std::min(end, page * kPageSize);
    } else {  // a hole up to the next present page
      run_end = it == pages_.end() ? end : std::min(end, it->first * kPageSize);
    }
    out.push_back({pos, run_end - pos, !present, !present});
    pos = run_end;
  }
  return Status::ok();
}

uint64_t MemoryDevice::allocated_bytes() const {
  MutexLock lock(mutex_);
  return pages_.size() * kPageSize;
}

Status FaultyDevice::pread(void* buf, uint64_t len, uint64_t offset) {
  if (fail_reads) return {Errc::io_error, "injected read error"};
  return inner_->pread(buf, len, offset);
}

Status FaultyDevice::pwrite(const void* buf, uint64_t len, uint64_t offset, bool fua) {
  if (writes_no_space) return {Errc::no_space, "injected: no space left on device"};
  if (fail_writes) return {Errc::io_error, "injected write error"};
  return inner_->pwrite(buf, len, offset, fua);
}

Status FaultyDevice::zero(uint64_t offset, uint64_t len, bool may_trim, bool fua) {
  if (writes_no_space) return {Errc::no_space, "injected: no space left on device"};
  if (fail_writes) return {Errc::io_error, "injected write error"};
  return inner_->zero(offset, len, may_trim, fua);
}

}  // namespace nbdsnap
