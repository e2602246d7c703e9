// SPDX-License-Identifier: BSD-3-Clause
// storage_ledger_test.cpp — storage files of snapshots that died with a crashed run are removed at start,
// unless someone has locked them since.
#include <doctest/doctest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "engine.h"
#include "file_device.h"
#include "memory_device.h"
#include "storage_ledger.h"
#include "test_support.h"

using namespace nbdsnap;
using namespace nbdsnap::test;

TEST_CASE("storage a crashed engine created is removed when the next engine starts") {
  TempDir dir;
  const std::string state = dir.file("state");
  EngineConfig config;
  config.state_dir = state;
  const std::string storage = dir.file("s1.diff");
  const std::string user_file = dir.file("mine.diff");
  std::ofstream(user_file) << std::string(1 << 20, 'u');
  // The crash: a child process builds the engine, takes a snapshot and dies without any cleanup.
  const pid_t child = ::fork();
  REQUIRE(child >= 0);
  if (child == 0) {
    Engine engine(config);
    bool ok = engine.attach_origin("disk", std::make_shared<MemoryDevice>(4 << 20), false).is_ok();
    SnapshotOptions options;
    options.origins = {"disk"};
    options.storage = {{storage, 1 << 20}, {user_file, 0}};
    ok = ok && engine.create_snapshot("s1", options).is_ok() && engine.take_snapshot("s1").is_ok();
    ::_exit(ok ? 0 : 1);
  }
  int status = 0;
  REQUIRE(::waitpid(child, &status, 0) == child);
  REQUIRE(WIFEXITED(status));
  REQUIRE(WEXITSTATUS(status) == 0);
  REQUIRE(std::filesystem::exists(storage));
  Engine restarted(config);
  CHECK_FALSE(std::filesystem::exists(storage));
  CHECK(std::filesystem::exists(user_file));  // files the user gave are never deleted
  const auto events = restarted.events().wait_after(0, std::chrono::milliseconds(0));
  bool reported = false;
  for (const Event& e : events) reported |= e.reason.find(storage) != std::string::npos;
  CHECK(reported);
}

TEST_CASE("a clean stop leaves an empty storage ledger") {
  TempDir dir;
  StorageLedger ledger(dir.file("state"));
  REQUIRE(ledger.record({dir.file("x")}).is_ok());
  std::ofstream(dir.file("x")) << "x";
  CHECK(ledger.remove_leftovers() == std::vector<std::string>{dir.file("x")});
  CHECK(ledger.remove_leftovers().empty());
}

TEST_CASE("a leftover storage file that another user locked since the crash is not removed") {
  TempDir dir;
  const std::string state = dir.file("state");
  const std::string taken = dir.file("taken.diff"), free = dir.file("free.diff");
  std::ofstream(taken) << std::string(4096, 't');
  std::ofstream(free) << std::string(4096, 'f');
  StorageLedger ledger(state);
  REQUIRE_OK(ledger.record({taken, free}));
  // Since the crash, the path was given as storage to another engine (here in this process), which locks it.
  std::unique_ptr<FileDevice> user;
  REQUIRE_OK(FileDevice::open(taken, false, user));
  CHECK(ledger.remove_leftovers() == std::vector<std::string>{free});
  CHECK(std::filesystem::exists(taken));
  CHECK_FALSE(std::filesystem::exists(free));
}
