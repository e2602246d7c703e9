// SPDX-License-Identifier: BSD-3-Clause
// destroy_stalled_test.cpp — a destroy that waits for a stalled disk holds up only what needs that snapshot
// (ARCHITECTURE.md invariant 5; found by a hostile tester with fsfreeze under the difference storage), and a
// CBT reset never lets a write in flight escape the new generation.
//
// The destroy of a snapshot whose origin write is stuck in copy-on-write (here: the origin's read of the old
// chunk, which a stalled disk can hold for as long as it stalls) used to wait with the engine's control lock
// held, so every create, take and destroy of every other snapshot waited too.
#include <doctest/doctest.h>

#include <chrono>
#include <condition_variable>
#include <future>
#include <mutex>
#include <thread>

#include "engine.h"
#include "memory_device.h"
#include "stalling_device.h"
#include "test_support.h"

using namespace nbdsnap;
using namespace nbdsnap::test;
using namespace std::chrono_literals;

TEST_CASE("a destroy waiting for a stalled disk holds up only the calls that need its snapshot") {
  HangWatchdog watchdog("destroy of a snapshot on a stalled disk", 120s);
  TempDir dir;
  Engine engine(small_config());
  auto memory = std::make_shared<MemoryDevice>(4 * kChunk);
  fill_device(*memory, 1);
  auto stalling = std::make_shared<StallingDevice>(memory);
  REQUIRE_OK(engine.attach_origin("stalled", stalling, false));
  attach_memory_origin(engine, "healthy", 4 * kChunk);
  REQUIRE_OK(engine.create_snapshot("a", snapshot_options({"stalled"}, dir, "a.diff", 1 << 20)));
  REQUIRE_OK(engine.take_snapshot("a"));

  // A write whose copy-on-write reads the old chunk from the stalled disk, then the destroy that drains it.
  stalling->stall();
  auto origin = engine.find_origin("stalled");
  auto writer = std::async(std::launch::async, [&] {
    const std::vector<char> data(4096, 'w');
    return origin->write(data.data(), data.size(), 0, false);
  });
  REQUIRE(stalling->await_waiting_read());
  auto destroy = std::async(std::launch::async, [&] { return engine.destroy_snapshot("a"); });
  // The destroy has begun once "a" is out of the registry.
  SnapshotInfo info;
  for (int i = 0; i < 2000 && engine.snapshot_info("a", info); ++i) std::this_thread::sleep_for(5ms);
  REQUIRE(engine.snapshot_info("a", info).code() == Errc::not_found);
  std::this_thread::sleep_for(50ms);  // into its drain, where it waits for the write
  CHECK(destroy.wait_for(0s) == std::future_status::timeout);

  // Another snapshot's whole life goes on meanwhile (it waited for the stall before the fix).
  CHECK_OK(within_five_seconds(*stalling, "create", [&] {
    return engine.create_snapshot("b", snapshot_options({"healthy"}, dir, "b.diff", 1 << 20));
  }));
  CHECK_OK(within_five_seconds(*stalling, "take", [&] { return engine.take_snapshot("b"); }));
  CHECK_OK(within_five_seconds(*stalling, "destroy", [&] { return engine.destroy_snapshot("b"); }));

  // What needs the snapshot being destroyed is refused at once, naming it, rather than waiting.
  Status again =
      within_five_seconds(*stalling, "second destroy", [&] { return engine.destroy_snapshot("a"); });
  CHECK(again.code() == Errc::busy);
  CHECK(again.message().find("snapshot 'a' is being destroyed") != std::string::npos);
  CHECK(within_five_seconds(*stalling, "create of the same name", [&] {
          return engine.create_snapshot("a", snapshot_options({"healthy"}, dir, "a2.diff", 1 << 20));
        }).code() == Errc::busy);
  CHECK(within_five_seconds(*stalling, "create with its origin", [&] {
          return engine.create_snapshot("c", snapshot_options({"stalled"}, dir, "c.diff", 1 << 20));
        }).code() == Errc::busy);
  CHECK(within_five_seconds(*stalling, "forced detach of its origin", [&] {
          return engine.detach_origin("stalled", true);
        }).code() == Errc::busy);

  // The disk answers: the write and the destroy finish, and the origin is free again.
  stalling->answer();
  CHECK_OK(writer.get());
  CHECK_OK(destroy.get());
  CHECK(engine.destroy_snapshot("a").code() == Errc::not_found);
  CHECK_OK(engine.create_snapshot("c", snapshot_options({"stalled"}, dir, "c.diff", 1 << 20)));
  CHECK_OK(engine.destroy_snapshot("c"));
}

// A write in flight marks the old CBT map; had the reset not waited for it, it landed after the reset and the
// new generation never listed it (a full backup taken after the reset missed it too). The reset waits for
// such writes, and gives up with busy when they hang on a stalled disk.
TEST_CASE("a CBT reset waits for writes in flight, and gives up on a stalled one") {
  HangWatchdog watchdog("CBT reset beside a stalled write", 60s);
  TempDir dir;
  EngineConfig config = small_config();
  config.cbt_reset_drain_limit = 300ms;
  Engine engine(config);
  auto memory = std::make_shared<MemoryDevice>(4 * kChunk);
  fill_device(*memory, 1);
  auto stalling = std::make_shared<StallingDevice>(memory);
  REQUIRE_OK(engine.attach_origin("o", stalling, false));
  REQUIRE_OK(engine.create_snapshot("s", snapshot_options({"o"}, dir, "s.diff", 1 << 20)));
  REQUIRE_OK(engine.take_snapshot("s"));
  const std::string generation = origin_info_of(engine, "o").generation;

  stalling->stall();
  auto origin = engine.find_origin("o");
  auto writer = std::async(std::launch::async, [&] {
    const std::vector<char> data(4096, 'w');
    return origin->write(data.data(), data.size(), 0, false);
  });
  REQUIRE(stalling->await_waiting_read());
  const Status refused = engine.cbt_reset("o");
  CHECK(refused.code() == Errc::busy);
  CHECK(refused.message().find("writes in flight") != std::string::npos);
  CHECK(origin_info_of(engine, "o").generation == generation);  // not reset: the old map keeps the write

  // A reset that starts while the write hangs, and the disk answers within the limit: the reset waits.
  auto reset = std::async(std::launch::async, [&] { return engine.cbt_reset("o"); });
  std::this_thread::sleep_for(50ms);
  stalling->answer();
  CHECK_OK(writer.get());
  CHECK_OK(reset.get());
  CHECK(origin_info_of(engine, "o").generation != generation);
  CHECK_OK(engine.destroy_snapshot("s"));
}
