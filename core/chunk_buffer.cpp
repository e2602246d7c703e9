// SPDX-License-Identifier: BSD-3-Clause
// chunk_buffer.cpp — the chunk buffer pool (anonymous mappings kept for reuse, unmapped on request) and the
// allocation hook for fault-injection tests.
#include "chunk_buffer.h"

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <map>
#include <new>
#include <vector>

#include "mutex.h"

namespace nbdsnap {
namespace {

std::atomic<ChunkAllocationHook> allocation_hook{nullptr};

// Freed buffers by mapped length (a page multiple). One origin's chunks all have one length but its last,
// so the lists stay few and short.
class Pool {
 public:
  void* take(uint64_t mapped) EXCLUDES(mutex_) {
    {
      MutexLock lock(mutex_);
      auto it = free_.find(mapped);
      if (it != free_.end() && !it->second.empty()) {
        void* p = it->second.back();
        it->second.pop_back();
        free_bytes_ -= mapped;
        return p;
      }
    }
    void* p = ::mmap(nullptr, mapped, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) throw std::bad_alloc();
    return p;
  }

  void give_back(void* p, uint64_t mapped) noexcept EXCLUDES(mutex_) {
    {
      MutexLock lock(mutex_);
      if (free_bytes_ + mapped <= limit_) {
        try {
          free_[mapped].push_back(p);
          free_bytes_ += mapped;
          return;
        } catch (...) {  // no memory for the list entry: unmap instead
        }
      }
    }
    ::munmap(p, mapped);
  }

  uint64_t release() EXCLUDES(mutex_) {
    std::map<uint64_t, std::vector<void*>> unmap;
    {
      MutexLock lock(mutex_);
      unmap.swap(free_);
      free_bytes_ = 0;
    }
    uint64_t bytes = 0;
    for (auto& [mapped, list] : unmap) {
      for (void* p : list) ::munmap(p, mapped);
      bytes += mapped * list.size();
    }
    return bytes;
  }

  void set_limit(uint64_t bytes) EXCLUDES(mutex_) {
    MutexLock lock(mutex_);
    limit_ = bytes;
  }

  uint64_t free_bytes() const EXCLUDES(mutex_) {
    MutexLock lock(mutex_);
    return free_bytes_;
  }

 private:
  mutable Mutex mutex_;
  std::map<uint64_t, std::vector<void*>> free_ GUARDED_BY(mutex_);
  uint64_t free_bytes_ GUARDED_BY(mutex_) = 0;
  uint64_t limit_ GUARDED_BY(mutex_) = (64ull << 20) + (64ull << 20);  // EngineConfig's default budget + room
};

Pool& pool() {
  static Pool* const instance = new Pool;  // never destroyed: buffers may be freed during static destruction
  return *instance;
}

uint64_t mapped_length(uint64_t bytes) {
  const uint64_t page = static_cast<uint64_t>(::sysconf(_SC_PAGESIZE));
  return (std::max<uint64_t>(bytes, 1) + page - 1) / page * page;
}

}  // namespace

std::shared_ptr<uint8_t[]> allocate_chunk_buffer(uint64_t bytes) {
  if (ChunkAllocationHook hook = allocation_hook.load(std::memory_order_acquire)) hook(bytes);
  const uint64_t mapped = mapped_length(bytes);
  void* p = pool().take(mapped);
  // If the control block cannot be allocated, shared_ptr calls the deleter and rethrows bad_alloc.
  return std::shared_ptr<uint8_t[]>(static_cast<uint8_t*>(p),
                                    [mapped](uint8_t* q) { pool().give_back(q, mapped); });
}

void set_chunk_buffer_pool_limit(uint64_t bytes) {
  pool().set_limit(bytes);
}
uint64_t release_free_chunk_buffers() {
  return pool().release();
}
uint64_t free_chunk_buffer_bytes() {
  return pool().free_bytes();
}

void set_chunk_allocation_hook(ChunkAllocationHook hook) {
  allocation_hook.store(hook, std::memory_order_release);
}

}  // namespace nbdsnap
