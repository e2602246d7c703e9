// SPDX-License-Identifier: BSD-3-Clause
// origin_files.h — the origins nbdsnapd serves from files and block devices: opens and attaches them (the
// engine refuses one file twice, see BlockDevice::file_identity), and keeps the origin list (origin_list.h)
// in step with what is attached, so a restart serves the same origins.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "engine.h"
#include "mutex.h"
#include "origin_list.h"

namespace nbdsnap {

class OriginFiles {
 public:
  // state_dir holds the origin list; empty keeps no list. cache: how origin files are opened (direct_io.h).
  OriginFiles(Engine& engine, const std::string& state_dir, FileCache cache = FileCache::writeback);

  // At start: attaches the listed origins and those of the command line (a command-line origin replaces a
  // listed one of the same name), then saves the list. A command-line origin that cannot be attached is an
  // error (the caller stops); a listed one is logged and stays listed, to be tried again at the next start,
  // so a disk that is missing for a while is not forgotten.
  Status attach_at_start(const std::vector<OriginSpec>& command_line);
  // Opens PATH (made absolute) and attaches it as origin NAME, then lists it. When the list cannot be saved
  // (the state directory full, read-only or failing) the origin is detached again and the save's error is
  // returned: a served origin the next start would not serve again loses its tracking.
  Status attach(const std::string& name, const std::string& path, bool read_only);
  // What unlist() found.
  enum class Unlisted {
    dropped,     // listed and dropped, and the list saved
    not_listed,  // nothing to drop
    attached,    // the engine has NAME attached: an attach came after the caller's look, and lists it itself
  };
  // Drops NAME from the list while the engine has no origin of that name: after a detach, or when it is
  // listed but could not be attached at start. Errors: the list save's (NAME stays listed, in the file and
  // here, so the next start attaches it again and a later unlist tries again); `outcome` is then unset.
  Status unlist(const std::string& name, Unlisted& outcome);

 private:
  // attach_at_start's: opens, attaches and lists one origin.
  Status attach_locked(const OriginSpec& spec) REQUIRES(mutex_);
  // Opens the file and attaches it in the engine; lists nothing. May wait for a stalled file system. Sets
  // `identity` to the opened file's (FileDevice::file_identity).
  Status open_and_attach(const OriginSpec& spec, std::string& identity);
  // Lists an origin the engine has attached, in place of a listed one of its name that was not attached.
  void list_attached_locked(const OriginSpec& spec) REQUIRES(mutex_);
  Status save_list_locked() REQUIRES(mutex_);
  // Changes the list and writes it, one call at a time: waits for a write in progress (at most
  // kListWaitLimit: busy, naming the list, when a stalled state directory holds that write), then runs
  // `change` under mutex_; when it returns true, writes the changed list without mutex_ and, if that
  // fails, puts the list back and returns the error, naming the list. The write in progress is a call's
  // own, so others see busy rather than wait as long as the state directory stalls.
  Status change_list(const std::function<bool()>& change) EXCLUDES(mutex_);
  static constexpr std::chrono::seconds kListWaitLimit{10};

  Engine& engine_;
  OriginList list_;
  const FileCache cache_;
  // Guards the list and serialises its writes (state directory I/O: the last list written is the newest).
  // Held across the engine's attach only at start; a control attach opens and attaches without it, and
  // the list is written without it (change_list). Lists and unlists only after asking the engine
  // (find_origin) in their turn, so an attach's listing and a detach's unlisting of one name apply in the
  // order of the engine's own attach and detach.
  mutable Mutex mutex_;
  std::vector<OriginSpec> listed_ GUARDED_BY(mutex_);  // attach order
  bool writing_ GUARDED_BY(mutex_) = false;            // a change_list() writes the list (without mutex_)
  CondVar written_;                                    // writing_ went false
};

}  // namespace nbdsnap
