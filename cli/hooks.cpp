// SPDX-License-Identifier: BSD-3-Clause
// hooks.cpp — fork/exec of a hook command through /bin/sh.
#include "hooks.h"

#include <cerrno>
#include <cstdlib>

#include <sys/wait.h>
#include <unistd.h>

namespace nbdsnap::cli {

int run_hook(const std::string& command, const std::string& snapshot, const std::string& stage) {
  pid_t child = ::fork();
  if (child < 0) return 127;
  if (child == 0) {
    ::setenv("NBDSNAP_SNAPSHOT", snapshot.c_str(), 1);
    ::setenv("NBDSNAP_HOOK", stage.c_str(), 1);
    ::dup2(STDERR_FILENO, STDOUT_FILENO);
    ::execl("/bin/sh", "sh", "-c", command.c_str(), static_cast<char*>(nullptr));
    ::_exit(127);
  }
  int status = 0;
  while (::waitpid(child, &status, 0) < 0) {
    if (errno != EINTR) return 127;
  }
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return 127;
}

}  // namespace nbdsnap::cli
