// SPDX-License-Identifier: BSD-3-Clause
// backup_plan.h — full or incremental? The rule that decides whether an incremental backup may build on the
// previous copy, and the message saying why not when it falls back to a full backup (pure, unit-tested).
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>

#include "backup_sidecar.h"

namespace nbdsnap::cli {

struct BackupFacts {
  std::string since;  // --since CHECKPOINT ("" for a full backup)
  std::string backup_file;
  bool backup_file_exists = false;
  uint64_t backup_file_size = 0;
  std::optional<BackupRecord> previous;  // the sidecar, if any
  uint64_t image_size = 0;
  std::string origin;
  std::string snapshot;  // the image's snapshot ("" when the backup reads an origin export)
  // The CBT the backup reads: the image's own (frozen at its take), or the live one for an origin export.
  std::string generation;
  // Its checkpoints: name -> when the server took it (unix ms, the server's clock; 0 unknown). A take
  // replaces a checkpoint of its name, so the name alone does not say which take a backup holds.
  std::map<std::string, int64_t> checkpoints;
  std::string since_problem;  // the server's answer for `since` when it is not among them
  // That answer was checkpoint_gone: the server knew the checkpoint (deleted, dropped as older than those
  // kept, or lost with the CBT history), so a full backup is the known way on; a name it never knew is
  // not_found.
  bool since_gone = false;
};

struct BackupPlan {
  bool incremental = false;
  std::string fallback_reason;  // set when --since was given but a full backup is needed
};

BackupPlan plan_backup(const BackupFacts& facts);

}  // namespace nbdsnap::cli
