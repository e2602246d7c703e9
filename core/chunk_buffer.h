// SPDX-License-Identifier: BSD-3-Clause
// chunk_buffer.h — allocation of the buffers that hold a chunk's old data between copy-on-write and
// writeback: a process-wide pool of our own, with a hook through which tests make allocations fail.
//
// Chunks reach 64 MiB under blksnap v4's sizing rule, so a failed allocation is a real event, not a
// theoretical one: the copy-on-write path catches it and corrupts the snapshot (never the origin write).
//
// Why a pool. Chunk buffers are many, large and short-lived. From malloc, each first-touch write either paid
// page faults on memory just freed (glibc's defaults give it back at once) or, with nbdsnapd's mallopt
// thresholds, the freed memory stayed in the threads' malloc arenas for good: malloc_trim cannot give back
// the top of a thread's arena, and bench T6 measured 81 MiB still resident after destroying a snapshot of a
// 16 TiB origin. So the buffers are anonymous mappings of our own: a freed buffer waits in the pool for the
// next copy of the same length (no page faults while a snapshot is busy), and release_free_chunk_buffers()
// unmaps the waiting ones when a snapshot goes (the engine calls it at destroy and forced detach).
//
// Locks: the pool's mutex is below every engine lock (core/lock_order.h): a buffer may be freed with a chunk
// map's mutex held, and nothing is called with the pool's mutex held.
#pragma once

#include <cstdint>
#include <memory>

namespace nbdsnap {

// `bytes` bytes, not zero-filled (the copy overwrites every byte). Throws std::bad_alloc when memory is
// exhausted or the test hook says so. The last reference returns the buffer to the pool. Thread-safe.
std::shared_ptr<uint8_t[]> allocate_chunk_buffer(uint64_t bytes);

// Most bytes of freed buffers the pool keeps for reuse; beyond it a freed buffer is unmapped at once. The
// engine sets it from EngineConfig::chunk_buffer_budget (the buffers it may hold at a time) plus room for the
// copies in flight. Thread-safe; the last call wins (one engine per process outside tests).
void set_chunk_buffer_pool_limit(uint64_t bytes);
// Unmaps every freed buffer waiting in the pool (buffers in use stay). Returns the bytes given back.
// Thread-safe.
uint64_t release_free_chunk_buffers();
// Bytes of freed buffers waiting in the pool (tests, diagnostics). Thread-safe.
uint64_t free_chunk_buffer_bytes();

// Tests only: called before every chunk buffer allocation; it may throw std::bad_alloc. nullptr removes it.
// Set it while no copy-on-write runs (the pointer is atomic, what it points to must stay valid).
using ChunkAllocationHook = void (*)(uint64_t bytes);
void set_chunk_allocation_hook(ChunkAllocationHook hook);

}  // namespace nbdsnap
