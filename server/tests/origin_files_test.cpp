// SPDX-License-Identifier: BSD-3-Clause
// origin_files_test.cpp — the origin list in the state directory and how a start combines it with the
// command line: what was attached at run time is served again, the command line wins on a name, and a
// listed origin whose file is missing is neither fatal nor forgotten.
#include "origin_files.h"

#include <doctest/doctest.h>

#include <fstream>

#include "origin_list.h"
#include "test_support.h"

using namespace nbdsnap;
using nbdsnap::test::TempDir;

namespace {

std::string make_disk(const TempDir& dir, const std::string& name) {
  const std::string path = (dir.path() / name).string();
  std::ofstream(path).close();
  std::filesystem::resize_file(path, 1 << 20);
  return path;
}

std::vector<OriginSpec> listed_in(const TempDir& state) {
  std::vector<OriginSpec> out;
  REQUIRE_OK(OriginList(state.path().string()).load(out));
  return out;
}

std::vector<std::string> attached(Engine& engine) {
  std::vector<std::string> names;
  for (const auto& info : engine.origins()) names.push_back(info.name);
  return names;
}

}  // namespace

TEST_CASE("origin_list_round_trips_and_a_missing_file_is_an_empty_list") {
  TempDir state;
  OriginList list(state.path().string());
  std::vector<OriginSpec> loaded{{"x", "/y", false}};
  REQUIRE_OK(list.load(loaded));
  CHECK(loaded.empty());
  const std::vector<OriginSpec> saved{{"vm1", "/srv/vm1.raw", false}, {"base", "/dev/vg0/base", true}};
  REQUIRE_OK(list.save(saved));
  REQUIRE_OK(list.load(loaded));
  CHECK(loaded == saved);
}

TEST_CASE("a_damaged_origin_list_is_an_error_naming_the_file") {
  TempDir state;
  std::ofstream(state.path() / "origins.json") << "{\"version\": 1, \"origins\": [{\"name\": 3}";
  std::vector<OriginSpec> loaded;
  const Status status = OriginList(state.path().string()).load(loaded);
  CHECK(status.code() == Errc::invalid_argument);
  CHECK(status.message().find("origins.json") != std::string::npos);
  CHECK(loaded.empty());
}

TEST_CASE("origins_attached_at_run_time_are_served_again_after_a_restart") {
  TempDir state, disks;
  const std::string a = make_disk(disks, "a.raw"), b = make_disk(disks, "b.raw");
  EngineConfig config;
  config.state_dir = state.path().string();
  {
    Engine engine(config);
    OriginFiles files(engine, config.state_dir);
    REQUIRE_OK(files.attach_at_start({{"a", a, false}}));
    REQUIRE_OK(files.attach("b", b, true));
    CHECK(files.attach("b2", b, false).code() == Errc::already_exists);  // the same file twice
    CHECK(listed_in(state) == std::vector<OriginSpec>{{"a", a, false}, {"b", b, true}});
  }
  Engine engine(config);
  OriginFiles files(engine, config.state_dir);
  REQUIRE_OK(files.attach_at_start({}));
  CHECK(attached(engine) == std::vector<std::string>{"a", "b"});
  OriginInfo info;
  REQUIRE_OK(engine.origin_info("b", info));
  CHECK(info.read_only);
  OriginFiles::Unlisted outcome{};
  REQUIRE_OK(files.unlist("a", outcome, true));
  CHECK(outcome == OriginFiles::Unlisted::attached);  // an unlist must not drop an attached origin's entry
  CHECK(listed_in(state).size() == 2);
  REQUIRE_OK(engine.detach_origin("a", false));
  REQUIRE_OK(files.unlist("a", outcome, true));
  CHECK(outcome == OriginFiles::Unlisted::dropped);
  CHECK(listed_in(state) == std::vector<OriginSpec>{{"b", b, true}});
}

TEST_CASE("the_command_line_replaces_a_listed_origin_of_the_same_name_and_is_listed_too") {
  TempDir state, disks;
  const std::string a = make_disk(disks, "a.raw"), a2 = make_disk(disks, "a2.raw"),
                    c = make_disk(disks, "c.raw");
  REQUIRE_OK(OriginList(state.path().string()).save({{"a", a, false}}));
  EngineConfig config;
  config.state_dir = state.path().string();
  Engine engine(config);
  OriginFiles files(engine, config.state_dir);
  REQUIRE_OK(files.attach_at_start({{"a", a2, false}, {"c", c, false}}));
  CHECK(listed_in(state) == std::vector<OriginSpec>{{"a", a2, false}, {"c", c, false}});
}

TEST_CASE("a_listed_origin_whose_file_is_missing_stays_listed_until_attached_or_detached") {
  TempDir state, disks;
  const std::string a = make_disk(disks, "a.raw");
  const std::string gone = (disks.path() / "gone.raw").string();
  REQUIRE_OK(OriginList(state.path().string()).save({{"gone", gone, false}, {"a", a, false}}));
  EngineConfig config;
  config.state_dir = state.path().string();
  Engine engine(config);
  OriginFiles files(engine, config.state_dir);
  REQUIRE_OK(files.attach_at_start({}));
  CHECK(attached(engine) == std::vector<std::string>{"a"});
  CHECK(listed_in(state).size() == 2);
  CHECK(!files.attach("gone", gone, false).is_ok());  // still missing: still listed
  CHECK(listed_in(state).size() == 2);
  make_disk(disks, "gone.raw");
  REQUIRE_OK(files.attach("gone", gone, false));
  CHECK(listed_in(state).size() == 2);
  REQUIRE_OK(engine.detach_origin("gone", false));
  OriginFiles::Unlisted outcome{};
  REQUIRE_OK(files.unlist("gone", outcome, true));
  CHECK(outcome == OriginFiles::Unlisted::dropped);
  REQUIRE_OK(files.unlist("never-listed", outcome, false));
  CHECK(outcome == OriginFiles::Unlisted::not_listed);
  CHECK(listed_in(state) == std::vector<OriginSpec>{{"a", a, false}});
}

// A list that cannot be saved must not leave an origin served that the next start would not serve (its
// writes there would go untracked), nor drop a listing the file still holds. A directory in the way of
// the temporary file fails the save even for root.
TEST_CASE("an_attach_whose_listing_cannot_be_saved_is_undone_and_an_unlist_keeps_the_entry") {
  TempDir state, disks;
  const std::string a = make_disk(disks, "a.raw"), b = make_disk(disks, "b.raw");
  EngineConfig config;
  config.state_dir = state.path().string();
  Engine engine(config);
  OriginFiles files(engine, config.state_dir);
  REQUIRE_OK(files.attach_at_start({{"a", a, false}}));
  const auto blocker = state.path() / "origins.json.tmp";
  std::filesystem::create_directory(blocker);
  const Status refused = files.attach("b", b, false);
  CHECK(refused.code() == Errc::io_error);
  CHECK(refused.message().find("origin 'b' not attached") != std::string::npos);
  CHECK(refused.message().find("origins.json") != std::string::npos);
  CHECK(attached(engine) == std::vector<std::string>{"a"});
  REQUIRE_OK(engine.detach_origin("a", false));
  OriginFiles::Unlisted outcome{};
  const Status kept = files.unlist("a", outcome, true);
  CHECK(!kept.is_ok());
  CHECK(kept.message().find("origins.json") != std::string::npos);
  std::filesystem::remove(blocker);
  CHECK(listed_in(state) == std::vector<OriginSpec>{{"a", a, false}});
  REQUIRE_OK(files.unlist("a", outcome, true));  // still listed in memory too: a second detach unlists it
  CHECK(outcome == OriginFiles::Unlisted::dropped);
  REQUIRE_OK(files.attach("b", b, false));  // the same name and file again, once the list can be saved
  CHECK(listed_in(state) == std::vector<OriginSpec>{{"b", b, false}});
}

TEST_CASE("a_command_line_origin_that_cannot_be_opened_is_an_error") {
  TempDir state;
  EngineConfig config;
  config.state_dir = state.path().string();
  Engine engine(config);
  OriginFiles files(engine, config.state_dir);
  const Status status = files.attach_at_start({{"a", (state.path() / "missing.raw").string(), false}});
  CHECK(status.code() == Errc::not_found);
  CHECK(status.message().find("origin a") != std::string::npos);
}
