// SPDX-License-Identifier: BSD-3-Clause
// storage_allocation.h — the one rule for how a difference-storage file the engine creates (or grows) gets
// its space: fully allocated by default, sparse only when the user asks for it.
//
// Why allocated: copy-on-write must never find the disk full. A sparse file "of 8 GiB" costs nothing at
// create, but its blocks are allocated only when chunks are written, so a full filesystem shows up as ENOSPC
// in the middle of copy-on-write, and the snapshot is corrupted (invariant 2 keeps the origin write, not the
// snapshot). Allocating at create moves that failure to the create, where the user can act on it. Sparse
// files remain available for those who prefer the risk (StorageSpec::sparse). Ranges of existing files or
// devices ({path, offset, length}) are used as they are: the engine allocates nothing there.
#pragma once

#include <cstdint>
#include <string>

#include "status.h"

namespace nbdsnap {

// Makes the regular file open on `fd` (named `path` in messages) `size` bytes long. Not sparse: every byte is
// allocated (posix_fallocate), so later writes cannot fail with ENOSPC. Sparse: only the size is set
// (ftruncate). `original_size` is what the file held before: on failure the file is cut back to it (a new
// file is removed by the caller). Errors: no_space naming the file, the size asked for and the space free on
// its filesystem; not_supported when the filesystem cannot allocate (then sparse storage is the choice left);
// other errors of posix_fallocate/ftruncate. Thread-safe (works on the descriptor only).
Status allocate_storage_file(int fd, const std::string& path, uint64_t size, uint64_t original_size,
                             bool sparse);

// Bytes an unprivileged user may still allocate on the filesystem holding `fd` (statvfs f_bavail), or
// UINT64_MAX when that cannot be told.
uint64_t free_space_of(int fd);

}  // namespace nbdsnap
