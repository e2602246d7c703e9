// SPDX-License-Identifier: BSD-3-Clause
// backup_sidecar.h — FILE.nbdsnap-backup: what a backup file holds (image, checkpoint, CBT generation),
// so the next incremental backup knows whether it may build on it.
//
// The sidecar is rewritten as "incomplete" before the backup file is touched and as "complete" after its
// data is synced, so an interrupted backup never passes for a usable base.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

#include <sys/types.h>

namespace nbdsnap::cli {

struct BackupRecord {
  bool complete = false;
  std::string kind;  // "full" or "incremental"
  std::string image_uri;
  std::string origin;
  std::string snapshot;
  std::string checkpoint;  // the CBT checkpoint the file's content corresponds to ("" if none)
  // When the server took that checkpoint (unix ms, its clock; 0 unknown, as in records of older versions): a
  // take of the same name later makes a new checkpoint, which this file does not hold (backup_plan.h).
  int64_t checkpoint_taken_unix_ms = 0;
  std::string generation;  // the origin's CBT generation at backup time ("" if unknown)
  uint64_t size = 0;       // image size in bytes
  uint64_t bytes_read = 0;
  int64_t completed_unix_ms = 0;
};

std::string sidecar_path(const std::string& backup_file);

nlohmann::json backup_record_to_json(const BackupRecord& record);
// Throws CliError (io_error) for JSON that is not a sidecar of ours.
BackupRecord backup_record_from_json(const nlohmann::json& json);

// Reads the sidecar of backup_file; nullopt when there is none. Throws CliError (io_error) when unreadable.
std::optional<BackupRecord> load_backup_record(const std::string& backup_file);
// Writes it atomically (temporary file + rename), with `mode` (it describes disk contents: 0600 by
// default, whatever the umask). Throws CliError (io_error).
void save_backup_record(const std::string& backup_file, const BackupRecord& record, mode_t mode = 0600);

}  // namespace nbdsnap::cli
