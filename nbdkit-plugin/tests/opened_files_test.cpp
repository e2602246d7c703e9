// SPDX-License-Identifier: BSD-3-Clause
// opened_files_test.cpp — telling the file an open added to the process from the file a path names.
#include <doctest/doctest.h>

#include <fcntl.h>
#include <stdio.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <string>

#include "file_device.h"
#include "opened_files.h"

using namespace nbdsnap;

namespace {

std::string identity_of(const std::string& path) {
  std::string identity;
  REQUIRE(FileDevice::identity_of(path, identity).is_ok());
  return identity;
}

// A fresh directory, removed with its files.
struct TempDir {
  TempDir() {
    std::string pattern = (std::filesystem::temp_directory_path() / "opened-files.XXXXXX").string();
    REQUIRE(::mkdtemp(pattern.data()) != nullptr);
    path = pattern;
  }
  ~TempDir() { std::filesystem::remove_all(path); }
  std::string file(const std::string& name) const { return path + "/" + name; }
  std::string path;
};

void create(const std::string& path) {
  const int fd = ::open(path.c_str(), O_CREAT | O_WRONLY | O_CLOEXEC, 0600);
  REQUIRE(fd >= 0);
  ::close(fd);
}

}  // namespace

TEST_CASE("the file an open added is told from files open before and from the one a path names now") {
  TempDir dir;
  const std::string a = dir.file("a.img"), b = dir.file("b.img");
  create(a);
  create(b);
  const std::string a_identity = identity_of(a), b_identity = identity_of(b);
  const int held = ::open(a.c_str(), O_RDONLY | O_CLOEXEC);  // a connection that had a.img open already
  REQUIRE(held >= 0);

  {
    const OpenedFileCheck a_check(a_identity), b_check(b_identity);
    CHECK_FALSE(a_check.opened());  // a.img was open before, and nothing was opened since
    // The plugin opens "a.img" while it names b.img's file, then the names are put back (the race).
    REQUIRE(::rename(a.c_str(), (a + ".tmp").c_str()) == 0);
    REQUIRE(::rename(b.c_str(), a.c_str()) == 0);
    const int opened = ::open(a.c_str(), O_RDONLY | O_CLOEXEC);
    REQUIRE(opened >= 0);
    REQUIRE(::rename(a.c_str(), b.c_str()) == 0);
    REQUIRE(::rename((a + ".tmp").c_str(), a.c_str()) == 0);
    CHECK(identity_of(a) == a_identity);  // the path names a.img's file again...
    CHECK_FALSE(a_check.opened());        // ...but the open did not add it
    CHECK(b_check.opened());
    ::close(opened);
  }

  // Another connection closes a.img while the plugin opens it again, under the same descriptor number: the
  // open adds a.img (it was refused at times before the check compared open files).
  const OpenedFileCheck check(a_identity);
  ::close(held);
  const int reopened = ::open(a.c_str(), O_RDONLY | O_CLOEXEC);
  REQUIRE(reopened >= 0);
  CHECK(check.opened());
  ::close(reopened);
}
