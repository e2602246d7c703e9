// SPDX-License-Identifier: BSD-3-Clause
// chunk_buffer_test.cpp — the chunk buffer pool: freed buffers are reused up to the limit, and a snapshot's
// destroy or forced detach gives them back to the system (issue 16 part 3; bench T6 measures the RSS).
#include <doctest/doctest.h>

#include <chrono>
#include <cstring>
#include <thread>

#include "chunk_buffer.h"
#include "engine.h"
#include "test_support.h"

using namespace nbdsnap;
using namespace nbdsnap::test;

namespace {

// Restores the engine default limit whatever a test set.
struct PoolReset {
  PoolReset() { release_free_chunk_buffers(); }
  ~PoolReset() {
    set_chunk_buffer_pool_limit(128 * MiB);
    release_free_chunk_buffers();
  }
};

// Writes the first byte of every chunk of the origin: each write copies one chunk.
void touch_every_chunk(Origin& origin, uint64_t size, uint64_t chunk) {
  const uint8_t byte = 0x5a;
  for (uint64_t offset = 0; offset < size; offset += chunk) REQUIRE_OK(origin.write(&byte, 1, offset, false));
}

// Waits (bounded) until the writeback thread stored every buffered chunk.
void wait_for_writeback(Engine& engine) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (engine.chunk_buffer_bytes() > 0 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  REQUIRE(engine.chunk_buffer_bytes() == 0);
}

}  // namespace

TEST_CASE("a freed chunk buffer waits in the pool for the next copy of its length, up to the limit") {
  PoolReset reset;
  set_chunk_buffer_pool_limit(3 * 64 * KiB);
  {
    auto a = allocate_chunk_buffer(64 * KiB), b = allocate_chunk_buffer(64 * KiB);
    auto c = allocate_chunk_buffer(64 * KiB), d = allocate_chunk_buffer(64 * KiB);
    std::memset(a.get(), 1, 64 * KiB);  // the memory is really there
    std::memset(d.get(), 1, 64 * KiB);
    CHECK(free_chunk_buffer_bytes() == 0);
  }
  CHECK(free_chunk_buffer_bytes() == 3 * 64 * KiB);  // the fourth went back to the system at once
  {
    auto reused = allocate_chunk_buffer(64 * KiB);
    CHECK(free_chunk_buffer_bytes() == 2 * 64 * KiB);
    auto other_length = allocate_chunk_buffer(4 * KiB + 1);  // a last chunk: its own length, a page multiple
    CHECK(free_chunk_buffer_bytes() == 2 * 64 * KiB);
  }
  // other_length went back first (8 KiB fitted), then `reused` did not fit under the limit any more.
  CHECK(release_free_chunk_buffers() == 2 * 64 * KiB + 8 * KiB);
  CHECK(free_chunk_buffer_bytes() == 0);
}

TEST_CASE("destroying a snapshot gives the pool's free chunk buffers back to the system") {
  PoolReset reset;
  Engine engine(small_config(16));  // 64 KiB chunks, 1 MiB buffer budget
  attach_memory_origin(engine, "disk0", 4 * MiB);
  TempDir dir;
  REQUIRE_OK(engine.create_snapshot("s", snapshot_options({"disk0"}, dir, "diff", 8 * MiB)));
  REQUIRE_OK(engine.take_snapshot("s"));
  touch_every_chunk(*engine.find_origin("disk0"), 4 * MiB, 64 * KiB);
  wait_for_writeback(engine);
  CHECK(free_chunk_buffer_bytes() > 0);  // written back: the buffers wait for the next copy
  REQUIRE_OK(engine.destroy_snapshot("s"));
  CHECK(free_chunk_buffer_bytes() == 0);
}

TEST_CASE("a forced detach that drops an image gives the pool's free chunk buffers back to the system") {
  PoolReset reset;
  Engine engine(small_config(16));
  attach_memory_origin(engine, "disk0", 4 * MiB);
  TempDir dir;
  REQUIRE_OK(engine.create_snapshot("s", snapshot_options({"disk0"}, dir, "diff", 8 * MiB)));
  REQUIRE_OK(engine.take_snapshot("s"));
  touch_every_chunk(*engine.find_origin("disk0"), 4 * MiB, 64 * KiB);
  wait_for_writeback(engine);
  CHECK(free_chunk_buffer_bytes() > 0);
  REQUIRE_OK(engine.detach_origin("disk0", true));
  CHECK(free_chunk_buffer_bytes() == 0);
}
