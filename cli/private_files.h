// SPDX-License-Identifier: BSD-3-Clause
// private_files.h — files that hold disk contents (backup files, qcow2 chain files, manifests, restored
// disks): created with an explicit mode whatever the umask (0600 unless the user says otherwise with
// --mode), written atomically where a half-written file would mislead, synced before they count.
//
// Every function throws CliError: io_error naming the path and the errno text, usage for a bad --mode.
#pragma once

#include <string>

#include <sys/types.h>

namespace nbdsnap::cli {

inline constexpr mode_t kPrivateFileMode = 0600;

// --mode MODE: octal permission bits ("600", "0640"); at most 0777, else a usage error.
mode_t parse_file_mode(const std::string& text);
// The mode of a directory holding files of `file_mode`: the read bits also get the search bit, and the
// owner always has rwx.
mode_t directory_mode_for(mode_t file_mode);

// Opens path for writing, creating it with `mode` (fchmod after open, so the umask cannot widen or narrow
// it) or truncating it (keeping its mode unless `force_mode`). Returns the descriptor.
int open_private_file(const std::string& path, mode_t mode, bool truncate, bool force_mode = false);
// Creates path as a new file with `mode` (fails with EEXIST if it exists), closed again.
void create_private_file(const std::string& path, mode_t mode);
// Writes `text` to path atomically: a temporary file with `mode` beside it, fsync, rename, fsync of the
// directory. Throws CliError (io_error) when path or its temporary exists as anything but a regular file
// (a device node, symbolic link, FIFO, directory), which the rename would replace.
void write_file_atomically(const std::string& path, const std::string& text, mode_t mode);
// The whole file as text. Throws io_error (ENOENT included).
std::string read_whole_file(const std::string& path);
// Creates the directory with `mode` if it does not exist (its parent must); a path that exists and is not
// a directory is a usage error.
void make_private_directory(const std::string& path, mode_t mode);
// fsync of a file or a directory by path.
void sync_path(const std::string& path);
// Starts writing a file's dirty pages back without waiting (sync_file_range WRITE over the whole file), so a
// later sync_path waits less, e.g. when the file is read for its checksum meanwhile. Only a hint: errors are
// ignored (sync_path reports them).
void start_writeback(const std::string& path);
// Removes a file; a file that is already gone is fine.
void remove_file(const std::string& path);
// Whether a path exists (any type).
bool path_exists(const std::string& path);

// A lock on a directory against other nbdsnap processes (flock on DIR/LOCKNAME, created with `mode`):
// exclusive for commands that change the directory, shared for those that only read it. Never waits: a
// directory in use is refused at once with a message naming it.
class DirectoryLock {
 public:
  DirectoryLock(const std::string& directory, const std::string& lock_name, bool exclusive, mode_t mode);
  ~DirectoryLock();
  DirectoryLock(const DirectoryLock&) = delete;
  DirectoryLock& operator=(const DirectoryLock&) = delete;

 private:
  int fd_ = -1;
};

}  // namespace nbdsnap::cli
