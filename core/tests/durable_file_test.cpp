// SPDX-License-Identifier: BSD-3-Clause
// durable_file_test.cpp — a state file is replaced whole or not at all: a failed replacement leaves the old
// file and no temporary file, and its error names the file and keeps the errno's meaning.
#include "durable_file.h"

#include <doctest/doctest.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "test_support.h"

using namespace nbdsnap;
using namespace nbdsnap::test;

namespace {

std::string contents(const std::string& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

}  // namespace

TEST_CASE("replace_file_durably writes a new file and replaces an old one") {
  TempDir dir;
  const std::string path = dir.file("state.json");
  REQUIRE_OK(replace_file_durably(path, "one\n"));
  CHECK(contents(path) == "one\n");
  REQUIRE_OK(replace_file_durably(path, std::string(1 << 20, 'x')));
  CHECK(contents(path) == std::string(1 << 20, 'x'));
  REQUIRE_OK(replace_file_durably(path, ""));
  CHECK(contents(path).empty());
  CHECK(!std::filesystem::exists(path + ".tmp"));
}

TEST_CASE("a failed replacement keeps the old file and says which file failed") {
  TempDir dir;
  const std::string path = dir.file("state.json");
  REQUIRE_OK(replace_file_durably(path, "old\n"));
  SUBCASE("the temporary file cannot be created") {
    std::filesystem::create_directory(path + ".tmp");  // fails even for root (EISDIR)
    const Status status = replace_file_durably(path, "new\n");
    CHECK(status.code() == Errc::io_error);
    CHECK(status.message().find("state.json.tmp") != std::string::npos);
    CHECK(status.message().find("remove it, then try again") != std::string::npos);
    CHECK(std::filesystem::is_directory(path + ".tmp"));  // not ours to remove
  }
  SUBCASE("another user's leftover in a sticky directory (attack15 F5)") {
    // Root may remove anything: the writer is a child that became nobody. Its old file is nobody's too.
    if (::geteuid() != 0) {
      MESSAGE("skipped: needs root to write as another user");
      return;
    }
    REQUIRE(::chmod(dir.path().c_str(), 01777) == 0);
    REQUIRE(::chown(path.c_str(), 65534, 65534) == 0);
    std::ofstream(path + ".tmp") << "root's";
    int report[2];
    REQUIRE(::pipe(report) == 0);
    const pid_t child = ::fork();
    REQUIRE(child >= 0);
    if (child == 0) {
      ::close(report[0]);
      std::string said = "setuid failed";
      if (::setgid(65534) == 0 && ::setuid(65534) == 0)
        said = replace_file_durably(path, "new\n").to_string();
      (void)!::write(report[1], said.data(), said.size());
      ::_exit(0);
    }
    ::close(report[1]);
    std::string said;
    char buffer[512];
    for (ssize_t n; (n = ::read(report[0], buffer, sizeof(buffer))) > 0;) said.append(buffer, size_t(n));
    ::close(report[0]);
    int child_status = 0;
    ::waitpid(child, &child_status, 0);
    INFO(said);
    CHECK(said.find("read_only: cannot remove " + path + ".tmp") == 0);
    CHECK(said.find("another user (remove it, then try again): Operation not permitted") !=
          std::string::npos);
    CHECK(contents(path + ".tmp") == "root's");
  }
  SUBCASE("the rename fails") {
    std::filesystem::remove(path);
    std::filesystem::create_directory(path);
    std::ofstream(path + "/keep") << "k";  // a non-empty directory cannot be renamed over
    const Status status = replace_file_durably(path, "new\n");
    CHECK(!status.is_ok());
    CHECK(status.message().find("rename") != std::string::npos);
    CHECK(!std::filesystem::exists(path + ".tmp"));
    CHECK(contents(path + "/keep") == "k");
    return;
  }
  CHECK(contents(path) == "old\n");
}

TEST_CASE("a missing directory is not_found, naming the file") {
  TempDir dir;
  const Status status = replace_file_durably(dir.file("gone") + "/state.json", "x");
  CHECK(status.code() == Errc::not_found);
  CHECK(status.message().find("gone/state.json.tmp") != std::string::npos);
}

// The temporary file is made anew: a symbolic link left at PATH.tmp (by an interrupted write's neighbour, or
// on purpose) is replaced, and the file it names is never written. The CLI's backup files shared this rule
// only in their own copy of the write (cli/private_files.cpp), which now calls this one.
TEST_CASE("a leftover temporary file or a symbolic link in its place is replaced, never followed") {
  TempDir dir;
  const std::string path = dir.file("state.json");
  const std::string victim = dir.file("victim");
  REQUIRE_OK(replace_file_durably(victim, "keep\n"));
  std::filesystem::create_symlink(victim, path + ".tmp");
  REQUIRE_OK(replace_file_durably(path, "new\n"));
  CHECK(contents(path) == "new\n");
  CHECK(contents(victim) == "keep\n");
  CHECK(!std::filesystem::exists(path + ".tmp"));
  std::ofstream(path + ".tmp") << "half a write";
  REQUIRE_OK(replace_file_durably(path, "newer\n"));
  CHECK(contents(path) == "newer\n");
}

TEST_CASE("the new file's mode is the mode less the umask, or exactly the mode when asked") {
  TempDir dir;
  const std::string path = dir.file("file");
  const mode_t old_umask = ::umask(077);
  const Status less = replace_file_durably(path, "a", 0644);
  struct stat st {};
  ::stat(path.c_str(), &st);
  const mode_t less_mode = st.st_mode & 07777;
  const Status exact = replace_file_durably(path, "b", 0644, NewFileMode::exactly);
  ::stat(path.c_str(), &st);
  const mode_t exact_mode = st.st_mode & 07777;
  ::umask(old_umask);
  REQUIRE_OK(less);
  REQUIRE_OK(exact);
  CHECK(less_mode == 0600);
  CHECK(exact_mode == 0644);
}
