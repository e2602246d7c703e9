// SPDX-License-Identifier: BSD-3-Clause
// restore_target.h — the local file or block device `nbdsnap restore --to` writes, such that a restore that
// fails or is stopped half-way never leaves a file that looks like a good restore.
//
// Design notes. A regular file target is written as a partial file beside it, FILE.partial-restore.PID
// (same directory, so the rename is atomic; created with the job's mode, or the mode and owner of the file
// it replaces), and renamed over FILE only once every byte is written and synced (fsync of the file, rename,
// fsync of the directory). Until then FILE is as it was: absent, or its old bytes, locked (target_file.h) so
// no server attaches it meanwhile. A failure removes the partial file; so do SIGINT, SIGTERM and SIGHUP
// (helper_directory.h PartialFile); after a SIGKILL or a crash the next restore to FILE removes the partial
// files of processes that are gone. A replaced file's other hard links keep its old bytes.
// A block device cannot be renamed: it is opened (O_EXCL) and locked before the chain is checked but written
// only after (restore_command.cpp), and a failure after its first write says that it holds a partial restore.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <sys/types.h>

namespace nbdsnap::cli {

class PartialFile;

struct RestoreTargetOptions {
  std::string path;  // --to
  mode_t mode = 0600;
  bool mode_given = false;                    // --mode: else a replaced file's mode is kept
  std::vector<std::string> read_directories;  // the chain: never a target (target_file.h)
};

class RestoreTarget {
 public:
  // Opens and locks what is at the path (nothing is written): an existing regular file or block device is
  // refused as open_target_file() refuses it (busy: exit 1; a file of the chain: exit 2). A block device must
  // hold `size` bytes (else a usage error). Removes partial files of earlier restores to the path whose
  // process is gone.
  RestoreTarget(const RestoreTargetOptions& options, uint64_t size);
  ~RestoreTarget();  // closes; removes the partial file unless committed
  RestoreTarget(const RestoreTarget&) = delete;
  RestoreTarget& operator=(const RestoreTarget&) = delete;

  // REQUIRES: not begun. Creates the partial file, sized `size` (sparse), for a regular file; nothing for a
  // block device. From then on fd() is the descriptor to write.
  void begin();
  int fd() const { return write_fd_; }
  // Whether unwritten ranges already read as zeroes (a new sparse file).
  bool fresh() const { return !block_device_; }
  bool block_device() const { return block_device_; }
  // The file the bytes go to (the partial file, or the device).
  const std::string& written_path() const;

  // REQUIRES: begun. Syncs what was written; a file is renamed over the target and its directory synced.
  void commit();
  // What a failure leaves at the target, for the error message: "" before the first write; for a file,
  // that it is unchanged (the partial file removed); for a device, that it holds a partial restore.
  std::string failure_note() const;

 private:
  void remove_partial();

  RestoreTargetOptions options_;
  uint64_t size_;
  std::string final_path_;  // the path, or the file a symbolic link names
  std::string partial_path_;
  bool block_device_ = false;
  bool existed_ = false;
  uid_t owner_ = 0;
  gid_t group_ = 0;
  mode_t existing_mode_ = 0;
  int target_fd_ = -1;  // the existing file or the device, locked
  int write_fd_ = -1;   // the partial file, or target_fd_ for a device
  bool begun_ = false;
  bool committed_ = false;
  std::unique_ptr<PartialFile> signal_removal_;
};

// The partial file of a restore by process `pid` to `path` (DIR/NAME -> DIR/NAME.partial-restore.PID).
std::string partial_restore_path(const std::string& path, pid_t pid);

}  // namespace nbdsnap::cli
