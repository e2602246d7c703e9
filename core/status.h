// SPDX-License-Identifier: BSD-3-Clause
// status.h — the engine's one way to report errors: a value, never an exception across modules.
//
// Every fallible engine call returns a Status. Front ends turn it into an errno with to_errno() (the one
// error mapping of the engine) and then into their own wire code.
#pragma once

#include <string>
#include <utility>

namespace nbdsnap {

enum class Errc {
  ok = 0,
  invalid_argument,  // malformed request, bad size, bad name
  out_of_range,      // offset/length beyond the device
  not_found,         // unknown origin, snapshot, checkpoint
  already_exists,    // name or origin taken
  busy,              // the object is in use (origin in a snapshot, clients attached)
  bad_state,         // the call is not valid in the object's current state
  read_only,         // write to a read-only export or image
  no_space,          // difference storage could not hold more
  io_error,          // a device failed
  corrupted,         // the snapshot lost data it needs: its images fail from now on
  not_supported,     // the device cannot do this (trim on a plain device...)
  overflow,          // a value does not fit (NBD's EOVERFLOW)
  no_memory,         // an allocation failed (ENOMEM)
  name_too_long,     // a file name or path is longer than the file system takes (ENAMETOOLONG)
  checkpoint_gone,   // a CBT checkpoint that existed was dropped (kept count, deleted, history lost): back up
                     // fully
  permission_denied,  // the caller's identity or role may not do this (a remote control client; EACCES)
};

const char* errc_name(Errc code);

class [[nodiscard]] Status {
 public:
  Status() = default;
  Status(Errc code, std::string message) : code_(code), message_(std::move(message)) {}

  static Status ok() { return {}; }
  // A Status from a failed system call: maps errno to an Errc and keeps strerror in the message.
  static Status from_errno(int err, const std::string& what);

  bool is_ok() const { return code_ == Errc::ok; }
  explicit operator bool() const { return is_ok(); }
  Errc code() const { return code_; }
  const std::string& message() const { return message_; }
  // "not_found: snapshot 'x' does not exist"
  std::string to_string() const;

 private:
  Errc code_ = Errc::ok;
  std::string message_;
};

// The errno a front end reports for a Status (EINVAL, ENOENT, EEXIST, EBUSY, EROFS/EPERM, ENOSPC, EIO,
// EOVERFLOW, EOPNOTSUPP, ENAMETOOLONG...; checkpoint_gone is ENOENT, like not_found). The one mapping from
// engine errors to errno.
int to_errno(const Status& status);

}  // namespace nbdsnap
