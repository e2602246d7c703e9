// cbt_test.cpp — change numbers across takes, checkpoints, changed ranges, wrap-around and reset.
#include "cbt.h"

#include <doctest/doctest.h>

#include <set>
#include <thread>

#include "test_support.h"

using namespace nbdsnap;

namespace {

constexpr uint64_t kBlock = 64 << 10;

std::vector<Range> all_changed(const CbtFrozen& frozen, uint8_t since) {
  return frozen.changed_ranges(since, 0, frozen.device_size);
}

}  // namespace

TEST_CASE("a fresh cbt starts at change number 1 with an all-zero map") {
  Cbt cbt(100 * kBlock, kBlock);
  CHECK(cbt.current_number() == 1);
  CHECK(cbt.block_size() == kBlock);
  CHECK(cbt.device_size() == 100 * kBlock);
  const auto live = cbt.snapshot_of_live_map();
  REQUIRE(live->map.size() == 100);
  for (uint8_t number : live->map) CHECK(number == 0);
  CHECK(cbt.checkpoints().empty());
  CHECK(all_changed(*live, 0).empty());
}

TEST_CASE("two cbts get different generation ids") {
  Cbt a(kBlock, kBlock);
  Cbt b(kBlock, kBlock);
  CHECK_FALSE(a.generation() == b.generation());
}

TEST_CASE("mark dirty marks every block the range touches with the current number") {
  Cbt cbt(10 * kBlock, kBlock);
  cbt.mark_dirty(kBlock - 1, 2);          // last byte of block 0, first of block 1
  cbt.mark_dirty(5 * kBlock + 100, 10);   // inside block 5
  const auto live = cbt.snapshot_of_live_map();
  const std::vector<uint8_t> expected = {1, 1, 0, 0, 0, 1, 0, 0, 0, 0};
  CHECK(live->map == expected);
  CHECK(all_changed(*live, 0) == std::vector<Range>{{0, 2 * kBlock}, {5 * kBlock, kBlock}});
}

TEST_CASE("freeze records a checkpoint and advances the change number") {
  Cbt cbt(8 * kBlock, kBlock);
  const Uuid generation = cbt.generation();
  cbt.mark_dirty(0, kBlock);
  const auto first = cbt.freeze("s1");
  CHECK(first->number == 1);
  CHECK(first->generation == generation);
  CHECK(first->block_size == kBlock);
  CHECK(first->device_size == 8 * kBlock);
  CHECK(first->checkpoints == std::map<std::string, uint8_t>{{"s1", 1}});
  CHECK(cbt.current_number() == 2);

  cbt.mark_dirty(2 * kBlock, kBlock);
  const auto second = cbt.freeze("s2");
  CHECK(second->number == 2);
  CHECK(second->map[0] == 1);
  CHECK(second->map[2] == 2);
  CHECK(second->checkpoints == std::map<std::string, uint8_t>{{"s1", 1}, {"s2", 2}});
  CHECK(cbt.current_number() == 3);
  CHECK(cbt.generation() == generation);

  // The first frozen map is immutable: later marks do not show in it.
  CHECK(first->map[2] == 0);
  uint8_t number = 0;
  CHECK_OK(cbt.checkpoint_number("s1", number));
  CHECK(number == 1);
  CHECK_OK(cbt.checkpoint_number("s2", number));
  CHECK(number == 2);
  CHECK_ERRC(cbt.checkpoint_number("nope", number), Errc::not_found);
}

TEST_CASE("changed ranges since a checkpoint list only blocks written after it") {
  Cbt cbt(16 * kBlock, kBlock);
  cbt.mark_dirty(0, 3 * kBlock);  // number 1
  cbt.freeze("full");
  cbt.mark_dirty(kBlock, 1);  // number 2
  cbt.mark_dirty(9 * kBlock, 2 * kBlock);
  cbt.freeze("inc1");
  cbt.mark_dirty(15 * kBlock, 10);  // number 3
  const auto frozen = cbt.freeze("inc2");

  CHECK(all_changed(*frozen, 0) ==
        std::vector<Range>{{0, 3 * kBlock}, {9 * kBlock, 2 * kBlock}, {15 * kBlock, kBlock}});
  CHECK(all_changed(*frozen, 1) ==
        std::vector<Range>{{kBlock, kBlock}, {9 * kBlock, 2 * kBlock}, {15 * kBlock, kBlock}});
  CHECK(all_changed(*frozen, 2) == std::vector<Range>{{15 * kBlock, kBlock}});
  CHECK(all_changed(*frozen, 3).empty());
}

TEST_CASE("changed ranges are clipped to the requested window and the device end") {
  Cbt cbt(4 * kBlock + 1000, kBlock);  // a partial last block
  cbt.mark_dirty(0, 4 * kBlock + 1000);
  const auto frozen = cbt.freeze("s");
  REQUIRE(frozen->map.size() == 5);
  CHECK(all_changed(*frozen, 0) == std::vector<Range>{{0, 4 * kBlock + 1000}});
  CHECK(frozen->changed_ranges(0, 100, 200) == std::vector<Range>{{100, 200}});
  CHECK(frozen->changed_ranges(0, 3 * kBlock + 5, 10 * kBlock) ==
        std::vector<Range>{{3 * kBlock + 5, kBlock - 5 + 1000}});
}

TEST_CASE("a checkpoint stays in later frozen maps of the same generation") {
  Cbt cbt(4 * kBlock, kBlock);
  cbt.freeze("a");
  cbt.freeze("b");
  const auto c = cbt.freeze("c");
  CHECK(c->checkpoints == std::map<std::string, uint8_t>{{"a", 1}, {"b", 2}, {"c", 3}});
  CHECK(cbt.checkpoints() == c->checkpoints);
}

TEST_CASE("change number wrap-around starts a new generation") {
  Cbt cbt(4 * kBlock, kBlock);
  const Uuid first_generation = cbt.generation();
  std::shared_ptr<const CbtFrozen> last;
  for (int i = 1; i <= 254; ++i) {
    cbt.mark_dirty(0, 1);
    last = cbt.freeze("s" + std::to_string(i));
    REQUIRE(last->number == i);
    REQUIRE(cbt.generation() == first_generation);
  }
  CHECK(cbt.current_number() == 255);
  cbt.mark_dirty(kBlock, 1);
  last = cbt.freeze("s255");
  // The 255th take closes number 255 in the old generation; the next number would wrap.
  CHECK(last->number == 255);
  CHECK(last->generation == first_generation);
  CHECK(last->map[1] == 255);
  CHECK_FALSE(cbt.generation() == first_generation);
  CHECK(cbt.current_number() == 1);
  CHECK(cbt.checkpoints().empty());
  const auto live = cbt.snapshot_of_live_map();
  CHECK(all_changed(*live, 0).empty());
  CHECK(live->generation == cbt.generation());
}

TEST_CASE("reset starts a new generation with a zero map and no checkpoints") {
  Cbt cbt(4 * kBlock, kBlock);
  cbt.mark_dirty(0, 4 * kBlock);
  const auto before = cbt.freeze("s1");
  cbt.mark_dirty(0, 1);
  const Uuid old_generation = cbt.generation();
  cbt.reset();
  CHECK_FALSE(cbt.generation() == old_generation);
  CHECK(cbt.current_number() == 1);
  CHECK(cbt.checkpoints().empty());
  uint8_t number = 0;
  CHECK_ERRC(cbt.checkpoint_number("s1", number), Errc::not_found);
  CHECK(all_changed(*cbt.snapshot_of_live_map(), 0).empty());
  // What was frozen before stays as it was.
  CHECK(before->generation == old_generation);
  CHECK(all_changed(*before, 0) == std::vector<Range>{{0, 4 * kBlock}});
}

TEST_CASE("state round-trips through a resumed cbt") {
  Cbt cbt(7 * kBlock + 512, kBlock);
  cbt.mark_dirty(kBlock, 1);
  cbt.freeze("s1");
  cbt.mark_dirty(6 * kBlock, 600);
  const CbtState state = cbt.state();
  CHECK(state.generation == cbt.generation());
  CHECK(state.number == 2);
  CHECK(state.block_size == kBlock);
  CHECK(state.device_size == 7 * kBlock + 512);
  CHECK(state.map == std::vector<uint8_t>{0, 1, 0, 0, 0, 0, 2, 0});
  CHECK(state.checkpoints == std::map<std::string, uint8_t>{{"s1", 1}});

  Cbt resumed(state);
  CHECK(resumed.generation() == cbt.generation());
  CHECK(resumed.current_number() == 2);
  CHECK(resumed.block_size() == kBlock);
  CHECK(resumed.device_size() == 7 * kBlock + 512);
  CHECK(resumed.checkpoints() == cbt.checkpoints());
  const auto frozen = resumed.freeze("s2");
  CHECK(all_changed(*frozen, 1) == std::vector<Range>{{6 * kBlock, kBlock}});
}

TEST_CASE("the live map accounts at least one byte per block") {
  Cbt cbt(1000 * kBlock, kBlock);
  CHECK(cbt.memory_bytes() >= 1000);
  CHECK(cbt.memory_bytes() < 1000 + (64 << 10));
}

TEST_CASE("concurrent marks and reads of the live map are safe") {
  Cbt cbt(256 * kBlock, kBlock);
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&cbt, t] {
      for (int i = 0; i < 2000; ++i) {
        cbt.mark_dirty(static_cast<uint64_t>((i * 7 + t * 13) % 256) * kBlock, 100);
        if (i % 100 == 0) (void)cbt.snapshot_of_live_map();
      }
    });
  }
  for (auto& thread : threads) thread.join();
  const auto frozen = cbt.freeze("s");
  std::set<uint64_t> changed;
  for (const Range& range : all_changed(*frozen, 0))
    for (uint64_t b = range.offset / kBlock; b < (range.offset + range.length) / kBlock; ++b) changed.insert(b);
  CHECK(changed.size() == 256);
}
