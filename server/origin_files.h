// SPDX-License-Identifier: BSD-3-Clause
// origin_files.h — the origins nbdsnapd serves from files and block devices: opens and attaches them (the
// engine refuses one file twice, see BlockDevice::file_identity), and keeps the origin list (origin_list.h)
// in step with what is attached, so a restart serves the same origins.
#pragma once

#include <cstdint>
#include <set>
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
  // Opens PATH (made absolute) and attaches it as origin NAME, then lists it.
  Status attach(const std::string& name, const std::string& path, bool read_only);
  // Drops NAME from the list after the engine detached it, or when it is listed but was never attached.
  // Returns whether it was listed.
  bool forget(const std::string& name);

 private:
  // attach_at_start's: opens, attaches and lists one origin.
  Status attach_locked(const OriginSpec& spec) REQUIRES(mutex_);
  // Opens the file and attaches it in the engine; lists nothing. May wait for a stalled file system. Sets
  // `identity` to the opened file's (FileDevice::file_identity).
  Status open_and_attach(const OriginSpec& spec, std::string& identity);
  // Lists an origin the engine has attached, in place of a listed one of its name that was not attached.
  void list_attached_locked(const OriginSpec& spec) REQUIRES(mutex_);
  void save_list_locked() REQUIRES(mutex_);

  Engine& engine_;
  OriginList list_;
  const FileCache cache_;
  // Guards the list and serialises its writes (state directory I/O: the last list written is the newest).
  // Held across the engine's attach only at start; a control attach opens and attaches without it.
  mutable Mutex mutex_;
  std::vector<OriginSpec> listed_ GUARDED_BY(mutex_);  // attach order
  std::set<std::string> attached_ GUARDED_BY(mutex_);
};

}  // namespace nbdsnap
