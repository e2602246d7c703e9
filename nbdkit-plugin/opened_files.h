// SPDX-License-Identifier: BSD-3-Clause
// opened_files.h — which file the plugin really opened for a connection, not only which file its path names.
//
// The filter knows the file behind an export from the plugin's parameters and the export's path
// (ServedOriginFiles::identity_of_export), but the plugin opens that path itself, inside the filter's .open.
// Two renames in the plugin's directory (renameat2 RENAME_EXCHANGE there and back) around that open leave the
// path naming the attached origin's file while the plugin holds another one: its writes would then pass this
// origin's tracker and reach another file (whose CBT misses them), and this origin's images would read that
// file's bytes (found by a hostile tester, invariants 1 and 3). So the filter looks at the process's open
// files (/proc/self/fd) before and after the plugin's open (serialised, see nbdsnap_open) and requires the
// file the path names among those the open added.
//
// It also locks the file behind an origin as nbdsnapd locks its origins (core/file_lock.h): the file plugin
// takes no lock, so without one a second nbdkit with this filter, or an nbdsnapd, served the same file with a
// tracker of its own, and each one's writes were missing from the other's images and CBT.
#pragma once

#include <chrono>
#include <string>
#include <vector>

#include "file_device.h"
#include "mutex.h"
#include "status.h"

namespace nbdsnap {

// The descriptors open on one file before some code runs (the plugin's open), kept open meanwhile (dup) so
// that a number the code frees and reuses is still told apart: a connection to the same export closing while
// another opens it is common (clients that reconnect). Thread-compatible; the caller serialises the code
// whose opens it wants to see.
class OpenedFileCheck {
 public:
  // identity: FileDevice::identity_of's ("file DEV:INODE", "block MAJOR:MINOR", a loop device's backing
  // file).
  explicit OpenedFileCheck(std::string identity);
  OpenedFileCheck(const OpenedFileCheck&) = delete;
  OpenedFileCheck& operator=(const OpenedFileCheck&) = delete;
  ~OpenedFileCheck();

  // Whether a descriptor of the file is open now that was not open at construction: the code opened that
  // file. Compares open files with kcmp(2); without it (ENOSYS, or a seccomp filter), descriptor numbers.
  bool opened() const;

 private:
  std::string identity_;
  std::vector<int> kept_;     // dups of the descriptors open on the file before
  std::vector<int> numbers_;  // their own numbers
};
// The plugin's opens of the files an OpenedFileCheck looks at, one at a time, so that the files an open
// adds to the process are its own. An open waits as long as its file system stalls; the next one waits at
// most `limit`, then is refused (busy, naming the export whose open holds it up), so one export on a hung
// NFS server does not hold every other export's clients for ever. Thread-safe.
class PluginOpenTurn {
 public:
  // Holds the turn from take() until destroyed. Move-only in spirit: not copied, not moved.
  class Holder {
   public:
    Holder() = default;
    Holder(const Holder&) = delete;
    Holder& operator=(const Holder&) = delete;
    ~Holder();

   private:
    friend class PluginOpenTurn;
    PluginOpenTurn* turn_ = nullptr;
  };

  explicit PluginOpenTurn(std::chrono::milliseconds limit) : limit_(limit) {}
  // Waits for the turn of `export_name`'s open; `out` holds it on success. Errors: busy after the limit.
  Status take(const std::string& export_name, Holder& out) EXCLUDES(mutex_);

 private:
  const std::chrono::milliseconds limit_;
  Mutex mutex_;
  CondVar free_;
  bool taken_ GUARDED_BY(mutex_) = false;
  std::string holder_ GUARDED_BY(mutex_);  // the export whose open has the turn
};

// An origin's file, held open and locked for as long as this object lives: exclusive for a read-write
// origin, shared_read for a read-only one (file_lock.h); a loop device's backing file too (LoopBackingLock).
// Move-only; thread-compatible.
class OriginFileLock {
 public:
  OriginFileLock() = default;
  OriginFileLock(OriginFileLock&& other) noexcept;
  OriginFileLock& operator=(OriginFileLock&& other) noexcept;
  OriginFileLock(const OriginFileLock&) = delete;
  OriginFileLock& operator=(const OriginFileLock&) = delete;
  ~OriginFileLock();

  // Opens `path` and locks it, if it still is the file `identity` names (FileDevice::identity_of). Errors:
  // bad_state (the path names another file now: renamed meanwhile), those of lock_file (busy: another
  // process holds it, naming it; already_exists: this process) and of LoopBackingLock::acquire, or the errno
  // of the open.
  static Status acquire(const std::string& path, const std::string& identity, bool read_only,
                        OriginFileLock& out);

 private:
  int fd_ = -1;
  LoopBackingLock backing_;  // held as long as fd_
};

}  // namespace nbdsnap
