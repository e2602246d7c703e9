// SPDX-License-Identifier: BSD-3-Clause
// qemu_convert.h — a full qcow2 restore point written by QEMU in one process: `qemu-img convert` reads the
// image over NBD and writes the new qcow2 file itself, and `qemu-img compare` re-reads both for --verify.
//
// Why: through qemu-nbd every byte took a second NBD hop (nbdsnap reads the image, then sends it to qemu-nbd,
// which writes the file), and on a 2-CPU machine the copy of a 1 GiB image took 1.6-2.4 s against 0.84 s for
// qemu-img convert of the same image (bench/backup, B1). Incremental points still go through qemu-nbd: they
// write only the changed ranges, which qemu-img convert cannot be told. So do TLS image URIs and URIs with
// libnbd-only parameters, which QEMU cannot open as they are.
//
// While qemu-img writes, a thread hands what it wrote to the disk (sync_file_range), so the caller's fsync
// finds little left. The tools print their progress (-p); it drives the progress bar and --progress=FD. A
// tool that shows no sign of work for the bound (no new progress, no byte written, no CPU time used) is
// stopped and named: QEMU's NBD client waits for a reply without a bound of its own, so without this a
// stopped server would hang the backup.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

#include <sys/types.h>

namespace nbdsnap::cli {

class ProgressBar;

// Whether QEMU can open this NBD URI as given and reads the export libnbd would: nbd:// or nbd+tcp:// with a
// host and no query, or nbd+unix:// with no host and exactly one parameter, socket=; no fragment. Pure.
bool qemu_can_read_uri(const std::string& uri);

// Writes the whole image at `uri` (raw) into `path` as a new qcow2 file with no backing file and the given
// mode (whatever the umask); zero ranges stay unallocated. The file is in the page cache only: the caller
// syncs it. `progress` is advanced by up to `progress_total` bytes as qemu-img reports its share done. Throws
// CliError (io_error) with qemu-img's message when it fails, or when it shows no sign of work for
// `stall_bound`; path is removed then.
void qemu_img_convert_to_qcow2(const std::string& uri, const std::string& path, mode_t mode,
                               std::chrono::milliseconds stall_bound, ProgressBar& progress,
                               uint64_t progress_total);

// Compares the image at `uri` (raw) with the qcow2 file `path` (and its backing chain) byte for byte with
// qemu-img compare. Returns "" when they read the same, else qemu-img's finding (the first differing offset).
// Throws CliError (io_error) when the comparison itself fails or stalls (as above).
std::string qemu_img_compare_with_image(const std::string& uri, const std::string& path,
                                        std::chrono::milliseconds stall_bound, ProgressBar& progress,
                                        uint64_t progress_total);

// The share done (0-100) in the last "(P/100%)" of a qemu-img -p output, or -1 if there is none. Pure.
double qemu_progress_percent(const std::string& output);

// Output of a qemu-img -p run without its progress lines, for messages. Pure.
std::string without_qemu_progress(const std::string& output);

}  // namespace nbdsnap::cli
