// SPDX-License-Identifier: BSD-3-Clause
// restore_command.cpp — restore: qemu-nbd serves the point (its qcow2 file and backing chain) read-only, its
// block status tells data from zeroes, and the copier writes the data, and the zeroes where the target is not
// fresh (an NBD export or a block device still holds old data), to the target.
//
// Design notes. Nothing is written to the target until every file the restore reads matched its checksum in
// the manifest: a file with bit rot, or two point files swapped, would otherwise restore other bytes without
// an error (QEMU has no checksums of its own). The check is a read of each file before the copy, not a hash
// of what qemu-nbd reads: the checksum is over the whole file, which the copy reads only in part (the point's
// allocated clusters, through the chain), and a block device or an NBD export written before the check ended
// could not be put back. It costs one more sequential read of the chain's files (XXH3-128: CPU cost small
// beside the read; see docs/nbdsnap.pod). A file target is written beside it and renamed into place once
// complete (restore_target.h).
#include "restore_command.h"

#include <chrono>
#include <memory>
#include <vector>

#include <sys/stat.h>
#include <unistd.h>

#include "chain_directory.h"
#include "chain_prune.h"
#include "chain_verify.h"
#include "copy_arguments.h"
#include "exit_codes.h"
#include "image_copier.h"
#include "nbd_image.h"
#include "private_files.h"
#include "progress_bar.h"
#include "qemu_tools.h"
#include "restore_target.h"
#include "table.h"
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

// The files a restore of `point` reads, base first, which must match their checksums before it writes: every
// file of its backing chain, but for a prune that did not finish (check_restorable): the base its merge
// writes into (links[0], "pruning") no longer matches its checksum; and once the merge was renamed over the
// kept point K's file, K's file is new (the manifest still records the old one's checksum) and reads alone,
// so neither K nor its "pruning" bases are read. Those are named in `unchecked`.
std::vector<const ChainPoint*> files_to_check(const ChainDirectory& chain, const ChainPoint& point,
                                              std::vector<std::string>& unchecked) {
  const std::vector<const ChainPoint*> links = backing_chain(chain.manifest(), point);
  size_t first = 0;
  for (size_t i = 0; i < links.size(); ++i) {
    const ChainPoint& link = *links[i];
    if (link.state == "pruning" || link.backing.empty() || chain.point(link.backing).state != "pruning")
      continue;
    // links[i] is K, the kept point of the unfinished prune.
    if (qemu_img_info(chain.file_of(link)).backing_filename.empty()) {
      unchecked.push_back(chain.file_of(link) + " (point " + link.name + ", merged by the prune)");
      first = i + 1;
    } else {
      unchecked.push_back(chain.file_of(*links[0]) + " (point " + links[0]->name + ", merged into)");
      first = 1;
    }
  }
  return {links.begin() + static_cast<std::ptrdiff_t>(first), links.end()};
}

// Throws CliError (io_error, as for a file cut short) when a file the restore reads does not match the
// manifest, naming the file, its point, what the manifest expects and what to do. Nothing is written yet.
void check_checksums(const ChainDirectory& chain, const RestoreJob& job, const ChainPoint& point,
                     const std::vector<const ChainPoint*>& files, ProgressBar& bar) {
  for (const ChainPoint* link : files) {
    const std::string problem = checksum_problem(chain, *link, [&](uint64_t bytes) { bar.add(bytes); });
    if (problem.empty()) continue;
    std::string older;  // the newest complete point before the damaged one: it cannot be built on it
    for (const ChainPoint& candidate : chain.manifest().points) {
      if (&candidate == link) break;
      if (candidate.state == "complete") older = candidate.name;
    }
    throw CliError(ExitCode::io_error,
                   "point " + point.name + " cannot be restored: point " + link->name +
                       "'s file does not match " + "the manifest: " + problem + ". Nothing was written to " +
                       job.to + ". Run 'nbdsnap backup " + "verify " + chain.path() +
                       "' to see every damaged point; restore " +
                       (older.empty() ? std::string("from another copy of the chain")
                                      : "an older point (--point " + older +
                                            ", verify it first) or from another " + "copy of the chain"));
  }
}

uint64_t file_bytes_of(const ChainDirectory& chain, const std::vector<const ChainPoint*>& files) {
  uint64_t total = 0;
  for (const ChainPoint* link : files) {
    struct stat info {};
    if (::stat(chain.file_of(*link).c_str(), &info) == 0) total += static_cast<uint64_t>(info.st_size);
  }
  return total;
}

// Checks the files the point reads against the manifest, serves the point, and only then writes the target:
// an NBD export (`target` null) or a local file or device.
void copy_point(Context& context, const RestoreJob& job, const ChainDirectory& chain, RestoreReport& report,
                RestoreTarget* target) {
  const ChainPoint& point = *report.point;
  std::vector<std::string> unchecked;
  const std::vector<const ChainPoint*> files = files_to_check(chain, point, unchecked);
  for (const std::string& file : unchecked) {
    context.err() << "nbdsnap restore: warning: " << file
                  << " is not checked against the manifest: a prune did not finish (run "
                  << finish_prune_command(chain) << " to finish it)\n";
  }
  const bool terminal = ::isatty(STDERR_FILENO) == 1 && job.progress_fd < 0;
  const uint64_t check_bytes = file_bytes_of(chain, files);
  // The checksums come first, before qemu-nbd opens a file: a damaged chain (a point file in its own backing
  // file's place) can make qemu-nbd fail or never answer. They have a bar of their own on a terminal;
  // --progress FD counts the copy only, as before (agents and tests take its first lines for the copy having
  // begun).
  {
    ProgressBar bar("verify", check_bytes, terminal, stderr);
    check_checksums(chain, job, point, files, bar);
  }
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
  MachineProgress machine(job.progress_fd, report.data_bytes + report.zero_bytes);
  const auto start = std::chrono::steady_clock::now();
  if (target == nullptr) {
    NbdImage nbd_target(job.to, {}, context.global().timeout, std::string("--to"));
    if (nbd_target.read_only()) usage_error("--to " + job.to + ": the export is read-only");
    if (nbd_target.size() < point.size) {
      usage_error("--to " + job.to + ": the export holds " + std::to_string(nbd_target.size()) +
                  " bytes, the point " + std::to_string(point.size));
    }
    if (nbd_target.size() > point.size) {
      context.err() << "nbdsnap restore: warning: " << job.to << " is larger than the point; bytes after "
                    << point.size << " are left as they are\n";
    }
    options.skip_zero_writes = false;  // the export holds old data where the point reads zeroes
    // One flush before the first write: a server that refuses what it advertised would otherwise fail the
    // restore part way, its export partly overwritten. nbdkit 1.32 under -o (oldstyle) advertises flush,
    // FUA, trim and write zeroes and refuses each with EINVAL; found here, the export is untouched.
    try {
      nbd_target.flush();
    } catch (const CliError& error) {
      throw CliError(error.code(), "restore of point " + point.name +
                                       " failed before its first write: " + error.what() + "; " + job.to +
                                       " is unchanged (its server advertises a flush that it refuses)");
    }
    try {
      ProgressBar bar("restore", report.data_bytes + report.zero_bytes, terminal, stderr, &machine);
      report.result =
          copy_ranges(source, server.uri(), data, CopyTarget{-1, &nbd_target, job.to}, options, &bar, zeroes);
    } catch (const CliError& error) {
      ErrorDetail detail = error.detail();
      if (detail.message == error.what()) detail.message.clear();  // then the new text
      throw CliError(error.code(),
                     "restore of point " + point.name + " failed: " + error.what() + "; " + job.to +
                         " now holds a partial restore (its old data partly overwritten): do not use it, "
                         "restore again",
                     detail);
    }
    machine.finish();
  } else {
    options.skip_zero_writes = target->fresh();
    options.write_behind = true;  // the sync below then waits for little
    try {
      target->begin();
      {
        ProgressBar bar("restore", report.data_bytes + report.zero_bytes, terminal, stderr, &machine);
        report.result = copy_ranges(source, server.uri(), data, CopyTarget{target->fd(), nullptr, job.to},
                                    options, &bar, zeroes);
      }
      target->commit();
    } catch (const CliError& error) {
      // The copier's messages serve backup too: say that a restore failed (its target is named), and what it
      // left there.
      ErrorDetail detail = error.detail();
      if (detail.message == error.what()) detail.message.clear();  // then the new text
      throw CliError(error.code(),
                     "restore of point " + point.name + " failed: " + error.what() + target->failure_note(),
                     detail);
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
  // A file or device target is opened (and locked) before the chain is served, written only after its files
  // matched their checksums, and closed after its sync (and, for a file, the rename into place).
  std::unique_ptr<RestoreTarget> target;
  if (!job.to_nbd) {
    target = std::make_unique<RestoreTarget>(
        RestoreTargetOptions{job.to, job.mode, job.mode_given, {chain.path()}}, report.point->size);
  }
  copy_point(context, job, chain, report, target.get());
  target.reset();
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
