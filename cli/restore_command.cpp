// SPDX-License-Identifier: BSD-3-Clause
// restore_command.cpp — restore: qemu-nbd serves the point (its qcow2 file and backing chain) read-only, its
// block status tells data from zeroes, and the copier writes the data, and the zeroes where the target is not
// fresh (an NBD export or a block device still holds old data), to the target.
#include "restore_command.h"

#include <cerrno>
#include <chrono>
#include <cstring>

#include <fcntl.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "chain_directory.h"
#include "chain_prune.h"
#include "copy_arguments.h"
#include "exit_codes.h"
#include "image_copier.h"
#include "nbd_image.h"
#include "private_files.h"
#include "progress_bar.h"
#include "qemu_tools.h"
#include "table.h"
#include "target_file.h"
#include "units.h"

namespace po = boost::program_options;

namespace nbdsnap::cli {

namespace {

constexpr const char* kRestoreSynopsis =
    "restore DIR [--point NAME] --to FILE|URI [--mode MODE] [--progress FD] [--connections N] [--requests N] "
    "[--request-size SIZE]";

struct RestoreJob {
  std::string directory;
  std::string point;  // name or checkpoint; "" for the newest
  std::string to;
  bool to_nbd = false;
  mode_t mode = kPrivateFileMode;
  bool mode_given = false;
  int progress_fd = -1;
  CopyOptions copy;
};

struct RestoreReport {
  const ChainPoint* point = nullptr;
  uint64_t data_bytes = 0;
  uint64_t zero_bytes = 0;
  CopyResult result;
  double seconds = 0;
};

// Every point the restore reads through must be complete and have its file. A prune that did not finish
// leaves the kept point K reading as before (chain_prune.h): through its "pruning" bases while the merge is
// unfinished, the base then holding, for the clusters K reads from it, what it held; or alone once the merged
// file took K's place. So K and the points above it restore, QEMU reading K's backing files as K names them,
// and neither the "pruning" points nor K's size (its file may be the merge) are checked; the points that go
// do not restore.
void check_restorable(const ChainDirectory& chain, const ChainPoint& point) {
  if (point.state == "pruning") {
    throw CliError(ExitCode::server_error, "point " + point.name +
                                               " cannot be restored: a prune that did not finish is removing "
                                               "it (run " +
                                               finish_prune_command(chain) + " to finish it)");
  }
  for (const ChainPoint* link : backing_chain(chain.manifest(), point)) {
    if (link->state == "pruning") continue;
    if (link->state != "complete") {
      throw CliError(ExitCode::server_error, "point " + point.name + " cannot be restored: point " +
                                                 link->name + " it is built on is " + link->state);
    }
    const std::string path = chain.file_of(*link);
    if (!path_exists(path)) {
      throw CliError(ExitCode::io_error, "point " + point.name + " cannot be restored: " + path + " (point " +
                                             link->name + ") is missing");
    }
    const bool merging = !link->backing.empty() && chain.point(link->backing).state == "pruning";
    // A file cut short (a copy of the chain that ran out of space) reads as zeroes past its end: QEMU
    // restores from it without an error. Its size is what the manifest recorded when it was complete.
    struct stat info {};
    const bool regular = ::stat(path.c_str(), &info) == 0 && S_ISREG(info.st_mode);
    if (!regular ||
        (!merging && link->file_bytes != 0 && static_cast<uint64_t>(info.st_size) != link->file_bytes)) {
      throw CliError(ExitCode::io_error,
                     "point " + point.name + " cannot be restored: " + path + " (point " + link->name + ") " +
                         (regular ? "holds " + std::to_string(info.st_size) + " bytes, the manifest says " +
                                        std::to_string(link->file_bytes)
                                  : std::string("is not a regular file")) +
                         ": it is damaged (nbdsnap backup verify " + chain.path() + " names the damage)");
    }
  }
}

// A file target: a block device is written in place, zeroes included; a regular file is created (or
// truncated) sparse with the job's mode. Either is refused while another process uses it (an origin or
// difference storage of a server: target_file.h) or when it is a file of the chain being read. Returns the
// descriptor, which holds the target's lock until closed; `fresh` says whether zeroes may be skipped.
int open_file_target(const RestoreJob& job, const ChainDirectory& chain, uint64_t size, bool& fresh) {
  TargetFileOptions options;
  options.command = "restore";
  options.mode = job.mode;
  options.force_mode = job.mode_given;
  options.truncate = true;
  options.block_device = true;
  options.read_directories = {chain.path()};
  const int fd = open_target_file(job.to, options);
  struct stat info {};
  if (::fstat(fd, &info) == 0 && S_ISBLK(info.st_mode)) {
    uint64_t device_size = 0;
    if (::ioctl(fd, BLKGETSIZE64, &device_size) != 0 || device_size < size) {
      ::close(fd);
      usage_error("--to " + job.to + ": the device holds " + std::to_string(device_size) +
                  " bytes, the point " + std::to_string(size));
    }
    fresh = false;
    return fd;
  }
  if (::ftruncate(fd, static_cast<off_t>(size)) != 0) {
    const int err = errno;
    ::close(fd);
    throw CliError(ExitCode::io_error,
                   job.to + ": cannot size to " + std::to_string(size) + ": " + std::strerror(err));
  }
  fresh = true;
  return fd;
}

void copy_point(Context& context, const RestoreJob& job, const ChainDirectory& chain, RestoreReport& report,
                int target_fd, bool fresh) {
  const ChainPoint& point = *report.point;
  QemuNbdServer server(chain.file_of(point), /*writable=*/false);
  NbdImage source(server.uri(), {kBaseAllocation}, context.global().timeout, NbdImage::Probe::none);
  if (!qcow2_holds_disk_of(source.size(), point.size)) {
    throw CliError(ExitCode::io_error, chain.file_of(point) + " reads as " + std::to_string(source.size()) +
                                           " bytes, the manifest says " + std::to_string(point.size));
  }
  // Only the disk's own bytes: a disk whose size is not a multiple of 512 reads rounded up from qcow2.
  std::vector<ByteRange> data =
      clip_byte_ranges(source.ranges_where(kBaseAllocation, kStateZero, 0), point.size);
  std::vector<ByteRange> zeroes =
      clip_byte_ranges(source.ranges_where(kBaseAllocation, kStateZero, kStateZero), point.size);
  report.data_bytes = total_length(data);
  report.zero_bytes = total_length(zeroes);
  CopyOptions options = job.copy;
  const bool terminal = ::isatty(STDERR_FILENO) == 1 && job.progress_fd < 0;
  const auto start = std::chrono::steady_clock::now();
  if (job.to_nbd) {
    NbdImage target(job.to, {}, context.global().timeout, std::string("--to"));
    if (target.read_only()) usage_error("--to " + job.to + ": the export is read-only");
    if (target.size() < point.size) {
      usage_error("--to " + job.to + ": the export holds " + std::to_string(target.size()) +
                  " bytes, the point " + std::to_string(point.size));
    }
    if (target.size() > point.size) {
      context.err() << "nbdsnap restore: warning: " << job.to << " is larger than the point; bytes after "
                    << point.size << " are left as they are\n";
    }
    options.skip_zero_writes = false;  // the export holds old data where the point reads zeroes
    MachineProgress machine(job.progress_fd, report.data_bytes + report.zero_bytes);
    {
      ProgressBar bar("restore", report.data_bytes + report.zero_bytes, terminal, stderr, &machine);
      report.result =
          copy_ranges(source, server.uri(), data, CopyTarget{-1, &target, job.to}, options, &bar, zeroes);
    }
    machine.finish();
  } else {
    const int fd = target_fd;
    options.skip_zero_writes = fresh;
    options.write_behind = true;  // the fdatasync below then waits for little
    MachineProgress machine(job.progress_fd, report.data_bytes + report.zero_bytes);
    try {
      {
        ProgressBar bar("restore", report.data_bytes + report.zero_bytes, terminal, stderr, &machine);
        report.result =
            copy_ranges(source, server.uri(), data, CopyTarget{fd, nullptr, job.to}, options, &bar, zeroes);
      }
      if (::fdatasync(fd) != 0)
        throw CliError(ExitCode::io_error, job.to + ": sync: " + std::strerror(errno));
    } catch (const CliError& error) {
      // The copier's messages serve backup too: say that a restore failed (its target is named).
      ErrorDetail detail = error.detail();
      if (detail.message == error.what()) detail.message.clear();  // then the new text
      throw CliError(error.code(), "restore of point " + point.name + " failed: " + error.what(), detail);
    }
    machine.finish();
  }
  report.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

void print_restore_report(Context& context, const RestoreJob& job, const RestoreReport& report) {
  const ChainPoint& point = *report.point;
  if (context.json()) {
    context.print_json({{"directory", job.directory},
                        {"point", point.name},
                        {"checkpoint", point.checkpoint},
                        {"to", job.to},
                        {"size", point.size},
                        {"bytes_read", report.result.bytes_read},
                        {"bytes_written", report.result.bytes_written},
                        {"bytes_zeroed", report.result.bytes_zeroed},
                        {"seconds", report.seconds}});
    return;
  }
  KeyValueList list;
  list.add("restored", "point " + point.name +
                           (point.checkpoint.empty() ? "" : " (checkpoint " + point.checkpoint + ")") +
                           " of " + job.directory);
  list.add("to", job.to + " (" + format_size(point.size) + ")");
  char timing[64];
  const double rate = report.seconds > 0 ? static_cast<double>(report.result.bytes_read) / report.seconds : 0;
  std::snprintf(timing, sizeof(timing), "%.2f s, %s/s", report.seconds,
                format_size(static_cast<uint64_t>(rate)).c_str());
  list.add("time", timing);
  list.add("bytes written", std::to_string(report.result.bytes_written) + " (" +
                                format_size(report.result.bytes_written) + "), " +
                                format_size(report.result.bytes_zeroed) + " of zeroes");
  context.out() << list.render();
}

int run_restore(Context& context, const std::vector<std::string>& words) {
  CommandArgs args(kRestoreSynopsis);
  args.options()("point", po::value<std::string>()->value_name("NAME"),
                 "the point (or its checkpoint) to restore; default: the newest")(
      "to", po::value<std::string>()->value_name("FILE|URI"),
      "a file (created sparse), a block device, or an NBD URI (nbd+unix:///ORIGIN?socket=...)")(
      "mode", po::value<std::string>()->value_name("MODE"),
      "permission bits of a file created (octal; default 600)")(
      "progress", po::value<std::string>()->value_name("FD"),
      "write progress lines \"N/100\" to file descriptor FD (as nbdcopy)");
  add_copy_arguments(args);
  args.positional("DIR", 1);
  if (!parse_or_show_help(context, args, words)) return 0;
  if (!args.has("to"))
    usage_error(std::string("restore needs --to FILE|URI\nUsage: nbdsnap ") + kRestoreSynopsis);
  RestoreJob job;
  job.directory = args.text("DIR");
  job.point = args.text("point");
  job.to = args.text("to");
  job.to_nbd = job.to.find("://") != std::string::npos;
  if (args.has("mode")) {
    job.mode = parse_file_mode(args.text("mode"));
    job.mode_given = true;
  }
  if (args.has("progress")) job.progress_fd = parse_progress_fd(args.text("progress"));
  job.copy = copy_options_from(args);

  ChainDirectory chain(job.directory, /*exclusive=*/false, /*create=*/false, /*must_hold_chain=*/true,
                       job.mode);
  RestoreReport report;
  report.point = &chain.point(job.point);
  check_restorable(chain, *report.point);
  // A file target is opened (and locked) before the chain is served, and closed after its sync.
  bool fresh = false;
  const int target_fd = job.to_nbd ? -1 : open_file_target(job, chain, report.point->size, fresh);
  try {
    copy_point(context, job, chain, report, target_fd, fresh);
  } catch (...) {
    if (target_fd >= 0) ::close(target_fd);
    throw;
  }
  if (target_fd >= 0) ::close(target_fd);
  print_restore_report(context, job, report);
  return 0;
}

}  // namespace

std::vector<CommandSpec> restore_command_specs() {
  return {{{"restore"},
           kRestoreSynopsis,
           "write a restore point of a qcow2 backup chain to a file, a device or an NBD export",
           run_restore}};
}

}  // namespace nbdsnap::cli
