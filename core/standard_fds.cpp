// SPDX-License-Identifier: BSD-3-Clause
// standard_fds.cpp — opening /dev/null on closed standard descriptors (see standard_fds.h).
#include "standard_fds.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>

namespace nbdsnap {

bool keep_standard_fds_open() {
  for (int fd = 0; fd <= 2; ++fd) {
    if (::fcntl(fd, F_GETFD) != -1 || errno != EBADF) continue;
    // open() returns the lowest free descriptor, which is `fd`: the ones below it are open by now.
    const int opened = ::open("/dev/null", O_RDWR);
    if (opened != fd) {
      if (opened >= 0) ::close(opened);
      return false;
    }
  }
  return true;
}

}  // namespace nbdsnap
