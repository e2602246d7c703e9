// SPDX-License-Identifier: BSD-3-Clause
// qemu_tools.h — qcow2 files through QEMU only: qemu-img creates, inspects, checks and merges them;
// qemu-nbd serves one (with its backing chain) on a private Unix socket so that the copier reads or writes
// it over NBD. nbdsnap has no qcow2 code of its own: QEMU's is the one that every reader of these files uses.
//
// Each call bounds its wait (kToolBound for quick metadata work, kDataToolBound for commands that copy
// data) and throws CliError (io_error) with the tool's own message when it fails.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

#include <sys/types.h>

#include "helper_directory.h"

namespace nbdsnap::cli {

class ChildProcess;

inline constexpr std::chrono::milliseconds kToolBound{std::chrono::minutes(5)};
inline constexpr std::chrono::milliseconds kDataToolBound{std::chrono::hours(24)};

// Creates path as a qcow2 file of `size` bytes with `mode` (whatever the umask), empty or (backing_file
// not empty) an overlay of backing_file, a name relative to path's directory.
void qemu_img_create_qcow2(const std::string& path, uint64_t size, const std::string& backing_file,
                           mode_t mode);

// QEMU sizes every image in 512-byte sectors: a qcow2 file made for a disk of another size (an origin of
// 1,000,001 bytes) holds the disk rounded up, its tail reading as zeroes. Whether a qcow2 disk of
// `qcow2_size` bytes holds a disk of `disk_size` bytes that way (or exactly). Pure.
bool qcow2_holds_disk_of(uint64_t qcow2_size, uint64_t disk_size);

struct QemuImageInfo {
  std::string format;
  uint64_t virtual_size = 0;
  uint64_t actual_size = 0;      // bytes the file takes on disk
  std::string backing_filename;  // as recorded in the file ("" for none)
};
QemuImageInfo qemu_img_info(const std::string& path);

// `qemu-img check`: "" when the file is consistent, else the tool's findings (leaked clusters count as
// consistent: they waste space but lose nothing).
std::string qemu_img_check(const std::string& path);

// Commits top (and every file between it and base) into base: base then reads as top did. top stays valid
// (qemu-img commit -b implies -d); the files between are invalid afterwards.
void qemu_img_commit(const std::string& top, const std::string& base);

// Bytes of data (not zero, not a hole) stored in the file itself, not in its backing files.
uint64_t qemu_img_stored_bytes(const std::string& path);

// qemu-nbd serving one qcow2 file (and its backing chain) on a Unix socket in a private directory
// (helper_directory.h: removed on SIGINT/SIGTERM/SIGHUP too, and at the next start when the command was
// killed).
class QemuNbdServer {
 public:
  // Starts qemu-nbd and waits (at most kToolBound) until it accepts connections. A writable server does not
  // make the file durable (--cache=unsafe): the caller fsyncs it after stop().
  QemuNbdServer(const std::string& path, bool writable);
  ~QemuNbdServer();  // stop(), ignoring errors
  QemuNbdServer(const QemuNbdServer&) = delete;
  QemuNbdServer& operator=(const QemuNbdServer&) = delete;

  // nbd+unix:///?socket=SOCKET
  const std::string& uri() const { return uri_; }
  // Stops qemu-nbd (it writes what it caches to the file first). Throws when it failed or had died before.
  void stop();

 private:
  std::string path_;
  HelperDirectory directory_;
  std::string socket_;
  std::string uri_;
  std::unique_ptr<ChildProcess> process_;
};

}  // namespace nbdsnap::cli
