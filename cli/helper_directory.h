// SPDX-License-Identifier: BSD-3-Clause
// helper_directory.h — the private temporary directory a helper process works in (qemu-nbd's socket and log,
// qemu-img's log), and what makes sure none outlives the nbdsnap command that made it:
//
// - its name carries the owner's pid (TMPDIR/nbdsnap-qemu-nbd.PID.XXXXXX) and the owner holds an flock on it
//   for its whole life (released by the kernel however the owner ends, SIGKILL included);
// - SIGINT, SIGTERM and SIGHUP (those whose disposition is the default when the first directory is made; an
//   ignored SIGHUP under nohup stays ignored) run a handler that stops the helper (SIGTERM, then SIGKILL
//   after a bound), empties and removes every live directory, then ends the command with the same signal;
// - making a directory first removes the stale ones of every kind (qemu-nbd, qemu-img): owned by this user,
//   not locked, and either named after a pid that is gone or (older names without a pid) more than a minute
//   old with no socket in them that accepts connections.
//
// The same handler also removes a partial file a command registered (PartialFile below): a restore's
// temporary target, which must not be left behind looking like a restore.
//
// Thread-safety: directories may be made and dropped on any thread; the signal handler may run on any thread
// and only calls async-signal-safe functions (kill, waitpid, nanosleep, getdents64, unlinkat, rmdir, unlink).
#pragma once

#include <string>

#include <sys/types.h>

namespace nbdsnap::cli {

class HelperDirectory {
 public:
  // Removes stale directories named TMPDIR/nbdsnap-KIND.*, then creates TMPDIR/nbdsnap-KIND.PID.XXXXXX (mode
  // 0700), locks it and registers it with the signal handler. Throws CliError (io_error) when it cannot be
  // created, or when too many (8) exist at once in this process.
  explicit HelperDirectory(const std::string& kind);
  ~HelperDirectory();  // remove()
  HelperDirectory(const HelperDirectory&) = delete;
  HelperDirectory& operator=(const HelperDirectory&) = delete;

  const std::string& path() const { return path_; }
  // The helper working in the directory: a signal stops it before the directory is removed. 0: none (any
  // more; its owner has reaped it).
  void set_helper(pid_t pid);
  // Removes the directory and everything in it (idempotent; errors ignored: a temporary directory).
  void remove();

 private:
  std::string path_;
  int fd_ = -1;    // the directory, open and flock()ed while it exists
  int slot_ = -1;  // its entry in the signal handler's table
};

// A file that SIGINT, SIGTERM and SIGHUP remove (as they remove the directories above) before the command
// ends by the signal, for as long as this object lives: a file written in place of another and renamed over
// it only once complete. One at a time per process. Dropping the object neither removes nor keeps the file:
// the owner renames it into place or removes it, then drops the registration.
class PartialFile {
 public:
  // Throws CliError (io_error) when another is registered or the path is too long.
  explicit PartialFile(const std::string& path);
  ~PartialFile();
  PartialFile(const PartialFile&) = delete;
  PartialFile& operator=(const PartialFile&) = delete;
};

// Removes the stale directories of `kind` in TMPDIR (see above); returns how many. For tests and the
// constructor.
int remove_stale_helper_directories(const std::string& kind);

}  // namespace nbdsnap::cli
