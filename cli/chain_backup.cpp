// SPDX-License-Identifier: BSD-3-Clause
// chain_backup.cpp — one restore point of a qcow2 chain: create, serve, copy, verify, checksum, record.
#include "chain_backup.h"

#include <chrono>

#include <sys/stat.h>
#include <unistd.h>

#include "exit_codes.h"
#include "file_digest.h"
#include "nbd_image.h"
#include "progress_bar.h"
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
  BackupRecord record;
  record.complete = true;
  record.kind = newest->kind;
  record.image_uri = newest->image_uri;
  record.origin = newest->origin;
  record.snapshot = newest->snapshot;
  record.checkpoint = newest->checkpoint;
  record.generation = newest->generation;
  record.size = newest->size;
  record.bytes_read = newest->bytes_read;
  record.completed_unix_ms = newest->completed_unix_ms;
  facts.previous = record;
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
    qemu_img_create_qcow2(path, point.size, backing_file, manifest.file_mode);
    copy_into_point(path, job, image, ranges, report, machine);
    start_writeback(path);  // the disk writes while the CPU hashes
    point.file_sha256 = file_sha256(path);
    sync_path(path);
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
