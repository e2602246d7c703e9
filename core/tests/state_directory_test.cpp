// SPDX-License-Identifier: BSD-3-Clause
// state_directory_test.cpp — the CBT state directory: created (mode 0700) in an existing parent, refused with
// "does not exist" when its parent is missing too, refused when it is not a directory.
#include "state_directory.h"

#include <doctest/doctest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fstream>
#include <string>

using namespace nbdsnap;

namespace {

std::string make_temporary_directory() {
  char pattern[] = "/tmp/nbdsnap-state-directory-XXXXXX";
  REQUIRE(mkdtemp(pattern) != nullptr);
  return pattern;
}

}  // namespace

TEST_CASE("a_missing_state_directory_in_an_existing_parent_is_created_with_mode_0700") {
  const std::string parent = make_temporary_directory();
  const std::string path = parent + "/state";
  REQUIRE(prepare_state_directory(path, "--state-dir "));
  struct stat st {};
  REQUIRE(stat(path.c_str(), &st) == 0);
  CHECK(S_ISDIR(st.st_mode));
  CHECK((st.st_mode & 07777) == 0700);
  CHECK(prepare_state_directory(path + "/", "--state-dir "));  // now it exists: used as is
  rmdir(path.c_str());
  rmdir(parent.c_str());
}

TEST_CASE("a_state_directory_whose_parent_is_missing_is_reported_missing_and_nothing_is_created") {
  const std::string parent = make_temporary_directory();
  const std::string path = parent + "/no/state";
  const Status s = prepare_state_directory(path, "nbdsnap-state-dir=");
  CHECK(s.code() == Errc::not_found);
  CHECK(s.message() == "nbdsnap-state-dir=" + path +
                           " does not exist, and neither does its parent directory " + parent +
                           "/no: create it (mkdir -p " + path + ") or correct the path");
  CHECK(access((parent + "/no").c_str(), F_OK) != 0);
  rmdir(parent.c_str());
}

TEST_CASE("a_state_directory_that_is_a_file_is_refused_as_not_a_directory") {
  const std::string parent = make_temporary_directory();
  const std::string path = parent + "/file";
  std::ofstream(path).close();
  const Status s = prepare_state_directory(path, "--state-dir ");
  CHECK(s.code() == Errc::invalid_argument);
  CHECK(s.message().find("--state-dir " + path + " is not a directory") == 0);
  unlink(path.c_str());
  rmdir(parent.c_str());
}
