// SPDX-License-Identifier: BSD-3-Clause
// private_files_test.cpp — files that hold disk contents get the mode asked for whatever the umask; an
// atomic write leaves no temporary file; --mode parsing.
#include <doctest/doctest.h>

#include <cstdlib>
#include <filesystem>
#include <string>

#include <sys/stat.h>
#include <unistd.h>

#include "exit_codes.h"
#include "private_files.h"

using namespace nbdsnap::cli;

namespace {

struct PrivateFilesDir {
  std::string path;
  PrivateFilesDir() {
    char pattern[] = "/tmp/nbdsnap-private-files.XXXXXX";
    path = ::mkdtemp(pattern);
  }
  ~PrivateFilesDir() { std::filesystem::remove_all(path); }
};

mode_t mode_of(const std::string& path) {
  struct stat info {};
  REQUIRE(::stat(path.c_str(), &info) == 0);
  return info.st_mode & 07777;
}

// Runs with a umask, restoring the old one.
struct Umask {
  mode_t old;
  explicit Umask(mode_t mask) : old(::umask(mask)) {}
  ~Umask() { ::umask(old); }
};

}  // namespace

TEST_CASE("files_get_the_mode_asked_for_whatever_the_umask") {
  PrivateFilesDir dir;
  {
    Umask open_umask(0);
    ::close(open_private_file(dir.path + "/a", kPrivateFileMode, true));
    write_file_atomically(dir.path + "/b", "text", kPrivateFileMode);
    make_private_directory(dir.path + "/d", directory_mode_for(kPrivateFileMode));
  }
  CHECK(mode_of(dir.path + "/a") == 0600);
  CHECK(mode_of(dir.path + "/b") == 0600);
  CHECK(mode_of(dir.path + "/d") == 0700);
  CHECK_FALSE(path_exists(dir.path + "/b.tmp"));
  {
    Umask strict_umask(077);
    create_private_file(dir.path + "/c", 0644);
  }
  CHECK(mode_of(dir.path + "/c") == 0644);
  CHECK(read_whole_file(dir.path + "/b") == "text");
}

TEST_CASE("an_existing_file_keeps_its_mode_unless_the_mode_is_forced") {
  PrivateFilesDir dir;
  const std::string path = dir.path + "/a";
  ::close(open_private_file(path, 0640, true));
  ::close(open_private_file(path, 0600, false));
  CHECK(mode_of(path) == 0640);
  ::close(open_private_file(path, 0600, false, /*force_mode=*/true));
  CHECK(mode_of(path) == 0600);
}

TEST_CASE("mode_arguments_are_octal_permission_bits") {
  CHECK(parse_file_mode("600") == 0600);
  CHECK(parse_file_mode("0640") == 0640);
  CHECK_THROWS_AS(parse_file_mode("888"), CliError);
  CHECK_THROWS_AS(parse_file_mode("1777"), CliError);
  CHECK_THROWS_AS(parse_file_mode(""), CliError);
  CHECK(directory_mode_for(0640) == 0750);
  CHECK(directory_mode_for(0604) == 0705);
}
