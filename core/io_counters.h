// SPDX-License-Identifier: BSD-3-Clause
// io_counters.h — the engine's metrics: monotonic counters per origin (its writes and reads, the chunks
// copy-on-write preserved for a snapshot, the time that took, the CBT blocks its writes marked) and per
// image (the reads of the frozen view), read by the control command `stats` (docs/control.md).
//
// Cost. Counters sit on the I/O hot path, so each is one relaxed atomic add: no lock, no ordering with other
// memory (a reader only wants a value that is correct eventually, never one consistent with other state).
// Each set is cache-line aligned so its adds do not bounce the line of the data around it. Time is measured
// only around a chunk copy, which does I/O anyway; plain writes read no clock.
//
// Meaning. A write is a request that passed the tracker (writes, trims and zeroes alike; bytes are the
// request's length). A chunk counts as copied once its old data is in difference storage: a copy that failed
// (a failed origin read, a full storage, a failed storage write) is not counted, and a chunk held in memory
// is counted when the writeback stores it. Counters start at 0 when the origin is attached (or the snapshot
// taken) and never go back; they are not saved across restarts (Prometheus counters may reset).
// Thread-safe: any thread adds, any thread reads.
#pragma once

#include <atomic>
#include <cstdint>

namespace nbdsnap {

// Adds n to a counter: relaxed, as nothing else is ordered by it.
inline void count(std::atomic<uint64_t>& counter, uint64_t n = 1) {
  counter.fetch_add(n, std::memory_order_relaxed);
}
inline uint64_t value_of(const std::atomic<uint64_t>& counter) {
  return counter.load(std::memory_order_relaxed);
}

// The values of an origin's counters at one moment (each read on its own: not one atomic picture).
struct OriginCounterValues {
  uint64_t writes = 0;             // write, trim and zero requests admitted by the tracker
  uint64_t bytes_written = 0;      // their bytes
  uint64_t reads = 0;              // read requests of the origin export that succeeded
  uint64_t bytes_read = 0;         // their bytes
  uint64_t chunks_copied = 0;      // chunks whose old data reached difference storage (all snapshots)
  uint64_t bytes_copied = 0;       // their bytes
  uint64_t copy_on_write_ns = 0;   // time writers spent copying chunks (origin read + buffering or storing)
  uint64_t cbt_blocks_marked = 0;  // CBT blocks marked by writes (a block written twice counts twice)
};

struct alignas(64) OriginCounters {
  std::atomic<uint64_t> writes{0};
  std::atomic<uint64_t> bytes_written{0};
  std::atomic<uint64_t> reads{0};
  std::atomic<uint64_t> bytes_read{0};
  std::atomic<uint64_t> chunks_copied{0};
  std::atomic<uint64_t> bytes_copied{0};
  std::atomic<uint64_t> copy_on_write_ns{0};
  std::atomic<uint64_t> cbt_blocks_marked{0};

  OriginCounterValues values() const {
    return {value_of(writes),           value_of(bytes_written),    value_of(reads),
            value_of(bytes_read),       value_of(chunks_copied),    value_of(bytes_copied),
            value_of(copy_on_write_ns), value_of(cbt_blocks_marked)};
  }
};

struct ImageCounterValues {
  uint64_t reads = 0;       // image read requests that succeeded
  uint64_t bytes_read = 0;  // their bytes
};

struct alignas(64) ImageCounters {
  std::atomic<uint64_t> reads{0};
  std::atomic<uint64_t> bytes_read{0};

  ImageCounterValues values() const { return {value_of(reads), value_of(bytes_read)}; }
};

}  // namespace nbdsnap
