// SPDX-License-Identifier: BSD-3-Clause
// served_origin_files_test.cpp — difference storage never lands on a file a front end serves outside the
// engine.
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "file_device.h"
#include "served_origin_files.h"
#include "test_support.h"

using namespace nbdsnap;
using namespace nbdsnap::test;

namespace {

void make_sized_file(const std::string& path, uint64_t size) {
  std::ofstream(path).close();
  std::filesystem::resize_file(path, size);
}

// Runs `body` with the current directory set to `dir`, then goes back.
template <typename Body>
void in_directory(const std::string& dir, Body&& body) {
  const auto previous = std::filesystem::current_path();
  std::filesystem::current_path(dir);
  body();
  std::filesystem::current_path(previous);
}

}  // namespace

TEST_CASE("storage that is a served file is refused under every name it has") {
  TempDir dir;
  std::filesystem::create_directory(dir.file("D"));
  make_sized_file(dir.file("D/d"), MiB);
  make_sized_file(dir.file("plugin.img"), MiB);
  std::filesystem::create_hard_link(dir.file("D/d"), dir.file("hard"));
  std::filesystem::create_symlink(dir.file("D/d"), dir.file("soft"));
  std::filesystem::create_symlink(dir.file("plugin.img"), dir.file("soft-plugin"));
  ServedOriginFiles served;
  served.add_directory(dir.file("D"), "dir=" + dir.file("D"));
  served.add_file(dir.file("plugin.img"), "file=plugin.img");

  for (const std::string& name :
       {dir.file("D/d"), dir.file("hard"), dir.file("soft"), dir.file("D/../D/./d")}) {
    const Status s = served.check_storage(name);
    CHECK_MESSAGE(s.code() == Errc::already_exists, name << ": " << s.to_string());
    CHECK(s.message().find(dir.file("D") + "/d, which the plugin serves as export 'd' (dir=") !=
          std::string::npos);
  }
  for (const std::string& name : {dir.file("plugin.img"), dir.file("soft-plugin")}) {
    const Status s = served.check_storage(name);
    CHECK_MESSAGE(s.code() == Errc::already_exists, name << ": " << s.to_string());
    CHECK(s.message().find("which the plugin serves (file=plugin.img)") != std::string::npos);
  }
  in_directory(dir.path().string(), [&] {
    CHECK_ERRC(served.check_storage("D/d"), Errc::already_exists);
    CHECK_ERRC(served.check_storage("hard"), Errc::already_exists);
  });
  CHECK_OK(served.check_storage(dir.file("elsewhere.diff")));  // a new file outside D
  make_sized_file(dir.file("other.diff"), MiB);
  CHECK_OK(served.check_storage(dir.file("other.diff")));
  CHECK_OK(served.check_storage(dir.path().string()));  // a directory of storage files that is not D
}

TEST_CASE("storage in a served directory is refused even before the file exists") {
  TempDir dir;
  std::filesystem::create_directory(dir.file("D"));
  std::filesystem::create_directory(dir.file("D/sub"));
  std::filesystem::create_directory_symlink(dir.file("D"), dir.file("link-to-D"));
  ServedOriginFiles served;
  served.add_directory(dir.file("D"), "dir=D");

  for (const std::string& name : {dir.file("D/e"), dir.file("link-to-D/e"), dir.file("D/sub/../e")}) {
    const Status s = served.check_storage(name);
    CHECK_MESSAGE(s.code() == Errc::invalid_argument, name << ": " << s.to_string());
    CHECK(s.message().find("lies in " + dir.file("D") + ", which the plugin serves (dir=D)") !=
          std::string::npos);
  }
  in_directory(dir.file("D"), [&] { CHECK_ERRC(served.check_storage("e"), Errc::invalid_argument); });
  CHECK_ERRC(served.check_storage(dir.file("D")), Errc::invalid_argument);  // the directory itself
  CHECK_OK(served.check_storage(dir.file("D/sub/e")));  // the file plugin serves no subdirectory
  // A file added to D after the start is served too.
  make_sized_file(dir.file("D/later"), MiB);
  std::filesystem::create_hard_link(dir.file("D/later"), dir.file("later-link"));
  CHECK_ERRC(served.check_storage(dir.file("later-link")), Errc::already_exists);
}

TEST_CASE("the engine refuses served files as snapshot storage and appended storage, creating nothing") {
  TempDir dir;
  std::filesystem::create_directory(dir.file("D"));
  make_sized_file(dir.file("D/d"), MiB);
  auto served = std::make_shared<ServedOriginFiles>();
  served->add_directory(dir.file("D"), "dir=D");
  EngineConfig config = small_config();
  config.served_origin_files = served;
  Engine engine(config);
  attach_memory_origin(engine, "d", MiB);

  CHECK_ERRC(engine.create_snapshot("s", {{"d"}, {{dir.file("D/d"), 0}}, 0, false}), Errc::already_exists);
  CHECK_ERRC(engine.create_snapshot("s", {{"d"}, {{dir.file("D/e"), MiB}}, 0, false}),
             Errc::invalid_argument);
  CHECK_FALSE(std::filesystem::exists(dir.file("D/e")));
  CHECK(std::filesystem::file_size(dir.file("D/d")) == MiB);  // not grown to a requested size either
  REQUIRE_OK(engine.create_snapshot("s", {{"d"}, {{dir.file("s.diff"), MiB}}, 0, false}));
  CHECK_ERRC(engine.append_storage("s", {dir.file("D/more"), MiB}), Errc::invalid_argument);
  CHECK_ERRC(engine.append_storage("s", {dir.file("D/d"), 0}), Errc::already_exists);
  CHECK_FALSE(std::filesystem::exists(dir.file("D/more")));
  REQUIRE_OK(engine.append_storage("s", {dir.file("more.diff"), MiB}));
}

TEST_CASE(
    "an export's file identity names the served file however it is linked, and nothing it cannot know") {
  TempDir dir;
  std::filesystem::create_directory(dir.file("D"));
  make_sized_file(dir.file("D/a.img"), MiB);
  make_sized_file(dir.file("D/e.img"), MiB);
  std::filesystem::create_hard_link(dir.file("D/a.img"), dir.file("D/b.img"));
  std::filesystem::create_symlink("a.img", dir.file("D/c.img"));
  std::string a_identity;
  REQUIRE_OK(FileDevice::identity_of(dir.file("D/a.img"), a_identity));

  ServedOriginFiles in_dir;
  in_dir.add_directory(dir.file("D"), "dir=D");
  for (const char* name : {"a.img", "b.img", "c.img"})
    CHECK_MESSAGE(in_dir.identity_of_export(name) == a_identity, name);
  CHECK(!in_dir.identity_of_export("e.img").empty());
  CHECK(in_dir.identity_of_export("e.img") != a_identity);
  for (const char* name : {"", "nope", ".", "..", "../D/a.img", "sub/a.img"})
    CHECK_MESSAGE(in_dir.identity_of_export(name).empty(), name);

  ServedOriginFiles one_file;
  one_file.add_file(dir.file("D/c.img"), "file=c.img");
  CHECK(one_file.identity_of_export("") == a_identity);  // the file plugin's file= serves one disk
  CHECK(one_file.identity_of_export("anything") == a_identity);

  ServedOriginFiles two_files;  // a plugin with several file= parameters: which export is which is unknown
  two_files.add_file(dir.file("D/a.img"), "file=a.img");
  two_files.add_file(dir.file("D/e.img"), "file=e.img");
  CHECK(two_files.identity_of_export("a.img").empty());
  CHECK(ServedOriginFiles().identity_of_export("a.img").empty());
}

TEST_CASE("a device-less origin with a file identity is one disk with every other use of that file") {
  TempDir dir;
  make_sized_file(dir.file("a.img"), MiB);
  std::string identity;
  REQUIRE_OK(FileDevice::identity_of(dir.file("a.img"), identity));
  Engine engine(small_config());
  REQUIRE_OK(engine.attach_origin("a", nullptr, false, MiB, 0, identity));
  // A second name of the same file (the filter: a hard or symbolic link in dir=) is refused...
  const Status second = engine.attach_origin("b", nullptr, false, MiB, 0, identity);
  CHECK_ERRC(second, Errc::already_exists);
  CHECK(second.message() == "the device of origin 'b' is already in use: all of it is origin 'a'");
  CHECK_FALSE(engine.find_origin("b"));
  // ... so is the file as difference storage, by any path ...
  std::filesystem::create_hard_link(dir.file("a.img"), dir.file("a-link"));
  attach_memory_origin(engine, "m", MiB);
  CHECK_ERRC(engine.create_snapshot("s", {{"m"}, {{dir.file("a-link"), 0}}, 0, false}), Errc::already_exists);
  // ... and difference storage, once in use, is no origin either.
  REQUIRE_OK(engine.create_snapshot("s", {{"m"}, {{dir.file("s.diff"), MiB}}, 0, false}));
  std::string storage_identity;
  REQUIRE_OK(FileDevice::identity_of(dir.file("s.diff"), storage_identity));
  const Status on_storage = engine.attach_origin("d", nullptr, false, MiB, 0, storage_identity);
  CHECK_ERRC(on_storage, Errc::already_exists);
  CHECK(on_storage.message().find("difference storage of snapshot 's'") != std::string::npos);
  // An origin whose file is unknown (other plugins) is checked against nothing, as before.
  REQUIRE_OK(engine.attach_origin("u", nullptr, false, MiB, 0, ""));
  // Detached, the file is free again.
  REQUIRE_OK(engine.detach_origin("a", false));
  CHECK_OK(engine.attach_origin("b", nullptr, false, MiB, 0, identity));
}
