// SPDX-License-Identifier: BSD-3-Clause
// take_alloc_faults_test.cpp — control calls with an allocation failing at each of their steps in turn: a
// take of several origins takes every origin or none and never leaves a CBT checkpoint that says less
// changed than did; no call leaves its snapshot, origin or storage path busy for good.
#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include <doctest/doctest.h>

#include <new>
#include <string>
#include <vector>

#include "../test_support.h"
#include "control.h"
#include "failing_allocator.h"

using namespace nbdsnap;
using namespace nbdsnap::test;

namespace {

struct OriginCbt {
  Uuid generation;
  Checkpoints checkpoints;
  std::vector<Range> changed_since_s;
};

// The outcome of one call with its allocation number `step` failing.
struct Attempt {
  Status status;
  bool threw = false;   // std::bad_alloc came out of the call
  bool failed = false;  // the allocation was reached (else the call ran without a failure)
};

template <typename Call>
Attempt attempt_failing_at(uint64_t step, Call call) {
  Attempt out;
  fail_allocation_after(step);
  try {
    out.status = call();
  } catch (const std::bad_alloc&) {
    out.threw = true;
  }
  out.failed = disarm_allocation_failure();
  return out;
}

// Calls `call` with its allocation 0, 1, 2, ... failing, until one runs without a failure; after each, calls
// `after(attempt)`. Returns how many attempts had a failure.
template <typename Call, typename After>
uint64_t sweep_allocation_failures(Call call, After after) {
  uint64_t failures = 0;
  for (uint64_t step = 0;; ++step) {
    REQUIRE_MESSAGE(step < 100000, "the call never got through without an allocation failing");
    const Attempt attempt = attempt_failing_at(step, call);
    CAPTURE(step);
    CAPTURE(attempt.threw);
    CAPTURE(attempt.status.to_string());
    if (attempt.failed) ++failures;
    after(attempt);
    if (!attempt.failed) return failures;
  }
}

// A call that found its object reserved by an earlier call that failed half-way.
bool stuck_busy(const Status& status) {
  return status.code() == Errc::busy;
}

OriginCbt cbt_of(Engine& engine, const std::string& origin) {
  OriginCbt out;
  Cbt& cbt = OriginTestAccess::cbt(*engine.find_origin(origin));
  out.generation = cbt.generation();
  out.checkpoints = cbt.checkpoints();
  REQUIRE_OK(engine.cbt_map(origin, "s", out.changed_since_s));
  return out;
}

}  // namespace

// A checkpoint is named after its snapshot and replaces an older one of that name. Had a take that failed
// recorded the new checkpoint at some origins, an agent whose last backup was made at the older "s" would ask
// what changed since "s" and be told: only what changed since the failed take.
TEST_CASE(
    "a take that runs out of memory at any step takes every origin or none, and keeps the checkpoints") {
  TempDir dir;
  Engine engine(small_config());
  const std::vector<std::string> names = {"a", "b", "c"};
  for (const std::string& name : names) attach_memory_origin(engine, name, MiB);
  // A first "s", backed up from (its checkpoint is what agents hold), then gone; then writes after it.
  REQUIRE_OK(engine.create_snapshot("s", snapshot_options(names, dir, "diff-1", 4 * MiB)));
  REQUIRE_OK(engine.take_snapshot("s"));
  REQUIRE_OK(engine.destroy_snapshot("s"));
  const auto data = pattern(4096, 0, 2);
  for (const std::string& name : names)
    REQUIRE_OK(engine.find_origin(name)->write(data.data(), 4096, 0, false));
  std::vector<OriginCbt> before;
  for (const std::string& name : names) {
    before.push_back(cbt_of(engine, name));
    REQUIRE_FALSE(before.back().changed_since_s.empty());
  }
  // A new snapshot of the same name, as an agent makes one per backup.
  REQUIRE_OK(engine.create_snapshot("s", snapshot_options(names, dir, "diff-2", 4 * MiB)));

  uint64_t failed_steps = 0;
  for (uint64_t step = 0;; ++step) {
    REQUIRE_MESSAGE(step < 100000, "the take never got through without an allocation failing");
    Status result;
    bool threw = false;
    fail_allocation_after(step);
    try {
      result = engine.take_snapshot("s");
    } catch (const std::bad_alloc&) {
      threw = true;
    }
    const bool failed = disarm_allocation_failure();
    CAPTURE(step);
    CAPTURE(threw);
    CAPTURE(result.to_string());
    const SnapshotState state = snapshot_info_of(engine, "s").state;
    if (state == SnapshotState::taken) {
      // Taken (the failure, if any, came after the take was complete): every origin's checkpoint is new.
      for (size_t i = 0; i < names.size(); ++i) {
        const OriginCbt after = cbt_of(engine, names[i]);
        CHECK(after.generation == before[i].generation);
        CHECK(after.checkpoints.at("s").number != before[i].checkpoints.at("s").number);
        CHECK(after.changed_since_s.empty());
      }
      if (!failed) CHECK_OK(result);
      break;
    }
    // Not taken: an error (or the exception), and no origin's CBT changed.
    REQUIRE(failed);
    ++failed_steps;
    CHECK((threw || result.code() == Errc::no_memory));
    CHECK(state == SnapshotState::created);
    for (const std::string& name : names)
      CHECK_FALSE(OriginTestAccess::copies_on_write(*engine.find_origin(name)));
    for (size_t i = 0; i < names.size(); ++i) {
      const OriginCbt after = cbt_of(engine, names[i]);
      CHECK(after.generation == before[i].generation);
      CHECK(after.checkpoints == before[i].checkpoints);
      CHECK(after.changed_since_s == before[i].changed_since_s);
    }
  }
  for (const std::string& name : names) CHECK(OriginTestAccess::copies_on_write(*engine.find_origin(name)));
  // The sweep reached the freezes: a take of three origins allocates more than a handful of times.
  CHECK(failed_steps > 10);
}

// Each call that reserves what it works on while it runs (the engine's registries of calls in progress) gives
// it back however it ends: a call that ran out of memory half-way and left its entry would make every later
// call on that snapshot, origin or storage path answer busy ("try again once ... has returned") for good.
TEST_CASE("a control call that runs out of memory at any step leaves nothing busy") {
  TempDir dir;
  Engine engine(small_config());
  attach_memory_origin(engine, "a", MiB);
  attach_memory_origin(engine, "b", MiB);

  SUBCASE("cbt reset") {
    const uint64_t failures = sweep_allocation_failures(
        [&] { return engine.cbt_reset("a"); }, [&](const Attempt&) { CHECK_OK(engine.cbt_reset("a")); });
    CHECK(failures > 0);
  }
  SUBCASE("detach") {
    const uint64_t failures = sweep_allocation_failures(
        [&] { return engine.detach_origin("a", false); },
        [&](const Attempt& attempt) {
          if (attempt.failed) {
            const Status again = engine.detach_origin("a", false);
            CHECK_MESSAGE((again.is_ok() || again.code() == Errc::not_found), again.to_string());
          }
          CHECK(engine.find_origin("a") == nullptr);
          attach_memory_origin(engine, "a", MiB);
        });
    CHECK(failures > 0);
  }
  SUBCASE("create, then destroy") {
    const auto options = snapshot_options({"a", "b"}, dir, "diff", 4 * MiB);
    const uint64_t failures = sweep_allocation_failures(
        [&] { return engine.create_snapshot("t", options); },
        [&](const Attempt& attempt) {
          if (attempt.failed) {
            const Status again = engine.create_snapshot("t", options);
            // already_exists: the create was done when the allocation failed (its reply was lost).
            REQUIRE_MESSAGE((again.is_ok() || again.code() == Errc::already_exists), again.to_string());
          }
          REQUIRE_OK(engine.destroy_snapshot("t"));
          CHECK_FALSE(std::filesystem::exists(dir.file("diff")));
        });
    CHECK(failures > 0);
  }
  SUBCASE("append") {
    uint64_t round = 0;
    REQUIRE_OK(engine.create_snapshot("t", snapshot_options({"a"}, dir, "diff", 4 * MiB)));
    const uint64_t failures = sweep_allocation_failures(
        [&] {
          return engine.append_storage("t", {dir.file("more-" + std::to_string(round)), 4 * MiB});
        },
        [&](const Attempt& attempt) {
          const std::string path = dir.file("more-" + std::to_string(round));
          if (attempt.failed) {
            const Status again = engine.append_storage("t", {path, 4 * MiB});
            CHECK_FALSE_MESSAGE(stuck_busy(again), again.to_string());
          }
          // The snapshot can go, and its name is free again.
          REQUIRE_OK(engine.destroy_snapshot("t"));
          CHECK_FALSE(std::filesystem::exists(path));
          REQUIRE_OK(engine.create_snapshot("t", snapshot_options({"a"}, dir, "diff", 4 * MiB)));
          ++round;
        });
    CHECK(failures > 0);
  }
  SUBCASE("destroy of a taken snapshot") {
    REQUIRE_OK(engine.create_snapshot("t", snapshot_options({"a", "b"}, dir, "diff", 4 * MiB)));
    REQUIRE_OK(engine.take_snapshot("t"));
    const uint64_t failures = sweep_allocation_failures(
        [&] { return engine.destroy_snapshot("t"); },
        [&](const Attempt& attempt) {
          if (attempt.failed) {
            const Status again = engine.destroy_snapshot("t");
            CHECK_MESSAGE((again.is_ok() || again.code() == Errc::not_found), again.to_string());
          }
          // Gone: its storage removed, its origins no longer copying, its name free.
          CHECK_FALSE(std::filesystem::exists(dir.file("diff")));
          for (const char* origin : {"a", "b"}) {
            CHECK_FALSE(OriginTestAccess::copies_on_write(*engine.find_origin(origin)));
          }
          REQUIRE_OK(engine.create_snapshot("t", snapshot_options({"a", "b"}, dir, "diff", 4 * MiB)));
          REQUIRE_OK(engine.take_snapshot("t"));
        });
    CHECK(failures > 0);
  }
}

// Through the control socket's handler: an allocation failure is no_memory, never taken for a bad request
// (an agent would give up a good request), and the next request works.
TEST_CASE("a control request that runs out of memory is answered no_memory") {
  TempDir dir;
  Engine engine(small_config());
  attach_memory_origin(engine, "a", MiB);
  struct FrontEnd final : ControlFrontEnd {
    std::string front_end_name() const override { return "nbdsnapd"; }
    std::string export_uri(const std::string&) const override { return ""; }
  } front_end;
  Control control(engine, front_end);
  const nlohmann::json create = {
      {"command", "snapshot-create"},
      {"name", "s"},
      {"origins", nlohmann::json::array({"a"})},
      {"storage", nlohmann::json::array({{{"path", dir.file("diff")}, {"size", 4 * MiB}}})}};
  REQUIRE(control.handle(create).value("ok", false));
  const nlohmann::json take = {{"command", "snapshot-take"}, {"name", "s"}};
  uint64_t failures = 0;
  for (uint64_t step = 0;; ++step) {
    REQUIRE(step < 100000);
    fail_allocation_after(step);
    const nlohmann::json reply = control.handle(take);
    const bool failed = disarm_allocation_failure();
    CAPTURE(step);
    CAPTURE(reply.dump());
    if (!failed) {
      CHECK(reply.value("ok", false));
      break;
    }
    ++failures;
    if (reply.value("ok", false)) break;  // taken; only making the reply's extras failed
    CHECK(reply["error"]["code"] == "no_memory");
    if (snapshot_info_of(engine, "s").state == SnapshotState::taken) break;  // done, its reply was lost
  }
  CHECK(failures > 0);
}
