// SPDX-License-Identifier: BSD-3-Clause
// durable_file.h — replacing a small state file (CBT state, storage ledger, origin list) so that a crash,
// a full disk or a failing write leaves either the old file or the new one, never a torn or empty one.
#pragma once

#include <sys/types.h>

#include <string>

#include "status.h"

namespace nbdsnap {

// How `mode` applies to the new file: less the process's umask (state files: the operator's UMask decides),
// or exactly (the CLI's backup files, whose mode follows the backup's, whatever the umask).
enum class NewFileMode { less_umask, exactly };

// Writes `bytes` to PATH+kTemporaryFileSuffix (object_file_name.h), syncs it, renames it over PATH and
// syncs PATH's directory, so the rename survives a crash too. The temporary file is always created anew (a
// leftover of an interrupted write is removed first, and O_EXCL never follows a symbolic link placed there).
// On any failure the temporary file is removed, PATH is left as it was, and the Status carries the failing
// call's errno (ENOSPC, EROFS, ENAMETOOLONG, EIO...) and names the file. A short write counts as ENOSPC.
// mode: permissions of the new file, applied as `how` says. Blocks as long as the file system stalls.
// Thread-safe for distinct paths; callers serialise writers of one path (the last rename wins).
Status replace_file_durably(const std::string& path, const std::string& bytes, mode_t mode = 0644,
                            NewFileMode how = NewFileMode::less_umask);

}  // namespace nbdsnap
