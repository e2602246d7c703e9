// SPDX-License-Identifier: BSD-3-Clause
// control_destroy_clients_test.cpp — snapshot-destroy while clients read its images: refused with busy naming
// each image's client count, unless "force"; clients that disconnect within the grace period are waited for.
#include <doctest/doctest.h>

#include <atomic>
#include <chrono>
#include <thread>

#include "control.h"
#include "test_support.h"

using namespace nbdsnap;
using namespace nbdsnap::test;
using json = nlohmann::json;

namespace {

// A front end whose images have as many clients as the test says.
class CountingFrontEnd final : public ControlFrontEnd {
 public:
  std::string front_end_name() const override { return "nbdsnapd"; }
  std::string export_uri(const std::string&) const override { return ""; }
  unsigned client_count(const std::string& export_name) const override {
    if (export_name == "disk0@s") return disk0_image_clients.load();
    return export_name == "disk1@s" ? disk1_image_clients.load() : 0;
  }
  std::atomic<unsigned> disk0_image_clients{0};
  std::atomic<unsigned> disk1_image_clients{0};
};

struct DestroyFixture {
  DestroyFixture() : engine(small_config(16)), control(engine, front_end) {
    attach_memory_origin(engine, "disk0", 4 * MiB);
    attach_memory_origin(engine, "disk1", 4 * MiB);
    REQUIRE_OK(engine.create_snapshot("s", snapshot_options({"disk0", "disk1"}, dir, "s.diff", 4 * MiB)));
    REQUIRE_OK(engine.take_snapshot("s"));
  }
  TempDir dir;
  Engine engine;
  CountingFrontEnd front_end;
  Control control;
};

}  // namespace

TEST_CASE("destroy_is_refused_with_busy_naming_the_clients_of_each_image_unless_forced") {
  DestroyFixture f;
  f.front_end.disk0_image_clients = 1;
  f.front_end.disk1_image_clients = 2;
  const json refused = f.control.handle({{"command", "snapshot-destroy"}, {"name", "s"}});
  REQUIRE(refused["ok"] == false);
  CHECK(refused["error"]["code"] == "busy");
  CHECK(refused["error"]["message"] ==
        "snapshot 's' has image clients (disk0@s: 1 client, disk1@s: 2 clients): disconnect them, or destroy "
        "with force (their reads then fail)");
  SnapshotInfo info;
  CHECK(f.engine.snapshot_info("s", info));  // nothing changed
  const json forced = f.control.handle({{"command", "snapshot-destroy"}, {"name", "s"}, {"force", true}});
  CHECK(forced["ok"] == true);
  CHECK(f.engine.snapshot_info("s", info).code() == Errc::not_found);
}

TEST_CASE("destroy_waits_briefly_for_image_clients_that_are_disconnecting") {
  DestroyFixture f;
  f.front_end.disk0_image_clients = 1;
  std::thread closing([&f] {
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    f.front_end.disk0_image_clients = 0;
  });
  const json reply = f.control.handle({{"command", "snapshot-destroy"}, {"name", "s"}});
  closing.join();
  CHECK(reply["ok"] == true);
}

TEST_CASE("destroy_of_a_snapshot_not_taken_or_unknown_does_not_ask_for_clients") {
  DestroyFixture f;
  f.front_end.disk0_image_clients = 3;  // (an untaken snapshot has no images: counts are not asked)
  REQUIRE_OK(f.engine.attach_origin("disk2", std::make_shared<MemoryDevice>(4 * MiB), false));
  REQUIRE_OK(f.engine.create_snapshot("c", snapshot_options({"disk2"}, f.dir, "c.diff", 4 * MiB)));
  CHECK(f.control.handle({{"command", "snapshot-destroy"}, {"name", "c"}})["ok"] == true);
  const json unknown = f.control.handle({{"command", "snapshot-destroy"}, {"name", "nosuch"}});
  CHECK(unknown["error"]["code"] == "not_found");
  CHECK(
      f.control.handle({{"command", "snapshot-destroy"}, {"name", "s"}, {"force", "yes"}})["error"]["code"] ==
      "invalid_argument");
}
