// SPDX-License-Identifier: BSD-3-Clause
// block_device_writes.h — a block device's content fingerprint: whether it was written while nothing tracked
// it, between a clean stop (the CBT state saved) and the next attach.
//
// A regular file shows such writes in its ctime (file_device.cpp); a block device has no such time. The
// kernel counts instead every write and discard that completes on a block device, from the moment the device
// appears, and shows the counts in /sys/dev/block/MAJ:MIN/stat (Linux Documentation/block/stat.rst: field 7
// sectors written, field 14 sectors discarded; sectors, not requests: a flush is counted as a write request
// of no sectors on some devices). Those counts, with the boot's id (/proc/sys/kernel/random/boot_id: the
// counts start again at every boot), are the fingerprint: a write from any program through this device (dd,
// mkfs, a mount, a VM) changes it.
//
// Not seen: writes that reach the same disk through another device (a partition's whole disk, an LVM
// volume's physical volume, a loop device's backing file). Whatever cannot be counted (no sysfs, iostats
// off for the device's queue, another boot) makes the fingerprint differ from every other, so CBT starts a
// new generation: it never resumes over writes it could not have seen.
#pragma once

#include <string>

#include <sys/types.h>

namespace nbdsnap {

// The fingerprint of block device `rdev` now: "block MAJ:MIN boot BOOT-ID sectors written N discarded N",
// or, when the counts cannot be read, "block MAJ:MIN uncounted (WHY) UUID" with a new random UUID, equal to
// no other. The caller first writes back what it wrote through the page cache (fdatasync): writes still
// cached would be counted later, when written back. Reads sysfs and procfs only (no I/O to the device).
// Thread-safe.
std::string block_device_fingerprint(dev_t rdev);
// The uncounted form, for a caller that could not settle the count (its fdatasync failed: `why`).
std::string uncounted_block_device_fingerprint(dev_t rdev, const std::string& why);

// Why a saved content fingerprint and the current one differ, for the log and the generation_renewed event:
// a new boot or uncounted writes of a block device, or "the origin was changed while nothing tracked it".
// REQUIRES: saved != now.
std::string fingerprint_change_reason(const std::string& saved, const std::string& now);

}  // namespace nbdsnap
