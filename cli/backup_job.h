// SPDX-License-Identifier: BSD-3-Clause
// backup_job.h — what `nbdsnap backup` was asked to do and what it reports, shared by the raw-file backup
// (backup_command.cpp) and the qcow2 chain backup (chain_backup.cpp).
#pragma once

#include <cstdint>
#include <string>

#include <sys/types.h>

#include "backup_plan.h"
#include "image_copier.h"

namespace nbdsnap::cli {

enum class BackupFormat { raw, qcow2 };

struct BackupJob {
  std::string uri;
  std::string file;  // raw: the backup file; qcow2: the chain directory
  BackupFormat format = BackupFormat::raw;
  std::string since;
  bool allow_full = false;  // --since naming a checkpoint the server does not know falls back to full
  bool verify = false;
  mode_t mode = 0600;       // of the files created
  bool mode_given = false;  // --mode: also applied to files that exist
  int progress_fd = -1;     // --progress=FD
  CopyOptions copy;
};

struct BackupReport {
  BackupPlan plan;
  std::string origin;
  std::string snapshot;
  std::string ranges_source;
  std::string checkpoint;
  std::string generation;
  std::string point;       // qcow2: the point written
  std::string point_file;  // qcow2: its file
  uint64_t image_size = 0;
  uint64_t bytes_read = 0;
  uint64_t bytes_written = 0;
  uint64_t bytes_zeroed = 0;
  uint64_t verify_bytes_read = 0;
  std::string verify_result = "checksums match";  // how --verify found the copy right, for the summary
  double seconds = 0;
};

}  // namespace nbdsnap::cli
