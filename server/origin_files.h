// SPDX-License-Identifier: BSD-3-Clause
// origin_files.h — the origins nbdsnapd serves from files and block devices: opens and attaches them (the
// engine refuses one file twice, see BlockDevice::file_identity), and keeps the origin list (origin_list.h)
// in step with what is attached, so a restart serves the same origins.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
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
  // Lists NAME (PATH made absolute), then opens PATH and attaches it as origin NAME: the list names every
  // origin served, so a restart serves it again. Errors: the list save's (the state directory full,
  // read-only or failing: nothing is attached), busy while another attach of NAME runs or another call's
  // list write stalls for 10 s, and the open's and the engine's (the listing is then taken back).
  // attached, when given, receives the origin as the engine attached it.
  Status attach(const std::string& name, const std::string& path, bool read_only,
                OriginInfo* attached = nullptr);
  // What unlist() found.
  enum class Unlisted {
    dropped,     // listed and dropped, and the list saved
    not_listed,  // nothing to drop
    attached,    // the engine has NAME attached, or an attach of it has listed it: the entry is theirs
  };
  // Drops NAME from the list while the engine has no origin of that name and no attach of it runs: after a
  // detach, or when it is listed but could not be attached at start. An attach that has listed NAME is
  // waited for (at most 10 s) with wait_for_attach, which a detach needs once the engine has detached the
  // origin (only the attach's end tells whether the entry stays; a failed one puts back the detached
  // origin's), else refused at once. Errors: busy (an attach of NAME), the list save's (NAME stays listed,
  // in the file and here, so the next start attaches it again and a later unlist tries again); `outcome`
  // is then unset.
  Status unlist(const std::string& name, Unlisted& outcome, bool wait_for_attach);

 private:
  // attach_at_start's: opens, attaches and lists one origin.
  Status attach_locked(const OriginSpec& spec) REQUIRES(mutex_);
  // Opens the file and attaches it in the engine; lists nothing. May wait for a stalled file system.
  // attached: as Engine::attach_origin's.
  Status open_and_attach(const OriginSpec& spec, OriginInfo* attached);
  // Lists an origin the engine has attached, in place of a listed one of its name that was not attached.
  void list_attached_locked(const OriginSpec& spec) REQUIRES(mutex_);
  // attach()'s: lists `spec` and marks its name pending, in place of a listed one of the name (returned in
  // `replaced`), or refuses (the engine's refusal for a name or disk in use, busy while pending).
  Status list_pending(const OriginSpec& spec, std::optional<OriginSpec>& replaced) EXCLUDES(mutex_);
  // attach()'s, once the engine's attach has ended: takes the listing back unless attached (putting back
  // `replaced`), then ends the pending state.
  void end_pending(const OriginSpec& spec, bool attached, const std::optional<OriginSpec>& replaced)
      EXCLUDES(mutex_);
  Status save_list_locked() REQUIRES(mutex_);
  // busy: an attach of NAME has listed it and its engine attach has not ended.
  static Status pending_attach(const std::string& name);
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
  // Guards the list, its writer's turn and the pending names. Held across the engine's attach only at
  // start; a control attach lists first (pending), then opens and attaches without it, and the list is
  // written without it (change_list, one writer at a time: the last list written is the newest). An unlist
  // waits for a pending name and asks the engine in its turn, so the list always names every origin the
  // engine serves, whatever order attaches and detaches of one name come in.
  mutable Mutex mutex_;
  std::vector<OriginSpec> listed_ GUARDED_BY(mutex_);  // attach order
  bool writing_ GUARDED_BY(mutex_) = false;            // a change_list() writes the list (without mutex_)
  CondVar written_;                                    // writing_ went false
  std::set<std::string> pending_ GUARDED_BY(mutex_);   // listed by an attach whose engine attach runs
  CondVar pending_done_;                               // a name left pending_
};

}  // namespace nbdsnap
