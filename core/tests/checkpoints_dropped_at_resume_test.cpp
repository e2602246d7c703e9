// SPDX-License-Identifier: BSD-3-Clause
// checkpoints_dropped_at_resume_test.cpp — lowering checkpoints-kept below the number of checkpoints saved
// drops the oldest at the next attach, and the origin_attached event names them (nbdsnapd logs it at info).
#include <doctest/doctest.h>

#include "cbt.h"
#include "engine.h"
#include "memory_device.h"
#include "test_support.h"

using namespace nbdsnap;
using namespace nbdsnap::test;

TEST_CASE("a_resumed_cbt_tells_which_checkpoints_a_lowered_limit_dropped") {
  Cbt cbt(4 * 4096, 4096, 5);
  for (int i = 1; i <= 5; ++i) cbt.freeze("s" + std::to_string(i), i);
  Cbt resumed(cbt.state(), 3);
  CHECK(resumed.checkpoints_dropped_at_resume() == std::vector<std::string>{"s1", "s2"});
  Cbt same(cbt.state(), 5);
  CHECK(same.checkpoints_dropped_at_resume().empty());
}

TEST_CASE("attaching_an_origin_whose_saved_checkpoints_exceed_checkpoints_kept_names_the_dropped_ones") {
  TempDir state;
  TempDir dir;
  EngineConfig config = small_config();
  config.state_dir = state.path().string();
  config.checkpoints_kept = 4;
  auto device = std::make_shared<MemoryDevice>(4 * MiB);
  {
    Engine engine(config);
    REQUIRE_OK(engine.attach_origin("disk0", device, false));
    for (const char* name : {"mon", "tue", "wed", "thu"}) {
      REQUIRE_OK(engine.create_snapshot(name, snapshot_options({"disk0"}, dir, name, 4 * MiB)));
      REQUIRE_OK(engine.take_snapshot(name));
      REQUIRE_OK(engine.destroy_snapshot(name));
    }
    REQUIRE_OK(engine.save_state());
  }
  config.checkpoints_kept = 2;
  Engine engine(config);
  REQUIRE_OK(engine.attach_origin("disk0", device, false));
  const std::optional<Event> attached =
      wait_for_event(engine.events(), EventType::origin_attached, 0, std::chrono::milliseconds(0));
  REQUIRE(attached.has_value());
  CHECK(attached->reason.find(
            "; checkpoints dropped: mon, tue (checkpoints-kept is 2, fewer than were saved)") !=
        std::string::npos);
}
