// SPDX-License-Identifier: BSD-3-Clause
// storage_spec.h — what a user names as difference storage: a whole file or block device (created at a size
// if asked), or a range of bytes of an existing one (blksnap v4 takes sector ranges of any block device).
//
// The text form both front ends and the CLI read, where nothing can be taken for a file name by accident:
//   PATH                  the whole existing file or block device (PATH contains no ':')
//   PATH:SIZE             the file, created (or grown) to SIZE bytes: 2G, 512M
//   PATH:OFFSET+LENGTH    LENGTH bytes from OFFSET of an existing file or block device: 0+10G, 10G+10G
//   PATH:                 the whole existing PATH, for a PATH that itself contains ':'
// The last ':' always splits: what follows it must be a size or a range (or nothing), else the spec is
// refused with a message saying so, instead of becoming a file named "x:-5M". The control protocol carries
// the same as JSON fields {path, size} or {path, offset, length} (docs/control.md).
#pragma once

#include <cstdint>
#include <string>

#include "status.h"

namespace nbdsnap {

struct StorageSpec {
  std::string path;
  uint64_t size = 0;    // whole-file form: create or grow the file to this size (0: the existing size)
  uint64_t offset = 0;  // range form: first byte of the range in the file or device
  uint64_t length = 0;  // range form: bytes of the range (0: to the end of the file or device)
  // Whole-file form with a size: set the size only, allocating nothing ahead (storage_allocation.h). The file
  // costs no space at create, but copy-on-write may then find its filesystem full and corrupt the snapshot;
  // an origin write that meets ENOSPC there takes the file's blocks back (Snapshot::give_up_storage).
  // Not for ranges or existing files used at their size: the engine allocates nothing there anyway.
  bool sparse = false;

  bool is_range() const { return offset != 0 || length != 0; }
  // "PATH", "PATH:2G" or "PATH:10G+10G" (sizes in bytes), for messages.
  std::string to_string() const;
};

// Reads the text form above. invalid_argument (or overflow) in words a user acts on: which part is wrong and
// how to write it.
Status parse_storage_spec(const std::string& text, StorageSpec& out);

// Checks a spec however it arrived (text or JSON): a path; size and a range not both; a range whose end fits
// in 64 bits. invalid_argument naming the spec otherwise.
Status check_storage_spec(const StorageSpec& spec);

}  // namespace nbdsnap
