// SPDX-License-Identifier: BSD-3-Clause
// request_errno.cpp — see request_errno.h.
#include "request_errno.h"

#include <cerrno>

namespace nbdsnap {

int to_request_errno(const Status& status) {
  const int err = to_errno(status);
  switch (err) {
    case 0:
    case EPERM:
    case EIO:
    case ENOMEM:
    case EINVAL:
    case ENOSPC:
    case EOVERFLOW:
    case EOPNOTSUPP:
    case ESHUTDOWN:
      return err;
    case EACCES:
      return EPERM;
    default:
      return EIO;
  }
}

}  // namespace nbdsnap
