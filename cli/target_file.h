// SPDX-License-Identifier: BSD-3-Clause
// target_file.h — opening a local file or block device that a command is about to overwrite (restore --to
// FILE, backup --to FILE): never a disk that another process is using.
//
// Design notes. Every path to a disk passes the tracker (ARCHITECTURE.md): nbdsnapd and the nbdkit filter
// hold an exclusive OFD lock (core/file_lock.h) on every read-write origin and difference-storage file, and
// a shared one with QEMU's "no writers" bytes on read-only origins. A target is therefore opened without
// O_TRUNC and locked exclusively the same way (lock_file) before a byte changes; a locked file is refused,
// naming the holder, and truncated only once the lock is held. The lock lasts until the descriptor is
// closed, so no server can attach the file while the command writes it. A read-write block device is also
// opened O_EXCL, which Linux refuses while it is mounted or an origin of nbdsnapd (file_device.cpp). Files
// the command reads (the files of the backup chain a restore reads) are refused by device and inode, so a
// symbolic or hard link to one is refused as well.
#pragma once

#include <string>
#include <vector>

#include <sys/types.h>

namespace nbdsnap::cli {

struct TargetFileOptions {
  std::string command;        // "restore", "backup": the message's first word
  mode_t mode = 0600;         // of a file created
  bool force_mode = false;    // also set `mode` on an existing file
  bool truncate = false;      // empty an existing regular file (after the lock is held)
  bool block_device = false;  // accept a block device (opened O_EXCL, never truncated)
  bool create = true;         // create an absent file (else an absent file is an I/O error, ENOENT)
  // Directories whose entries the target must not be (by device and inode): a chain directory being read.
  std::vector<std::string> read_directories;
};

// Opens `path` for writing (created with `mode` if absent), locked exclusively for as long as the returned
// descriptor stays open. Throws CliError: exit 1 (code "busy") when another process locks the file or holds
// the block device, exit 2 when it is a file of `read_directories` or of a type not accepted, exit 4 for
// other I/O errors.
int open_target_file(const std::string& path, const TargetFileOptions& options);

}  // namespace nbdsnap::cli
