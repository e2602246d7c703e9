// SPDX-License-Identifier: BSD-3-Clause
// standard_fds_test.cpp — a program started with stderr closed must not hand fd 2 to the first file it opens.
#include <doctest/doctest.h>

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <unistd.h>

#include "standard_fds.h"

using namespace nbdsnap;

TEST_CASE("closed_standard_descriptors_are_held_by_dev_null") {
  const pid_t child = ::fork();
  REQUIRE(child >= 0);
  if (child == 0) {  // a child, so that this process keeps its own stdin, stdout and stderr
    ::close(1);
    ::close(2);
    if (!keep_standard_fds_open()) ::_exit(10);
    const int file = ::open("/proc/self/exe", O_RDONLY | O_CLOEXEC);  // the first file the program opens
    if (file <= 2) ::_exit(11);
    struct stat st {};
    if (::fstat(2, &st) != 0 || !S_ISCHR(st.st_mode) || st.st_rdev != makedev(1, 3))
      ::_exit(12);  // /dev/null
    if (::fstat(1, &st) != 0 || st.st_rdev != makedev(1, 3)) ::_exit(13);
    ::_exit(keep_standard_fds_open() ? 0 : 14);  // nothing to do the second time
  }
  int status = 0;
  REQUIRE(::waitpid(child, &status, 0) == child);
  REQUIRE(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);
}
