// SPDX-License-Identifier: BSD-3-Clause
// chain_backup.cpp — one restore point of a qcow2 chain: create, serve, copy, verify, checksum, record.
#include "chain_backup.h"

#include <chrono>
#include <exception>
#include <thread>

#include <sys/stat.h>
#include <unistd.h>

#include "exit_codes.h"
#include "file_digest.h"
#include "nbd_image.h"
#include "progress_bar.h"
#include "qemu_convert.h"
#include "qemu_tools.h"

namespace nbdsnap::cli {

namespace {

int64_t now_unix_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

uint64_t file_size(const std::string& path) {
  struct stat info {};
  return ::stat(path.c_str(), &info) == 0 ? static_cast<uint64_t>(info.st_size) : 0;
}

ChainPoint new_point(const ChainDirectory& chain, const BackupJob& job, const BackupFacts& facts,
                     const BackupReport& report) {
  ChainPoint point;
  point.name = next_point_name(chain.manifest());
  point.file = point.name + ".qcow2";
  point.state = "writing";
  point.kind = report.plan.incremental ? "incremental" : "full";
  if (report.plan.incremental) point.backing = newest_complete_point(chain.manifest())->name;
  point.origin = facts.origin;
  point.snapshot = report.snapshot;
  point.generation = facts.generation;
  point.since = report.plan.incremental ? job.since : "";
  point.image_uri = job.uri;
  point.size = facts.image_size;
  point.started_unix_ms = now_unix_ms();
  return point;
}

// Copies the ranges into the point's file through qemu-nbd (and re-reads them with --verify).
void copy_into_point(const std::string& path, const BackupJob& job, NbdImage& image,
                     const std::vector<ByteRange>& ranges, BackupReport& report, MachineProgress* machine) {
  QemuNbdServer server(path, /*writable=*/true);
  {
    NbdImage target(server.uri(), {}, image.timeout(), NbdImage::Probe::none);
    const CopyTarget into{-1, &target, path};
    CopyOptions options = job.copy;
    // A full point has no backing file, so what is not written reads as zeroes; an incremental one must
    // write the zeroes of changed ranges over its base's data (as qcow2 zero clusters).
    options.skip_zero_writes = !report.plan.incremental;
    options.checksums = job.verify;
    const bool terminal = ::isatty(STDERR_FILENO) == 1 && job.progress_fd < 0;
    const auto start = std::chrono::steady_clock::now();
    CopyResult result;
    {
      ProgressBar bar(report.plan.incremental ? "incremental" : "full backup", total_length(ranges), terminal,
                      stderr, machine);
      result = copy_ranges(image, job.uri, ranges, into, options, &bar);
    }
    report.bytes_read = result.bytes_read;
    report.bytes_written = result.bytes_written;
    report.bytes_zeroed = result.bytes_zeroed;
    if (job.verify) {
      ProgressBar bar("verify", result.bytes_read, terminal, stderr, machine);
      report.verify_bytes_read = verify_pieces(image, job.uri, result.pieces, into, options, &bar);
    }
    report.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  }
  server.stop();  // qemu-nbd flushes the file before it exits
}

// Makes the point's file durable and returns its checksum. The fsync runs on a thread of its own while this
// one reads the file back from the page cache for the checksum, so the disk and the CPU work at once
// (sync_file_range's WRITE alone blocked for the whole submission, 0.49 s per GiB here, before hashing
// began).
std::string sync_and_checksum(const std::string& path) {
  std::exception_ptr sync_failure;
  std::thread syncer([&] {
    try {
      sync_path(path);
    } catch (...) {
      sync_failure = std::current_exception();
    }
  });
  std::string digest;
  std::exception_ptr digest_failure;
  try {
    digest = file_digest(path, kChainDigest);
  } catch (...) {
    digest_failure = std::current_exception();
  }
  syncer.join();
  if (sync_failure) std::rethrow_exception(sync_failure);
  if (digest_failure) std::rethrow_exception(digest_failure);
  return digest;
}

// A full point that QEMU can read the image for: qemu-img convert writes it in one process (qemu_convert.h),
// and with --verify qemu-img compare re-reads the image and the file. Not when the user tuned the copier's
// requests (--connections, --requests, --request-size: e.g. to spare a busy server), which qemu-img cannot be
// told.
bool written_by_qemu_img(const BackupJob& job, const BackupReport& report) {
  return !report.plan.incremental && qemu_can_read_uri(job.uri) && !job.copy.tuned;
}

void convert_into_point(const std::string& path, mode_t mode, const BackupJob& job, const NbdImage& image,
                        const std::vector<ByteRange>& ranges, BackupReport& report,
                        MachineProgress* machine) {
  const bool terminal = ::isatty(STDERR_FILENO) == 1 && job.progress_fd < 0;
  // The bound on silence is the copier's: no sign of work for the timeout (nbdsnap --timeout).
  const std::chrono::milliseconds stall_bound = image.timeout();
  const uint64_t total = total_length(ranges);
  const auto start = std::chrono::steady_clock::now();
  {
    ProgressBar bar("full backup", total, terminal, stderr, machine);
    qemu_img_convert_to_qcow2(job.uri, path, mode, stall_bound, bar, total);
  }
  report.bytes_read = total;  // qemu-img reads what block status calls data, as the copier would
  report.bytes_written = qemu_img_stored_bytes(path);
  report.bytes_zeroed = 0;
  if (job.verify) {
    ProgressBar bar("verify", total, terminal, stderr, machine);
    const std::string difference = qemu_img_compare_with_image(job.uri, path, stall_bound, bar, total);
    if (!difference.empty()) {
      throw CliError(ExitCode::io_error,
                     "verify failed: " + path + " does not read as the image: " + difference);
    }
    report.verify_bytes_read = total;
    report.verify_result = "qemu-img compare: identical";
  }
  report.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

// What a backup record says of a chain point (backup_plan.h's view of the previous backup).
BackupRecord record_of_point(const ChainPoint& point) {
  BackupRecord record;
  record.complete = true;
  record.kind = point.kind;
  record.image_uri = point.image_uri;
  record.origin = point.origin;
  record.snapshot = point.snapshot;
  record.checkpoint = point.checkpoint;
  record.checkpoint_taken_unix_ms = point.checkpoint_taken_unix_ms;
  record.generation = point.generation;
  record.size = point.size;
  record.bytes_read = point.bytes_read;
  record.completed_unix_ms = point.completed_unix_ms;
  return record;
}

}  // namespace

void describe_chain_target(const ChainDirectory& chain, BackupFacts& facts) {
  facts.backup_file = chain.path();
  for (const ChainPoint& point : chain.manifest().points) {
    if (!point.origin.empty() && point.origin != facts.origin) {
      usage_error(chain.path() + " holds backups of origin '" + point.origin + "', not '" + facts.origin +
                  "': give each origin a chain directory of its own");
    }
  }
  const ChainPoint* newest = newest_complete_point(chain.manifest());
  if (newest == nullptr) return;
  facts.backup_file_exists = true;
  facts.backup_file_size = newest->size;
  facts.previous = record_of_point(*newest);
}

std::optional<BackupRecord> newest_chain_record_unlocked(const std::string& directory) {
  try {
    const ChainManifest manifest = load_chain_manifest(directory);  // empty when there is none
    const ChainPoint* newest = newest_complete_point(manifest);
    if (newest == nullptr) return std::nullopt;
    return record_of_point(*newest);
  } catch (const CliError&) {
    return std::nullopt;
  }
}

void write_chain_point(ChainDirectory& chain, const BackupJob& job, const BackupFacts& facts, NbdImage& image,
                       const std::vector<ByteRange>& ranges, BackupReport& report, MachineProgress* machine) {
  ChainManifest& manifest = chain.manifest();
  if (job.mode_given) manifest.file_mode = job.mode;
  ChainPoint point = new_point(chain, job, facts, report);
  const std::string path = chain.path() + "/" + point.file;
  const std::string backing_file = report.plan.incremental ? chain.point(point.backing).file : std::string();
  manifest.points.push_back(point);
  chain.save();  // "writing" before the file exists: a crash leaves a point the next backup discards
  try {
    if (written_by_qemu_img(job, report)) {
      convert_into_point(path, manifest.file_mode, job, image, ranges, report, machine);
    } else {
      qemu_img_create_qcow2(path, point.size, backing_file, manifest.file_mode);
      copy_into_point(path, job, image, ranges, report, machine);
    }
    point.checksums = {{digest_key(kChainDigest), sync_and_checksum(path)}};
  } catch (...) {
    try {
      remove_file(path);
      std::erase_if(manifest.points, [&](const ChainPoint& entry) { return entry.name == point.name; });
      chain.save();
    } catch (const CliError&) {  // the point stays "writing": the next backup discards it
    }
    throw;
  }
  point.state = "complete";
  point.checkpoint = facts.checkpoints.count(report.snapshot) ? report.snapshot : "";
  point.checkpoint_taken_unix_ms = point.checkpoint.empty() ? 0 : facts.checkpoints.at(point.checkpoint);
  point.bytes = report.bytes_written + report.bytes_zeroed;
  point.bytes_read = report.bytes_read;
  point.file_bytes = file_size(path);
  point.completed_unix_ms = now_unix_ms();
  manifest.points.back() = point;
  chain.save();
  report.point = point.name;
  report.point_file = path;
  report.checkpoint = point.checkpoint;
  report.generation = point.generation;
}

}  // namespace nbdsnap::cli
