// SPDX-License-Identifier: BSD-3-Clause
// durable_file.h — replacing a small state file (CBT state, storage ledger, origin list) so that a crash,
// a full disk or a failing write leaves either the old file or the new one, never a torn or empty one.
#pragma once

#include <sys/types.h>

#include <string>

#include "status.h"

namespace nbdsnap {

// Writes `bytes` to PATH+kTemporaryFileSuffix (object_file_name.h), syncs it, renames it over PATH and
// syncs PATH's directory, so the rename survives a crash too. On any failure the temporary file is
// removed, PATH is left as it was, and the Status carries the failing call's errno (ENOSPC, EROFS,
// ENAMETOOLONG, EIO...) and names the file. A short write counts as ENOSPC. mode: permissions of a new
// file. Blocks as long as the file system stalls. Thread-safe for distinct paths; callers serialise
// writers of one path (the last rename wins).
Status replace_file_durably(const std::string& path, const std::string& bytes, mode_t mode = 0644);

}  // namespace nbdsnap
