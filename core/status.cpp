// SPDX-License-Identifier: BSD-3-Clause
// status.cpp — names of error codes and the one mapping from engine errors to errno.
#include "status.h"

#include <cerrno>
#include <cstring>

namespace nbdsnap {

const char* errc_name(Errc code) {
  switch (code) {
    case Errc::ok:
      return "ok";
    case Errc::invalid_argument:
      return "invalid_argument";
    case Errc::out_of_range:
      return "out_of_range";
    case Errc::not_found:
      return "not_found";
    case Errc::already_exists:
      return "already_exists";
    case Errc::busy:
      return "busy";
    case Errc::bad_state:
      return "bad_state";
    case Errc::read_only:
      return "read_only";
    case Errc::no_space:
      return "no_space";
    case Errc::io_error:
      return "io_error";
    case Errc::corrupted:
      return "corrupted";
    case Errc::not_supported:
      return "not_supported";
    case Errc::overflow:
      return "overflow";
    case Errc::no_memory:
      return "no_memory";
    case Errc::name_too_long:
      return "name_too_long";
    case Errc::checkpoint_gone:
      return "checkpoint_gone";
    case Errc::permission_denied:
      return "permission_denied";
  }
  return "unknown";
}

Status Status::from_errno(int err, const std::string& what) {
  Errc code = Errc::io_error;
  switch (err) {
    case ENOSPC:
    case EDQUOT:
      code = Errc::no_space;
      break;
    case ENOENT:
      code = Errc::not_found;
      break;
    case EEXIST:
      code = Errc::already_exists;
      break;
    case EINVAL:
      code = Errc::invalid_argument;
      break;
    case EROFS:
    case EPERM:
    case EACCES:
      code = Errc::read_only;
      break;
    case EBUSY:
      code = Errc::busy;
      break;
    case EOPNOTSUPP:
      code = Errc::not_supported;
      break;
    case EOVERFLOW:
      code = Errc::overflow;
      break;
    case ENOMEM:
      code = Errc::no_memory;
      break;
    case ENAMETOOLONG:
      code = Errc::name_too_long;
      break;
    default:
      break;
  }
  return {code, what + ": " + std::strerror(err)};
}

std::string Status::to_string() const {
  if (is_ok()) return "ok";
  return std::string(errc_name(code_)) + ": " + message_;
}

int to_errno(const Status& status) {
  switch (status.code()) {
    case Errc::ok:
      return 0;
    case Errc::invalid_argument:
      return EINVAL;
    case Errc::out_of_range:
      return EINVAL;
    case Errc::not_found:
      return ENOENT;
    case Errc::already_exists:
      return EEXIST;
    case Errc::busy:
      return EBUSY;
    case Errc::bad_state:
      return EINVAL;
    case Errc::read_only:
      return EPERM;
    case Errc::no_space:
      return ENOSPC;
    case Errc::io_error:
      return EIO;
    case Errc::corrupted:
      return EIO;
    case Errc::not_supported:
      return EOPNOTSUPP;
    case Errc::overflow:
      return EOVERFLOW;
    case Errc::no_memory:
      return ENOMEM;
    case Errc::name_too_long:
      return ENAMETOOLONG;
    case Errc::checkpoint_gone:
      return ENOENT;
    case Errc::permission_denied:
      return EACCES;
  }
  return EIO;
}

}  // namespace nbdsnap
