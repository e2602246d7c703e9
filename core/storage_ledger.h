// SPDX-License-Identifier: BSD-3-Clause
// storage_ledger.h — remembers, in the state directory, the difference-storage files the engine created,
// so files left behind by a crash (snapshots never survive a restart) are removed at the next start.
#pragma once

#include <string>
#include <vector>

#include "status.h"

namespace nbdsnap {

class StorageLedger {
 public:
  explicit StorageLedger(std::string state_dir) : dir_(std::move(state_dir)) {}
  bool enabled() const { return !dir_.empty(); }
  // Removes the files a previous run listed and clears the list. A listed file some process holds locked (it
  // became another nbdsnap's storage since) is left alone. Returns the paths that were removed.
  std::vector<std::string> remove_leftovers() const;
  // Replaces the list with `paths` (written atomically).
  Status record(const std::vector<std::string>& paths) const;

 private:
  std::string path() const { return dir_ + "/storage-files.json"; }
  std::string dir_;
};

}  // namespace nbdsnap
