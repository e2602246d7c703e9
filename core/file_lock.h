// SPDX-License-Identifier: BSD-3-Clause
// file_lock.h — locks on origin and difference-storage files, so that other processes (a second nbdsnapd,
// qemu-io, a VM) cannot write them behind the tracker, and naming whoever holds a lock we are refused.
//
// Design notes
// - Open file description (OFD) locks, fcntl F_OFD_SETLK: they belong to the open file, not to a thread or a
//   process, so they hold for every thread of a front end and are released when the last descriptor of the
//   open file closes (also by a crash). Two opens of one file conflict even inside one process, so a file
//   opened twice by nbdsnap (as two origins, or as an origin and storage) is refused as well. QEMU locks its
//   images with the same kind of lock (block/file-posix.c: raw_apply_lock_bytes, raw_check_lock_bytes).
// - QEMU's scheme, found by experiment with qemu-io 7.2 and read in file-posix.c: for each permission P
//   (0 consistent read, 1 write, 3 resize) a user of P holds a shared lock on byte 100+P, and a user that
//   forbids others P holds a shared lock on byte 200+P. Opening for P, QEMU fails if byte 200+P is locked;
//   a writer (qemu-io without -r) holds bytes 100 and 101, a reader (qemu-io -r) byte 100.
// - Read-write files (origins, difference storage): one exclusive lock on the whole file. Every QEMU opener
//   fails on it ("Failed to lock byte 100"), readers too: nobody should read a disk that changes under
//   copy-on-write and CBT as a consistent image, and another nbdsnap fails to lock it for any use.
// - Read-only origins: shared locks on bytes 100 (we read), 201 (no one may write) and 203 (no one may
//   resize), QEMU's own lock bytes for a reader that forbids writes. qemu-io -r and another read-only nbdsnap
//   still open the file; qemu-io and qemu-img writing or resizing fail ("Failed to get "write" lock"); a
//   read-write nbdsnap fails to take its exclusive lock. After locking, bytes 101 and 103 are tested: a
//   process already writing or resizing the file (a QEMU writer) makes the open fail. Lock first, test
//   second, as QEMU does, so two openers racing see each other.
// - A refused lock names the holder: OFD locks show l_pid -1 to F_OFD_GETLK, so, as lslocks does, every
//   /proc/PID/fdinfo/FD is read for "lock:" lines on the file's device and inode. A holder in another
//   PID namespace, or of another user when we are not root, is not found; the message then says so. A
//   refusal whose holder is not found is tried again a few times first: a holder that let go between the
//   refusal and the scan leaves the file free, and the open then succeeds.
// - Block devices take the same locks on their device node. Read-write block devices are also opened with
//   O_EXCL (file_device.cpp), which Linux refuses while the device is mounted or opened O_EXCL elsewhere.
// - A loop device and its backing file are two inodes whose locks never meet, yet writes to one land in the
//   other: a user of a loop device also takes its lock on the whole backing file (LoopBackingLock in
//   file_device.h), so a server on the file and one on the loop device refuse each other in either order.
#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

#include "status.h"

namespace nbdsnap {

enum class FileLockMode {
  exclusive,    // read-write origins and difference storage: nobody else may use the file
  shared_read,  // read-only origins: others may read, nobody may write or resize
};

// Takes the lock of `mode` on `fd`, an open descriptor of `path` (read-write for exclusive). Returns
// busy ("PATH is locked by another process (qemu-io, pid 1234)..."), already_exists when the holder is this
// process (the file is already an origin or difference storage here), or the errno of a failed fcntl
// (a file system without lock support: ENOLCK, EOPNOTSUPP...). The lock lasts until the open file is closed.
// Thread-safe.
Status lock_file(int fd, const std::string& path, FileLockMode mode);

struct LockHolder {
  pid_t pid = 0;
  std::string command;  // /proc/PID/comm
};

// Processes holding a lock (OFD or POSIX) on the file with device `dev` and inode `ino` that overlaps bytes
// [start, start+length) (length 0: to the end) and conflicts with a lock of `mode`: any lock for exclusive,
// write locks for shared_read. Reads /proc/*/fdinfo; processes it may not read are skipped. Each process
// once, in pid order.
std::vector<LockHolder> find_lock_holders(dev_t dev, ino_t ino, off_t start, off_t length, FileLockMode mode);

}  // namespace nbdsnap
