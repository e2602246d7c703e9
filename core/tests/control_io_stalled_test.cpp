// SPDX-License-Identifier: BSD-3-Clause
// control_io_stalled_test.cpp — a forced detach, a create or append of storage, and a destroy's release of
// its storage, and an attach whose origin's file system stalls, each waiting for a stalled disk or file
// system, hold up only the calls that need the same origin, snapshot or storage (ARCHITECTURE.md invariant
// 5): those fail at once with busy naming what is going on, and every other control call goes on. Each of
// the four used to wait holding the engine's control lock.
#include <doctest/doctest.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <future>
#include <thread>

#include <nlohmann/json.hpp>

#include "control.h"
#include "engine.h"
#include "file_device.h"
#include "memory_device.h"
#include "stalling_device.h"
#include "test_support.h"

using namespace nbdsnap;
using namespace nbdsnap::test;
using namespace std::chrono_literals;

namespace control_io_stalled {

// The files the storage ledger lists (storage_ledger.h), sorted.
std::vector<std::string> ledger_files(const std::string& state_dir) {
  std::ifstream in(state_dir + "/storage-files.json");
  if (!in) return {};
  auto files = nlohmann::json::parse(in).at("files").get<std::vector<std::string>>();
  std::sort(files.begin(), files.end());
  return files;
}

bool listed(const std::vector<std::string>& files, const std::string& path) {
  return std::find(files.begin(), files.end(), path) != files.end();
}

EngineConfig config_with_state(const TempDir& dir) {
  EngineConfig config = small_config();
  config.state_dir = dir.file("state");
  std::filesystem::create_directories(config.state_dir);
  return config;
}

// Another snapshot's whole life, on an origin the stalled call does not touch.
template <typename Stalled>
void check_other_snapshot_goes_on(Engine& engine, Stalled& stall, const TempDir& dir,
                                  const std::string& origin) {
  CHECK_OK(within_five_seconds(stall, "create of another snapshot", [&] {
    return engine.create_snapshot("other", snapshot_options({origin}, dir, "other.diff", 1 << 20));
  }));
  CHECK_OK(
      within_five_seconds(stall, "take of another snapshot", [&] { return engine.take_snapshot("other"); }));
  CHECK_OK(within_five_seconds(stall, "destroy of another snapshot",
                               [&] { return engine.destroy_snapshot("other"); }));
}

void check_busy(const Status& status, const std::string& words) {
  CHECK_MESSAGE(status.code() == Errc::busy, status.to_string());
  CHECK_MESSAGE(status.message().find(words) != std::string::npos, status.to_string());
}

// A StallingDevice as a Stall for within_five_seconds().
struct DeviceAnswer {
  StallingDevice& device;
  void answer() { device.answer(); }
};

// A file origin whose content fingerprint (an fstat, core/file_device.cpp) waits at `stall`, as the fstat of
// a file on a hung NFS server does. Passes everything else to the file.
class StallingFingerprint final : public BlockDevice {
 public:
  StallingFingerprint(std::shared_ptr<BlockDevice> inner, std::shared_ptr<Stall> stall)
      : inner_(std::move(inner)), stall_(std::move(stall)) {}
  uint64_t size() const override { return inner_->size(); }
  Status pread(void* buf, uint64_t len, uint64_t offset) override { return inner_->pread(buf, len, offset); }
  Status pwrite(const void* buf, uint64_t len, uint64_t offset, bool fua) override {
    return inner_->pwrite(buf, len, offset, fua);
  }
  Status flush() override { return inner_->flush(); }
  std::string content_fingerprint() const override {
    stall_->pass();
    return inner_->content_fingerprint();
  }
  std::string file_identity() const override { return inner_->file_identity(); }

 private:
  std::shared_ptr<BlockDevice> inner_;
  std::shared_ptr<Stall> stall_;
};

}  // namespace control_io_stalled

using namespace control_io_stalled;

TEST_CASE("a forced detach waiting for a stalled write holds up only the calls that need its origin") {
  HangWatchdog watchdog("forced detach of an origin with a stalled write", 120s);
  TempDir dir;
  const EngineConfig config = config_with_state(dir);
  Engine engine(config);
  auto memory = std::make_shared<MemoryDevice>(4 * kChunk);
  fill_device(*memory, 1);
  auto stalling = std::make_shared<StallingDevice>(memory);
  REQUIRE_OK(engine.attach_origin("stalled", stalling, false));
  attach_memory_origin(engine, "healthy", 4 * kChunk);
  REQUIRE_OK(engine.create_snapshot("a", snapshot_options({"stalled"}, dir, "a.diff", 1 << 20)));
  REQUIRE_OK(engine.take_snapshot("a"));
  const std::string generation = origin_info_of(engine, "stalled").generation;

  // A write whose copy-on-write reads the old chunk from the stalled disk, then the detach that drains it.
  stalling->stall();
  auto origin = engine.find_origin("stalled");
  auto writer = std::async(std::launch::async, [&] {
    const std::vector<char> data(4096, 'w');
    return origin->write(data.data(), data.size(), 0, false);
  });
  REQUIRE(stalling->await_waiting_read());
  auto detach = std::async(std::launch::async, [&] { return engine.detach_origin("stalled", true); });
  std::this_thread::sleep_for(100ms);  // into its drain, where it waits for the write
  CHECK(detach.wait_for(0s) == std::future_status::timeout);

  DeviceAnswer answer{*stalling};
  check_other_snapshot_goes_on(engine, answer, dir, "healthy");
  // What needs the origin (or takes or destroys its snapshot) is refused at once, naming it.
  const std::string detaching = "origin 'stalled' is being detached";
  check_busy(
      within_five_seconds(answer, "second detach", [&] { return engine.detach_origin("stalled", true); }),
      detaching);
  check_busy(within_five_seconds(answer, "CBT reset", [&] { return engine.cbt_reset("stalled"); }),
             detaching);
  check_busy(
      within_five_seconds(
          answer, "create with the origin",
          [&] { return engine.create_snapshot("c", snapshot_options({"stalled"}, dir, "c.diff", 1 << 20)); }),
      detaching);
  check_busy(
      within_five_seconds(answer, "destroy of its snapshot", [&] { return engine.destroy_snapshot("a"); }),
      detaching);
  check_busy(within_five_seconds(answer, "attach of the name",
                                 [&] { return engine.attach_origin("stalled", memory, false); }),
             detaching);

  // The disk answers: the write and the detach finish, the CBT was saved cleanly (attached again, the origin
  // resumes its generation), and the snapshot lost its image but can be destroyed.
  stalling->answer();
  CHECK_OK(writer.get());
  CHECK_OK(detach.get());
  CHECK(engine.find_origin("stalled") == nullptr);
  CHECK(snapshot_info_of(engine, "a").origins.empty());
  CHECK_OK(engine.destroy_snapshot("a"));
  REQUIRE_OK(engine.attach_origin("stalled", stalling, false));
  CHECK(origin_info_of(engine, "stalled").generation == generation);
}

TEST_CASE("a create whose storage file stalls holds up only the calls that need its name, origins or file") {
  HangWatchdog watchdog("create of a snapshot on a stalled file system", 120s);
  TempDir dir;
  EngineConfig config = config_with_state(dir);
  auto stall = std::make_shared<Stall>();
  // Opening (created and sized) storage files passes here: as a create on a frozen file system, it waits.
  config.wrap_storage_device = [stall](std::shared_ptr<BlockDevice> device) {
    stall->pass();
    return device;
  };
  Engine engine(config);
  attach_memory_origin(engine, "o1", 4 * kChunk);
  attach_memory_origin(engine, "healthy", 4 * kChunk);

  stall->stall_next();
  auto create = std::async(std::launch::async, [&] {
    return engine.create_snapshot("slow", snapshot_options({"o1"}, dir, "slow.diff", 1 << 20));
  });
  REQUIRE(stall->await_waiting());

  check_other_snapshot_goes_on(engine, *stall, dir, "healthy");
  const std::string creating = "snapshot 'slow' is being created";
  check_busy(within_five_seconds(*stall, "create of the same name",
                                 [&] {
                                   return engine.create_snapshot(
                                       "slow", snapshot_options({"healthy"}, dir, "s2.diff", 1 << 20));
                                 }),
             creating);
  check_busy(
      within_five_seconds(
          *stall, "create with its origin",
          [&] { return engine.create_snapshot("c", snapshot_options({"o1"}, dir, "c.diff", 1 << 20)); }),
      creating);
  check_busy(within_five_seconds(*stall, "take", [&] { return engine.take_snapshot("slow"); }), creating);
  check_busy(within_five_seconds(*stall, "append",
                                 [&] {
                                   return engine.append_storage("slow", {dir.file("more.diff"), 1 << 20});
                                 }),
             creating);
  check_busy(within_five_seconds(*stall, "destroy", [&] { return engine.destroy_snapshot("slow"); }),
             creating);
  // Through the control socket too, forced or not (an unforced destroy first looks for image clients).
  struct NoClients final : ControlFrontEnd {
    std::string front_end_name() const override { return "nbdsnapd"; }
    std::string export_uri(const std::string&) const override { return ""; }
  } front_end;
  Control control(engine, front_end);
  for (const bool force : {false, true}) {
    nlohmann::json reply =
        control.handle({{"command", "snapshot-destroy"}, {"name", "slow"}, {"force", force}});
    INFO("force " << force << ": " << reply.dump());
    CHECK(reply["error"]["code"] == "busy");
    CHECK(reply["error"]["message"].get<std::string>().find(creating) != std::string::npos);
  }
  check_busy(within_five_seconds(*stall, "forced detach of its origin",
                                 [&] { return engine.detach_origin("o1", true); }),
             creating);
  // Its file is claimed: another create or an append naming it is busy at once. (Both used to race the
  // create for the new file's lock, and the loser's clean-up could remove the file the winner then used.)
  const std::string file_claimed =
      "storage " + dir.file("slow.diff") + " is being created for snapshot 'slow'";
  check_busy(within_five_seconds(*stall, "create with its file",
                                 [&] {
                                   return engine.create_snapshot(
                                       "d", snapshot_options({"healthy"}, dir, "slow.diff", 1 << 20));
                                 }),
             file_claimed);
  REQUIRE_OK(engine.create_snapshot("e", snapshot_options({"healthy"}, dir, "e.diff", 1 << 20)));
  check_busy(within_five_seconds(*stall, "append of its file",
                                 [&] {
                                   return engine.append_storage("e", {dir.file("slow.diff"), 1 << 20});
                                 }),
             file_claimed);
  CHECK_OK(engine.destroy_snapshot("e"));

  stall->answer();
  CHECK_OK(create.get());
  const SnapshotInfo info = snapshot_info_of(engine, "slow");
  REQUIRE(info.storage.size() == 1);
  CHECK(info.storage[0].path == dir.file("slow.diff"));
  CHECK(listed(ledger_files(config.state_dir), dir.file("slow.diff")));
  CHECK_OK(engine.take_snapshot("slow"));
  CHECK_OK(engine.destroy_snapshot("slow"));
  CHECK_FALSE(std::filesystem::exists(dir.file("slow.diff")));
  CHECK(ledger_files(config.state_dir).empty());
}

TEST_CASE("an append whose storage file stalls holds up only the calls that need its snapshot") {
  HangWatchdog watchdog("append of storage on a stalled file system", 120s);
  TempDir dir;
  EngineConfig config = config_with_state(dir);
  auto stall = std::make_shared<Stall>();
  config.wrap_storage_device = [stall](std::shared_ptr<BlockDevice> device) {
    stall->pass();
    return device;
  };
  Engine engine(config);
  attach_memory_origin(engine, "o1", 4 * kChunk);
  attach_memory_origin(engine, "healthy", 4 * kChunk);
  REQUIRE_OK(engine.create_snapshot("s", snapshot_options({"o1"}, dir, "s.diff", 1 << 20)));
  REQUIRE_OK(engine.take_snapshot("s"));

  stall->stall_next();
  auto append = std::async(std::launch::async, [&] {
    return engine.append_storage("s", {dir.file("more.diff"), 1 << 20});
  });
  REQUIRE(stall->await_waiting());

  check_other_snapshot_goes_on(engine, *stall, dir, "healthy");
  const std::string appending = "snapshot 's' is being appended storage";
  check_busy(within_five_seconds(*stall, "second append",
                                 [&] {
                                   return engine.append_storage("s", {dir.file("more2.diff"), 1 << 20});
                                 }),
             appending);
  check_busy(within_five_seconds(*stall, "destroy", [&] { return engine.destroy_snapshot("s"); }), appending);
  // A new member's chunks could be larger than the area being sized holds.
  check_busy(within_five_seconds(*stall, "add of an origin",
                                 [&] { return engine.add_origin_to_snapshot("s", "healthy"); }),
             appending);
  // The snapshot itself goes on: its image reads and copy-on-write do not see the area before it joins.
  CHECK(snapshot_info_of(engine, "s").storage.size() == 1);

  stall->answer();
  CHECK_OK(append.get());
  const SnapshotInfo info = snapshot_info_of(engine, "s");
  REQUIRE(info.storage.size() == 2);
  CHECK(info.storage[1].path == dir.file("more.diff"));
  CHECK(info.storage_total == 2u << 20);
  CHECK(listed(ledger_files(config.state_dir), dir.file("more.diff")));
  CHECK_OK(engine.destroy_snapshot("s"));
  CHECK_FALSE(std::filesystem::exists(dir.file("more.diff")));
  CHECK_FALSE(std::filesystem::exists(dir.file("s.diff")));
  CHECK(ledger_files(config.state_dir).empty());
}

TEST_CASE("a destroy whose storage release stalls holds up only the calls that need its storage") {
  HangWatchdog watchdog("destroy releasing storage on a stalled file system", 120s);
  TempDir dir;
  EngineConfig config = config_with_state(dir);
  auto stall = std::make_shared<Stall>();
  // Closing a storage file waits here: as the close and unlink of a file on a frozen file system.
  config.wrap_storage_device = [stall](std::shared_ptr<BlockDevice> device) -> std::shared_ptr<BlockDevice> {
    return std::make_shared<StallingClose>(std::move(device), stall);
  };
  Engine engine(config);
  attach_memory_origin(engine, "o1", 4 * kChunk);
  attach_memory_origin(engine, "healthy", 4 * kChunk);
  REQUIRE_OK(engine.create_snapshot("a", snapshot_options({"o1"}, dir, "a.diff", 1 << 20)));
  REQUIRE_OK(engine.take_snapshot("a"));
  auto origin = engine.find_origin("o1");
  const std::vector<char> data(4096, 'w');
  REQUIRE_OK(origin->write(data.data(), data.size(), 0, false));  // a chunk copied to the storage

  stall->stall_next();
  auto destroy = std::async(std::launch::async, [&] { return engine.destroy_snapshot("a"); });
  REQUIRE(stall->await_waiting());

  check_other_snapshot_goes_on(engine, *stall, dir, "healthy");
  const std::string destroying = "snapshot 'a' is being destroyed";
  check_busy(within_five_seconds(*stall, "create of the same name",
                                 [&] {
                                   return engine.create_snapshot(
                                       "a", snapshot_options({"healthy"}, dir, "a2.diff", 1 << 20));
                                 }),
             destroying);
  check_busy(
      within_five_seconds(
          *stall, "create with its origin",
          [&] { return engine.create_snapshot("c", snapshot_options({"o1"}, dir, "c.diff", 1 << 20)); }),
      destroying);
  // Its file is still in use until the release has ended.
  const Status reuse = within_five_seconds(*stall, "create with its file", [&] {
    return engine.create_snapshot("d", snapshot_options({"healthy"}, dir, "a.diff", 1 << 20));
  });
  CHECK_FALSE(reuse.is_ok());
  CHECK_MESSAGE(reuse.message().find("still releasing") != std::string::npos, reuse.to_string());
  CHECK(listed(ledger_files(config.state_dir), dir.file("a.diff")));

  stall->answer();
  CHECK_OK(destroy.get());
  CHECK_FALSE(std::filesystem::exists(dir.file("a.diff")));
  CHECK(ledger_files(config.state_dir).empty());
  CHECK(engine.snapshots().empty());
  // Everything is free again.
  CHECK_OK(engine.create_snapshot("a", snapshot_options({"o1"}, dir, "a.diff", 1 << 20)));
  CHECK_OK(engine.destroy_snapshot("a"));
}

TEST_CASE("an attach whose origin's file system stalls holds up only the calls that need its name or disk") {
  HangWatchdog watchdog("attach of an origin on a stalled file system", 120s);
  TempDir dir;
  const EngineConfig config = config_with_state(dir);
  Engine engine(config);
  attach_memory_origin(engine, "healthy", 4 * kChunk);
  {
    std::ofstream(dir.file("slow.raw")).close();
    std::filesystem::resize_file(dir.file("slow.raw"), 4 * kChunk);
  }
  std::unique_ptr<FileDevice> file;
  REQUIRE_OK(FileDevice::open(dir.file("slow.raw"), false, file));
  auto stall = std::make_shared<Stall>();
  auto slow = std::make_shared<StallingFingerprint>(std::shared_ptr<BlockDevice>(std::move(file)), stall);

  stall->stall_next();
  auto attach = std::async(std::launch::async, [&] { return engine.attach_origin("slow", slow, false); });
  REQUIRE(stall->await_waiting());

  check_other_snapshot_goes_on(engine, *stall, dir, "healthy");
  CHECK_OK(within_five_seconds(*stall, "detach of another origin",
                               [&] { return engine.detach_origin("healthy", false); }));
  const std::string attaching = "origin 'slow' is being attached";
  check_busy(within_five_seconds(
                 *stall, "attach of the same name",
                 [&] { return engine.attach_origin("slow", std::make_shared<MemoryDevice>(kChunk), false); }),
             attaching);
  check_busy(within_five_seconds(*stall, "front end's check of the name",
                                 [&] { return engine.check_origin_unused("slow", ""); }),
             attaching);
  // Its disk is claimed: another origin on the same file is refused, naming the attach.
  const Status same_disk = within_five_seconds(*stall, "attach of its file under another name", [&] {
    return engine.check_origin_unused("other", slow->file_identity());
  });
  CHECK(same_disk.code() == Errc::already_exists);
  CHECK_MESSAGE(same_disk.message().find("origin 'slow' (being attached)") != std::string::npos,
                same_disk.to_string());
  CHECK(engine.find_origin("slow") == nullptr);

  stall->answer();
  CHECK_OK(attach.get());
  REQUIRE(engine.find_origin("slow") != nullptr);
  REQUIRE_OK(engine.create_snapshot("s", snapshot_options({"slow"}, dir, "s.diff", 1 << 20)));
  CHECK_OK(engine.take_snapshot("s"));
  CHECK_OK(engine.destroy_snapshot("s"));
  CHECK_OK(engine.detach_origin("slow", false));
}
