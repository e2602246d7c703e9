// SPDX-License-Identifier: BSD-3-Clause
// served_origin_files_test.cpp — difference storage never lands on a file a front end serves outside the
// engine.
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

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
