// SPDX-License-Identifier: BSD-3-Clause
// cbt_test.cpp — change numbers across takes, checkpoints (kept count, delete, take times), compaction at the
// wrap, changed ranges and raw numbers with their pages, reset.
#include "cbt.h"

#include <doctest/doctest.h>

#include <random>
#include <set>
#include <thread>

#include "test_support.h"

using namespace nbdsnap;

namespace {

constexpr uint64_t kBlock = 64 << 10;

std::vector<Range> all_changed(const CbtFrozen& frozen, uint8_t since) {
  return frozen.changed_ranges(since, 0, frozen.device_size);
}

// Checkpoint name -> number, without take times.
std::map<std::string, uint8_t> numbers(const Checkpoints& checkpoints) {
  std::map<std::string, uint8_t> out;
  for (const auto& [name, checkpoint] : checkpoints) out[name] = checkpoint.number;
  return out;
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
  cbt.mark_dirty(kBlock - 1, 2);         // last byte of block 0, first of block 1
  cbt.mark_dirty(5 * kBlock + 100, 10);  // inside block 5
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
  CHECK(numbers(first->checkpoints) == std::map<std::string, uint8_t>{{"s1", 1}});
  CHECK(cbt.current_number() == 2);

  cbt.mark_dirty(2 * kBlock, kBlock);
  const auto second = cbt.freeze("s2");
  CHECK(second->number == 2);
  CHECK(second->map[0] == 1);
  CHECK(second->map[2] == 2);
  CHECK(numbers(second->checkpoints) == std::map<std::string, uint8_t>{{"s1", 1}, {"s2", 2}});
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
  CHECK(numbers(c->checkpoints) == std::map<std::string, uint8_t>{{"a", 1}, {"b", 2}, {"c", 3}});
  CHECK(cbt.checkpoints() == c->checkpoints);
}

TEST_CASE("the 255th take compacts the live map instead of starting a new generation") {
  Cbt cbt(4 * kBlock, kBlock, 3);
  const Uuid generation = cbt.generation();
  std::shared_ptr<const CbtFrozen> last;
  for (int i = 1; i <= 254; ++i) {
    cbt.mark_dirty(0, 1);
    last = cbt.freeze("s" + std::to_string(i));
    REQUIRE(last->number == i);
  }
  CHECK(cbt.current_number() == 255);
  cbt.mark_dirty(kBlock, 1);  // block 1 changed after s254
  last = cbt.freeze("s255");
  CHECK(last->number == 255);
  CHECK(last->map[1] == 255);
  CHECK(numbers(last->checkpoints) ==
        std::map<std::string, uint8_t>{{"s253", 253}, {"s254", 254}, {"s255", 255}});
  // The live map: s253 -> 1, s254 -> 2, s255 -> 3, the next number 4; block 0 (written before s254) -> 2,
  // block 1 (written before s255) -> 3, blocks never written stay 0.
  CHECK(cbt.generation() == generation);
  CHECK(cbt.current_number() == 4);
  CHECK(numbers(cbt.checkpoints()) == std::map<std::string, uint8_t>{{"s253", 1}, {"s254", 2}, {"s255", 3}});
  const auto live = cbt.snapshot_of_live_map();
  CHECK(live->map == std::vector<uint8_t>{2, 3, 0, 0});
  CHECK(all_changed(*live, 1) == std::vector<Range>{{0, 2 * kBlock}});   // since s253: blocks 0 and 1
  CHECK(all_changed(*live, 2) == std::vector<Range>{{kBlock, kBlock}});  // since s254: block 1
  CHECK(all_changed(*live, 3).empty());                                  // since s255: nothing yet
  cbt.mark_dirty(3 * kBlock, 1);
  const auto next = cbt.freeze("s256");
  CHECK(next->number == 4);
  CHECK(next->generation == generation);
  CHECK(all_changed(*next, 3) == std::vector<Range>{{3 * kBlock, kBlock}});
}

TEST_CASE("freeze records the take time of its checkpoint") {
  Cbt cbt(4 * kBlock, kBlock);
  const auto frozen = cbt.freeze("s1", 1764160000123);
  CHECK(frozen->checkpoints.at("s1") == Checkpoint{1, 1764160000123});
  CHECK(cbt.checkpoints().at("s1").taken_unix_ms == 1764160000123);
}

TEST_CASE("only the newest checkpoints are kept and a dropped one is checkpoint_gone") {
  Cbt cbt(4 * kBlock, kBlock, 2);
  const Uuid generation = cbt.generation();
  cbt.freeze("a");
  cbt.freeze("b");
  const auto c = cbt.freeze("c");
  CHECK(numbers(c->checkpoints) == std::map<std::string, uint8_t>{{"b", 2}, {"c", 3}});
  CHECK(numbers(cbt.checkpoints()) == numbers(c->checkpoints));
  CHECK(cbt.generation() == generation);
  CHECK(cbt.current_number() == 4);
  uint8_t number = 0;
  CHECK_ERRC(cbt.checkpoint_number("a", number), Errc::checkpoint_gone);
  Checkpoint checkpoint;
  const Status gone = c->view().find_checkpoint("a", checkpoint);
  CHECK(gone.code() == Errc::checkpoint_gone);
  CHECK(gone.message() == "checkpoint 'a' is gone: only the 2 newest checkpoints are kept; do a full backup");
  CHECK_ERRC(c->view().find_checkpoint("never", checkpoint), Errc::not_found);
}

TEST_CASE("the checkpoints kept are bounded") {
  CHECK_OK(check_checkpoints_kept(kMinCheckpointsKept));
  CHECK_OK(check_checkpoints_kept(kDefaultCheckpointsKept));
  CHECK_OK(check_checkpoints_kept(kMaxCheckpointsKept));
  CHECK_ERRC(check_checkpoints_kept(1), Errc::invalid_argument);
  CHECK_ERRC(check_checkpoints_kept(129), Errc::invalid_argument);
  CHECK(check_checkpoints_kept(0).message() == "must be 2..128 checkpoints (default 16)");
}

TEST_CASE("a deleted checkpoint is checkpoint_gone and the others keep their meaning") {
  Cbt cbt(4 * kBlock, kBlock);
  cbt.mark_dirty(0, 1);
  cbt.freeze("a");
  cbt.mark_dirty(kBlock, 1);
  cbt.freeze("b");
  cbt.mark_dirty(2 * kBlock, 1);
  CHECK_OK(cbt.delete_checkpoint("b"));
  uint8_t number = 0;
  CHECK_ERRC(cbt.checkpoint_number("b", number), Errc::checkpoint_gone);
  CHECK_ERRC(cbt.delete_checkpoint("b"), Errc::checkpoint_gone);
  CHECK_ERRC(cbt.delete_checkpoint("never"), Errc::not_found);
  CHECK(numbers(cbt.checkpoints()) == std::map<std::string, uint8_t>{{"a", 1}});
  CHECK(all_changed(*cbt.snapshot_of_live_map(), 1) == std::vector<Range>{{kBlock, 2 * kBlock}});
  // Taking a snapshot of the same name again brings the checkpoint back with its new meaning.
  cbt.freeze("b");
  CHECK_OK(cbt.checkpoint_number("b", number));
  CHECK(number == 3);
}

TEST_CASE("a new generation remembers the old checkpoints as gone") {
  Cbt cbt(4 * kBlock, kBlock);
  cbt.freeze("s1");
  const Uuid old_generation = cbt.generation();
  cbt.reset();
  uint8_t number = 0;
  const Status gone = cbt.checkpoint_number("s1", number);
  CHECK(gone.code() == Errc::checkpoint_gone);
  CHECK(gone.message().find("generation " + old_generation.to_string() + " ended") != std::string::npos);
}

TEST_CASE("dropped checkpoints are remembered up to a bound") {
  Cbt cbt(4 * kBlock, kBlock, 2);
  const size_t takes = kDroppedCheckpointsRemembered + 10;
  for (size_t i = 0; i < takes; ++i) cbt.freeze("s" + std::to_string(i));
  uint8_t number = 0;
  CHECK_ERRC(cbt.checkpoint_number("s0", number), Errc::not_found);  // forgotten
  CHECK_ERRC(cbt.checkpoint_number("s" + std::to_string(takes - 3), number), Errc::checkpoint_gone);
  CHECK(cbt.state().dropped.size() == kDroppedCheckpointsRemembered);
}

TEST_CASE("a resumed cbt drops checkpoints beyond a lowered limit") {
  Cbt cbt(4 * kBlock, kBlock, 5);
  for (int i = 1; i <= 5; ++i) cbt.freeze("s" + std::to_string(i), i);
  Cbt resumed(cbt.state(), 3);
  CHECK(numbers(resumed.checkpoints()) == std::map<std::string, uint8_t>{{"s3", 3}, {"s4", 4}, {"s5", 5}});
  CHECK(resumed.checkpoints().at("s4").taken_unix_ms == 4);
  uint8_t number = 0;
  CHECK_ERRC(resumed.checkpoint_number("s1", number), Errc::checkpoint_gone);
  CHECK(resumed.generation() == cbt.generation());
}

namespace {

// The model of incremental forever: random writes between takes (and some checkpoint deletes); after every
// take, for every checkpoint still kept, the blocks changed after it — in the live map and in the frozen map
// of the take — are exactly the union of the blocks written after it. The generation never changes.
void check_incremental_forever(unsigned kept, int takes, uint32_t seed) {
  constexpr uint64_t kBlocks = 48;
  std::mt19937 random(seed);
  Cbt cbt(kBlocks * kBlock - 100, kBlock, kept);  // a partial last block too
  const Uuid generation = cbt.generation();
  // [b]: the last take t such that block b was written between take t-1 and take t; -1: never. A block has
  // changed since take t exactly when its entry is greater than t (one pass over the blocks, where a union
  // of the writes between every later take cost O(takes) per checkpoint: minutes under the sanitizers).
  std::vector<int> last_written_before(kBlocks, -1);
  std::map<std::string, int> take_of;  // checkpoint name -> take index
  std::set<uint64_t> ever;
  auto changed_blocks = [](const CbtFrozen& map, uint8_t since) {
    std::set<uint64_t> blocks;
    for (const Range& r : all_changed(map, since)) {
      for (uint64_t b = r.offset / kBlock; b * kBlock < r.offset + r.length; ++b) blocks.insert(b);
    }
    return blocks;
  };
  auto expected_since = [&](int take, const std::set<uint64_t>& pending) {
    std::set<uint64_t> blocks = pending;
    for (uint64_t b = 0; b < kBlocks; ++b) {
      if (last_written_before[b] > take) blocks.insert(b);
    }
    return blocks;
  };
  for (int take = 0; take < takes; ++take) {
    std::set<uint64_t> pending;
    for (int w = static_cast<int>(random() % 4); w > 0; --w) {
      const uint64_t block = random() % kBlocks, count = 1 + random() % 3;
      cbt.mark_dirty(block * kBlock, count * kBlock);
      for (uint64_t b = block; b < std::min(kBlocks, block + count); ++b) pending.insert(b);
    }
    ever.insert(pending.begin(), pending.end());
    if (random() % 10 == 0 &&
        take_of.size() > 2) {  // delete a checkpoint that is neither the newest nor oldest
      auto victim = std::next(take_of.begin(), static_cast<ptrdiff_t>(random() % take_of.size()));
      if (cbt.delete_checkpoint(victim->first)) take_of.erase(victim);
    }
    // Before the take, the live map since each kept checkpoint includes the pending writes.
    const auto live = cbt.snapshot_of_live_map();
    for (const auto& [name, t] : take_of) {
      REQUIRE(changed_blocks(*live, live->checkpoints.at(name).number) == expected_since(t, pending));
    }
    const std::string name = "c" + std::to_string(take);
    const auto frozen = cbt.freeze(name);
    for (uint64_t b : pending) last_written_before[b] = take;
    take_of[name] = take;
    // The kept checkpoints are the newest `kept` of those not deleted.
    while (take_of.size() > kept) {
      auto oldest = std::min_element(take_of.begin(), take_of.end(),
                                     [](const auto& a, const auto& b) { return a.second < b.second; });
      take_of.erase(oldest);
    }
    REQUIRE(frozen->checkpoints.size() == take_of.size());
    REQUIRE(cbt.generation() == generation);
    REQUIRE(frozen->generation == generation);
    for (const auto& [cp, t] : take_of) {
      REQUIRE(frozen->checkpoints.count(cp) == 1);
      REQUIRE(changed_blocks(*frozen, frozen->checkpoints.at(cp).number) == expected_since(t, {}));
    }
    REQUIRE(changed_blocks(*frozen, 0) == ever);  // 0 still means "changed in this generation"
  }
}

}  // namespace

TEST_CASE("incremental forever: compaction keeps every kept checkpoint's meaning") {
  for (const unsigned kept : {2u, 5u, kDefaultCheckpointsKept, kMaxCheckpointsKept}) {
    CAPTURE(kept);
    check_incremental_forever(kept, 1000, 1234 + kept);
  }
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
  CHECK_ERRC(cbt.checkpoint_number("s1", number), Errc::checkpoint_gone);
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
  CHECK(numbers(state.checkpoints) == std::map<std::string, uint8_t>{{"s1", 1}});

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
    for (uint64_t b = range.offset / kBlock; b < (range.offset + range.length) / kBlock; ++b)
      changed.insert(b);
  CHECK(changed.size() == 256);
}

TEST_CASE("changed ranges come in pages that start where the last one stopped") {
  Cbt cbt(16 * kBlock, kBlock);
  for (uint64_t b : {1, 2, 5, 9, 10, 11, 15}) cbt.mark_dirty(b * kBlock, 1);
  const auto frozen = cbt.freeze("s");
  const CbtView view = frozen->view();
  CbtRangesPage page = view.changed_ranges(0, 0, UINT64_MAX, 2);
  CHECK(page.ranges == std::vector<Range>{{kBlock, 2 * kBlock}, {5 * kBlock, kBlock}});
  CHECK(page.more);
  CHECK(page.next_offset == 9 * kBlock);  // the first range not in this page
  page = view.changed_ranges(0, page.next_offset, UINT64_MAX, 2);
  CHECK(page.ranges == std::vector<Range>{{9 * kBlock, 3 * kBlock}, {15 * kBlock, kBlock}});
  CHECK_FALSE(page.more);
  CHECK(page.next_offset == 16 * kBlock);
  // A window: clipped to it, and complete.
  page = view.changed_ranges(0, 2 * kBlock + 10, 6 * kBlock, 2);
  CHECK(page.ranges == std::vector<Range>{{2 * kBlock + 10, kBlock - 10}, {5 * kBlock, kBlock}});
  CHECK_FALSE(page.more);
  CHECK(page.next_offset == 8 * kBlock + 10);
  // At the device end: an empty last page.
  page = view.changed_ranges(0, 16 * kBlock, UINT64_MAX, 2);
  CHECK(page.ranges.empty());
  CHECK_FALSE(page.more);
  CHECK(page.next_offset == 16 * kBlock);
}

TEST_CASE("raw change numbers come as runs over whole blocks, in pages") {
  Cbt cbt(10 * kBlock + 512, kBlock);      // 11 blocks, the last partial
  cbt.mark_dirty(2 * kBlock, 2 * kBlock);  // 1
  cbt.freeze("a");
  cbt.mark_dirty(3 * kBlock, kBlock);  // 2
  cbt.mark_dirty(10 * kBlock, 1);
  const auto frozen = cbt.freeze("b");
  REQUIRE(frozen->map == std::vector<uint8_t>{0, 0, 1, 2, 0, 0, 0, 0, 0, 0, 2});
  const CbtView view = frozen->view();
  CbtRunsPage page = view.number_runs(0, UINT64_MAX, 100);
  using Runs = std::vector<std::pair<uint8_t, uint64_t>>;
  CHECK(page.runs == Runs{{0, 2}, {1, 1}, {2, 1}, {0, 6}, {2, 1}});
  CHECK(page.offset == 0);
  CHECK(page.length == 10 * kBlock + 512);
  CHECK_FALSE(page.more);
  CHECK(page.next_offset == 10 * kBlock + 512);
  // Unaligned requests widen to the blocks they touch.
  page = view.number_runs(2 * kBlock + 7, kBlock, 100);
  CHECK(page.offset == 2 * kBlock);
  CHECK(page.length == 2 * kBlock);
  CHECK(page.runs == Runs{{1, 1}, {2, 1}});
  // Pages of two runs, each starting at the previous page's next_offset, add up to the whole map.
  Runs all;
  uint64_t offset = 0, pages = 0;
  for (bool more = true; more; ++pages) {
    page = view.number_runs(offset, UINT64_MAX, 2);
    CHECK(page.offset == offset);
    all.insert(all.end(), page.runs.begin(), page.runs.end());
    offset = page.next_offset;
    more = page.more;
  }
  CHECK(pages == 3);
  CHECK(all == Runs{{0, 2}, {1, 1}, {2, 1}, {0, 6}, {2, 1}});
  // The live map reads the same way, under its lock.
  const Runs live = cbt.visit_live([](const CbtView& v) { return v.number_runs(0, UINT64_MAX, 100).runs; });
  CHECK(live == all);
  // Nothing is left at the end of the device.
  page = view.number_runs(10 * kBlock + 512, UINT64_MAX, 2);
  CHECK(page.runs.empty());
  CHECK(page.length == 0);
  CHECK_FALSE(page.more);
}

TEST_CASE("state keeps take times and dropped checkpoints") {
  Cbt cbt(4 * kBlock, kBlock, 2);
  cbt.freeze("a", 100);
  cbt.freeze("b", 200);
  cbt.freeze("c", 300);
  const CbtState state = cbt.state();
  CHECK(state.checkpoints.at("b") == Checkpoint{2, 200});
  REQUIRE(state.dropped.size() == 1);
  CHECK(state.dropped[0].name == "a");
  Cbt resumed(state, 2);
  CHECK(resumed.checkpoints() == cbt.checkpoints());
  uint8_t number = 0;
  CHECK_ERRC(resumed.checkpoint_number("a", number), Errc::checkpoint_gone);
}
