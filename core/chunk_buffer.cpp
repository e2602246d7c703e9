// chunk_buffer.cpp — chunk buffers and the allocation hook for fault-injection tests.
#include "chunk_buffer.h"

#include <atomic>

namespace nbdsnap {
namespace {
std::atomic<ChunkAllocationHook> allocation_hook{nullptr};
}  // namespace

std::shared_ptr<uint8_t[]> allocate_chunk_buffer(uint64_t bytes) {
  if (ChunkAllocationHook hook = allocation_hook.load(std::memory_order_acquire)) hook(bytes);
  return std::make_shared_for_overwrite<uint8_t[]>(bytes);
}

void set_chunk_allocation_hook(ChunkAllocationHook hook) { allocation_hook.store(hook, std::memory_order_release); }

}  // namespace nbdsnap
