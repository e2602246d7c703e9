// chunk_buffer.h — allocation of the buffers that hold a chunk's old data between copy-on-write and
// writeback, with a hook through which tests make allocations fail.
//
// Chunks reach 64 MiB under blksnap v4's sizing rule, so a failed allocation is a real event, not a
// theoretical one: the copy-on-write path catches it and corrupts the snapshot (never the origin write).
#pragma once

#include <cstdint>
#include <memory>

namespace nbdsnap {

// `bytes` bytes, not zero-filled (the copy overwrites every byte). Throws std::bad_alloc when memory is
// exhausted or the test hook says so. Thread-safe.
std::shared_ptr<uint8_t[]> allocate_chunk_buffer(uint64_t bytes);

// Tests only: called before every chunk buffer allocation; it may throw std::bad_alloc. nullptr removes it.
// Set it while no copy-on-write runs (the pointer is atomic, what it points to must stay valid).
using ChunkAllocationHook = void (*)(uint64_t bytes);
void set_chunk_allocation_hook(ChunkAllocationHook hook);

}  // namespace nbdsnap
