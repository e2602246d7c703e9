// SPDX-License-Identifier: BSD-3-Clause
// disk_use.h — which bytes of which file or disk the engine uses, so that none is used twice: as two origins,
// as an origin and difference storage (copy-on-write would overwrite the data it preserves), or as storage
// twice.
//
// An origin uses its whole disk; a difference storage area uses a range of its file or device
// (storage_spec.h). Files and disks are named by BlockDevice::file_identity(), whatever path or device node
// reached them; a loop device is named by its backing file (file_device.cpp), so a file and a loop device
// over it are one disk. A loop device that starts inside its file (lo_offset, or a partition of it) is named
// "IDENTITY at OFFSET": any use of it overlaps every use of that file (conservative: ranges are not shifted).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace nbdsnap {

struct DiskUse {
  std::string identity;  // BlockDevice::file_identity(): "file DEV:INODE", "block MAJ:MIN", + " at OFFSET"
  uint64_t offset = 0;
  uint64_t length = 0;  // 0: everything from offset on (an origin: the whole disk)
  std::string user;     // for messages: "origin 'disk0'", "difference storage of snapshot 's1'"

  // Same identity (not empty) and at least one byte in common; or the same disk at two starting points.
  bool overlaps(const DiskUse& other) const;
  // "bytes 0..1048575 of" or "all of", for messages.
  std::string extent_text() const;
};

// The first use in `uses` that overlaps `wanted`, or null.
const DiskUse* find_overlap(const std::vector<DiskUse>& uses, const DiskUse& wanted);

}  // namespace nbdsnap
