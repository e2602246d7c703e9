// SPDX-License-Identifier: BSD-3-Clause
// backup_command.cpp — the backup job: find out what the backup file holds, choose full or incremental,
// find the ranges to read (block status or the control socket's CBT map), copy, sync, verify, record.
#include "backup_command.h"

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <memory>
#include <optional>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "backup_job.h"
#include "backup_plan.h"
#include "backup_sidecar.h"
#include "byte_ranges.h"
#include "chain_backup.h"
#include "copy_arguments.h"
#include "exit_codes.h"
#include "export_name.h"
#include "image_copier.h"
#include "json_fields.h"
#include "nbd_image.h"
#include "private_files.h"
#include "progress_bar.h"
#include "table.h"
#include "target_file.h"
#include "units.h"

namespace po = boost::program_options;

namespace nbdsnap::cli {

namespace {

constexpr const char* kSynopsis =
    "backup --image URI --to FILE|DIR [--format raw|qcow2] [--since CHECKPOINT] [--allow-full] [--verify] "
    "[--mode MODE] [--progress FD]";

// The CBT the backup reads: for an image, the CBT frozen at its take (so a take or a compaction of the live
// map since then changes nothing); for an origin, the live one.
nlohmann::json cbt_source(const BackupFacts& facts, const std::string& snapshot) {
  nlohmann::json source = {{"origin", facts.origin}};
  if (!snapshot.empty()) source["snapshot"] = snapshot;
  return source;
}

// Why the server cannot answer changes since `since`, asked with an empty range: its refusal, whose code
// tells a checkpoint it knew and lost (checkpoint_gone) from a name it never knew (not_found).
void ask_about_since(Context& context, const std::string& snapshot, BackupFacts& facts) {
  client::CbtQuery query;
  query.origin = facts.origin;
  query.snapshot = snapshot;
  query.since = facts.since;
  query.length = 0;
  client::Result<client::CbtMap> reply = context.control().library().cbt_map(query);
  if (reply) return;
  if (!reply.error().from_server()) throw context.control().cli_error(reply.error());
  facts.since_problem = reply.error().describe();
  facts.since_gone = reply.error().code == "checkpoint_gone";
}

// The CBT facts from the control socket. Without a reachable control socket a full backup goes on
// (recording an unknown generation, so the next incremental falls back to full); an incremental one cannot.
void read_cbt_facts(Context& context, const BackupJob& job, const std::string& snapshot, BackupFacts& facts) {
  try {
    // `checkpoints` rather than `cbt-info`: it tells when each was taken, which says what a name stands for.
    nlohmann::json reply = context.control().request("checkpoints", cbt_source(facts, snapshot));
    facts.generation = field_text(reply, "generation");
    if (reply.contains("checkpoints") && reply["checkpoints"].is_array()) {
      for (const auto& checkpoint : reply["checkpoints"]) {
        if (checkpoint.is_object()) {
          facts.checkpoints[field_text(checkpoint, "name")] = field_int(checkpoint, "taken_unix_ms");
        }
      }
    }
    if (!facts.since.empty() && facts.checkpoints.count(facts.since) == 0) {
      ask_about_since(context, snapshot, facts);
    }
  } catch (const CliError& error) {
    if (!job.since.empty()) {
      throw CliError(error.code(), "an incremental backup needs the origin's CBT from the control socket: " +
                                       std::string(error.what()));
    }
    context.err() << "nbdsnap backup: warning: no CBT information (" << error.what()
                  << "); the next incremental backup will be full\n";
  }
}

BackupFacts gather_facts(Context& context, const BackupJob& job, NbdImage& image, BackupReport& report) {
  BackupFacts facts;
  facts.since = job.since;
  facts.backup_file = job.file;
  facts.image_size = image.size();
  ExportName name;
  Status status = parse_export_name(image.export_name(), name);
  if (!status) throw CliError(ExitCode::usage, "export '" + image.export_name() + "': " + status.message());
  if (!name.is_image()) {
    context.err() << "nbdsnap backup: warning: " << job.uri
                  << " is a live origin, not a snapshot image: the copy will not be consistent\n";
  }
  facts.origin = name.origin;
  facts.snapshot = name.snapshot;
  report.origin = name.origin;
  report.snapshot = name.snapshot;
  read_cbt_facts(context, job, name.snapshot, facts);
  return facts;
}

// What the raw backup file holds: its size and its sidecar record.
void describe_raw_target(const BackupJob& job, BackupFacts& facts) {
  struct stat info {};
  if (::stat(job.file.c_str(), &info) == 0) {
    if (!S_ISREG(info.st_mode)) usage_error("--to " + job.file + " is not a regular file");
    facts.backup_file_exists = true;
    facts.backup_file_size = static_cast<uint64_t>(info.st_size);
  } else if (errno != ENOENT) {
    local_io_error(job.file, errno);
  }
  facts.previous = load_backup_record(job.file);
}

// --since naming a checkpoint the server does not know (a typo, another origin's name) would make the backup
// full: without --allow-full that is an error, never a silent full backup. A checkpoint the server knew and
// reports gone (checkpoint_gone: deleted, older than the checkpoints kept, CBT history lost) is not a typo:
// the plan makes the backup full and says why (the server's own advice). The server remembers only the newest
// dropped names (core/cbt.h), and a crash loses the names of the checkpoints taken since its last clean save,
// so such a one is "not found"; the target's newest backup proves it was no typo when it was made at that
// checkpoint of this origin, in a known generation. In another generation than the server's now, the plan
// then makes the backup full ("the CBT generation changed").
void check_since_is_known(const BackupJob& job, const BackupFacts& facts) {
  if (job.since.empty() || job.allow_full || facts.since_gone || facts.checkpoints.count(job.since) != 0)
    return;
  // A raw file's record, or a qcow2 chain's newest point (read here without the chain's lock).
  const std::optional<BackupRecord> record =
      facts.previous ? facts.previous
                     : (job.format == BackupFormat::raw ? load_backup_record(job.file)
                                                        : newest_chain_record_unlocked(job.file));
  const BackupRecord* previous = record ? &*record : nullptr;
  if (previous && previous->complete && previous->origin == facts.origin &&
      previous->checkpoint == job.since && !previous->generation.empty()) {
    return;
  }
  const std::string why = facts.since_problem.empty() ? "" : " (" + facts.since_problem + ")";
  throw CliError(ExitCode::not_found,
                 "checkpoint '" + job.since + "' is not known to the server for origin " + facts.origin +
                     " (CBT generation " + facts.generation + ")" + why +
                     ": a full backup is needed; give "
                     "--allow-full to do one, or check the name with nbdsnap checkpoints " +
                     facts.origin);
}

// Dirty ranges from the control socket's CBT map: the image's frozen one (exactly the changes up to the
// take).
std::vector<ByteRange> ranges_from_cbt_map(Context& context, const BackupFacts& facts,
                                           const std::string& snapshot) {
  nlohmann::json request = cbt_source(facts, snapshot);
  request["since"] = facts.since;
  nlohmann::json reply = context.control().request_all_pages("cbt-map", request);
  if (field_text(reply, "generation") != facts.generation) {
    throw CliError(ExitCode::server_error, "the CBT generation of " + facts.origin +
                                               " changed during the backup; run it again (it will be full)");
  }
  std::vector<ByteRange> ranges;
  for (ByteRange range : byte_ranges_from_json(reply.value("ranges", nlohmann::json::array()))) {
    if (range.offset >= facts.image_size) continue;
    range.length = std::min(range.length, facts.image_size - range.offset);
    ranges.push_back(range);
  }
  return merge_byte_ranges(std::move(ranges));
}

std::vector<ByteRange> ranges_to_read(Context& context, NbdImage& image, const BackupFacts& facts,
                                      BackupReport& report) {
  if (report.plan.incremental) {
    const std::string dirty = dirty_bitmap_context(facts.since);
    if (image.has_meta_context(dirty)) {
      report.ranges_source = dirty;
      return image.ranges_where(dirty, kStateDirty, kStateDirty);
    }
    report.ranges_source = "control socket cbt-map --since " + facts.since +
                           (report.snapshot.empty() ? "" : " --snapshot " + report.snapshot);
    return ranges_from_cbt_map(context, facts, report.snapshot);
  }
  if (image.has_meta_context(kBaseAllocation)) {
    report.ranges_source = kBaseAllocation;
    return image.ranges_where(kBaseAllocation, kStateZero, 0);
  }
  report.ranges_source = "whole image (no block status)";
  if (image.size() == 0) return {};
  return {{0, image.size()}};
}

int open_backup_file(const BackupJob& job, bool incremental, uint64_t size) {
  // Disk contents: created 0600 (or --mode) whatever the umask; never a disk in use (target_file.h).
  TargetFileOptions target{
      .command = "backup", .mode = job.mode, .force_mode = job.mode_given, .truncate = !incremental};
  int fd = open_target_file(job.file, target);
  if (!incremental && ::ftruncate(fd, static_cast<off_t>(size)) != 0) {
    int err = errno;
    ::close(fd);
    local_io_error(job.file + ": cannot size to " + std::to_string(size), err);
  }
  return fd;
}

BackupRecord record_of(const BackupJob& job, const BackupFacts& facts, const BackupReport& report) {
  BackupRecord record;
  record.kind = report.plan.incremental ? "incremental" : "full";
  record.image_uri = job.uri;
  record.origin = facts.origin;
  record.snapshot = report.snapshot;
  record.generation = facts.generation;
  record.size = facts.image_size;
  return record;
}

void copy_and_record(const BackupJob& job, const BackupFacts& facts, NbdImage& image,
                     const std::vector<ByteRange>& ranges, BackupReport& report, MachineProgress* machine) {
  BackupRecord record = record_of(job, facts, report);
  int fd = open_backup_file(job, report.plan.incremental, facts.image_size);
  try {
    save_backup_record(job.file, record, job.mode);  // "incomplete" until the data is synced
    const bool terminal = ::isatty(STDERR_FILENO) == 1 && job.progress_fd < 0;
    CopyOptions options = job.copy;
    options.skip_zero_writes = !report.plan.incremental;
    options.checksums = job.verify;
    options.write_behind = true;  // the fdatasync below then waits for little
    auto start = std::chrono::steady_clock::now();
    CopyResult result;
    {
      ProgressBar bar(report.plan.incremental ? "incremental" : "full backup", total_length(ranges), terminal,
                      stderr, machine);
      result = copy_ranges(image, job.uri, ranges, CopyTarget{fd, nullptr, job.file}, options, &bar);
    }
    if (::fdatasync(fd) != 0) local_io_error(job.file + ": sync", errno);
    report.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    report.bytes_read = result.bytes_read;
    report.bytes_written = result.bytes_written;
    report.bytes_zeroed = result.bytes_zeroed;
    if (job.verify) {
      ProgressBar bar("verify", result.bytes_read, terminal, stderr, machine);
      report.verify_bytes_read =
          verify_pieces(image, job.uri, result.pieces, CopyTarget{fd, nullptr, job.file}, options, &bar);
    }
  } catch (...) {
    ::close(fd);
    throw;
  }
  ::close(fd);
  record.complete = true;
  record.bytes_read = report.bytes_read;
  record.checkpoint = facts.checkpoints.count(report.snapshot) ? report.snapshot : "";
  record.checkpoint_taken_unix_ms = record.checkpoint.empty() ? 0 : facts.checkpoints.at(record.checkpoint);
  record.completed_unix_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                                 std::chrono::system_clock::now().time_since_epoch())
                                 .count();
  save_backup_record(job.file, record, job.mode);
  report.checkpoint = record.checkpoint;
  report.generation = record.generation;
}

void print_report(Context& context, const BackupJob& job, const BackupReport& report) {
  const char* kind = report.plan.incremental ? "incremental" : "full";
  const char* format = job.format == BackupFormat::qcow2 ? "qcow2" : "raw";
  double rate = report.seconds > 0 ? static_cast<double>(report.bytes_read) / report.seconds : 0;
  if (context.json()) {
    context.print_json({{"kind", kind},
                        {"format", format},
                        {"fallback_reason", report.plan.fallback_reason},
                        {"image_uri", job.uri},
                        {"file", job.format == BackupFormat::qcow2 ? report.point_file : job.file},
                        {"directory", job.format == BackupFormat::qcow2 ? job.file : ""},
                        {"point", report.point},
                        {"origin", report.origin},
                        {"snapshot", report.snapshot},
                        {"since", report.plan.incremental ? job.since : ""},
                        {"ranges_source", report.ranges_source},
                        {"image_size", report.image_size},
                        {"bytes_read", report.bytes_read},
                        {"bytes_written", report.bytes_written},
                        {"bytes_zeroed", report.bytes_zeroed},
                        {"seconds", report.seconds},
                        {"checkpoint", report.checkpoint},
                        {"generation", report.generation},
                        {"verified", job.verify},
                        {"verify_bytes_read", report.verify_bytes_read}});
    return;
  }
  KeyValueList list;
  list.add("backup", std::string(kind) + (report.plan.incremental ? " since " + job.since : ""));
  list.add("image", job.uri + " (" + format_size(report.image_size) + ")");
  if (job.format == BackupFormat::qcow2) {
    list.add("point", report.point + " in " + job.file + " (" + report.point_file + ")");
  } else {
    list.add("file", job.file);
  }
  list.add("ranges from", report.ranges_source);
  char timing[64];
  std::snprintf(timing, sizeof(timing), "%.2f s, %s/s", report.seconds,
                format_size(static_cast<uint64_t>(rate)).c_str());
  list.add("time", timing);
  list.add("bytes written",
           std::to_string(report.bytes_written) + " (" + format_size(report.bytes_written) + ")" +
               (report.bytes_zeroed > 0 ? ", " + format_size(report.bytes_zeroed) + " of zeroes" : ""));
  list.add("checkpoint", report.checkpoint.empty()
                             ? "none (the next backup will be full)"
                             : report.checkpoint + " (generation " + report.generation + ")");
  list.add("verify",
           job.verify ? "ok, " + format_size(report.verify_bytes_read) + " re-read, " + report.verify_result
                      : "not requested");
  list.add("bytes read", std::to_string(report.bytes_read) + " (" + format_size(report.bytes_read) + ")");
  context.out() << list.render();
}

// After the server let a copy time out, the failure path asks it only this long (connecting, then the reply:
// at most twice this), so a stalled backup ends about one --timeout after the server went silent, not two.
constexpr std::chrono::milliseconds kSilentServerQuery{500};

// The snapshot's info for explaining a failure. After a timeout (the error's detail code), on a connection of
// its own bounded by kSilentServerQuery; else on the command's connection, with --timeout.
nlohmann::json failure_snapshot_info(Context& context, const std::string& name, bool server_silent) {
  if (!server_silent) return context.control().request("snapshot-info", {{"name", name}})["snapshot"];
  const GlobalOptions& global = context.global();
  ControlClient brief(global.control, std::min(global.timeout, kSilentServerQuery),
                      ControlTls{global.tls_certificates, global.tls_psk});
  return brief.request("snapshot-info", {{"name", name}})["snapshot"];
}

// The read's error when the server did not answer the failure path's question either: what may be left
// behind and what to do about it.
CliError silent_server_error(const BackupReport& report, const CliError& error) {
  const std::string message =
      std::string(error.what()) + "; the control socket did not answer within " +
      format_timeout(kSilentServerQuery) + " either: snapshot " + report.snapshot +
      " may still exist and hold its difference storage; once nbdsnapd answers again, check it " +
      "with 'nbdsnap snapshot info " + report.snapshot + "' and remove it with 'nbdsnap snapshot destroy " +
      report.snapshot + "' when no backup needs it";
  ErrorDetail detail = error.detail();  // its message is the read's alone: --json prints the whole one too
  detail.message = message;
  return CliError(error.code(), message, detail);
}

// An image read that failed (EIO) has its reason on the server: a corrupted snapshot (storage full, a failed
// copy-on-write) or one destroyed meanwhile. Asks it (snapshot-info) and throws the read's error with that
// reason, the state and the origin's errno; without an answer, or for a healthy snapshot, the read's error as
// it was. The exit status stays the read's (4: I/O error). After a timeout (the server stopped answering)
// the question is bounded by kSilentServerQuery, and without an answer the error says what may be left.
[[noreturn]] void explain_image_failure(Context& context, const BackupReport& report, const CliError& error) {
  const bool server_silent = error.detail().code == no_reply_detail().code;
  nlohmann::json snapshot;
  try {
    snapshot = failure_snapshot_info(context, report.snapshot, server_silent);
  } catch (const CliError& asked) {
    if (asked.code() != ExitCode::not_found) {
      if (server_silent) throw silent_server_error(report, error);
      throw error;
    }
    throw CliError(error.code(),
                   std::string(error.what()) + "; snapshot " + report.snapshot +
                       " no longer exists (destroyed during the backup?)",
                   {"not_found", ENOENT, ""});
  }
  const std::string state = field_text(snapshot, "state");
  if (state != "corrupted") throw error;
  std::string explanation = std::string(error.what()) + "; snapshot " + report.snapshot +
                            " is corrupted: " + or_dash(field_text(snapshot, "corruption_reason"));
  int origin_errno = 0;
  if (snapshot.contains("origin_errors") && snapshot["origin_errors"].is_array()) {
    for (const auto& failure : snapshot["origin_errors"]) {
      if (field_text(failure, "origin") != report.origin) continue;
      origin_errno = static_cast<int>(field_int(failure, "errno"));
      explanation += "; origin " + report.origin + ": errno " + std::to_string(origin_errno) + " (" +
                     field_text(failure, "error") + "): " + field_text(failure, "reason");
    }
  }
  throw CliError(error.code(), explanation, {"corrupted", origin_errno, ""});
}

BackupJob backup_job_of(const CommandArgs& args) {
  BackupJob job;
  job.uri = args.text("image");
  job.file = args.text("to");
  const std::string format = args.text("format");
  if (format == "qcow2") {
    job.format = BackupFormat::qcow2;
  } else if (format != "raw") {
    usage_error("--format '" + format +
                "': give raw (one file, updated in place) or qcow2 (a chain of restore points)");
  }
  job.since = args.text("since");
  job.allow_full = args.flag("allow-full");
  job.verify = args.flag("verify");
  if (args.has("mode")) {
    job.mode = parse_file_mode(args.text("mode"));
    job.mode_given = true;
  }
  if (args.has("progress")) job.progress_fd = parse_progress_fd(args.text("progress"));
  job.copy = copy_options_from(args);
  return job;
}

int run_backup(Context& context, const std::vector<std::string>& words) {
  CommandArgs args(kSynopsis);
  args.options()("image", po::value<std::string>()->value_name("URI"),
                 "NBD URI of the snapshot image (nbd+unix:///ORIGIN@SNAPSHOT?socket=...)")(
      "to", po::value<std::string>()->value_name("FILE|DIR"),
      "raw: the backup file (sparse; an incremental backup updates it in place); qcow2: the chain directory")(
      "format", po::value<std::string>()->value_name("raw|qcow2")->default_value("raw"),
      "raw: one file; qcow2: a restore point per backup, each incremental one a qcow2 overlay of the last")(
      "since", po::value<std::string>()->value_name("CHECKPOINT"),
      "incremental: copy only what changed after this checkpoint")(
      "allow-full",
      "if the server does not know the --since checkpoint, do a full backup instead of failing")(
      "verify", "re-read the image and the backup and compare checksums of what was copied")(
      "mode", po::value<std::string>()->value_name("MODE"),
      "permission bits of the files written (octal; default 600)")(
      "progress", po::value<std::string>()->value_name("FD"),
      "write progress lines \"N/100\" to file descriptor FD (as nbdcopy)");
  add_copy_arguments(args);
  if (!parse_or_show_help(context, args, words)) return 0;
  if (!args.has("image") || !args.has("to"))
    usage_error(std::string("backup needs --image URI and --to FILE|DIR\nUsage: nbdsnap ") + kSynopsis);
  BackupJob job = backup_job_of(args);

  std::vector<std::string> contexts = {kBaseAllocation};
  if (!job.since.empty()) contexts.push_back(dirty_bitmap_context(job.since));
  NbdImage image(job.uri, contexts, context.global().timeout);
  BackupReport report;
  report.image_size = image.size();
  BackupFacts facts = gather_facts(context, job, image, report);
  check_since_is_known(job, facts);
  // A chain directory stays locked from reading its newest point to recording the new one.
  std::unique_ptr<ChainDirectory> chain;
  if (job.format == BackupFormat::qcow2) {
    chain = std::make_unique<ChainDirectory>(job.file, /*exclusive=*/true, /*create=*/true, false, job.mode);
    for (const std::string& name : chain->discard_unfinished()) {
      context.err() << "nbdsnap backup: removed point " << name << ", left unfinished by an earlier backup\n";
    }
    describe_chain_target(*chain, facts);
  } else {
    describe_raw_target(job, facts);
  }
  report.plan = plan_backup(facts);
  if (!report.plan.fallback_reason.empty())
    context.err() << "nbdsnap backup: " << report.plan.fallback_reason << "\n";
  try {
    std::vector<ByteRange> ranges = ranges_to_read(context, image, facts, report);
    MachineProgress machine(job.progress_fd, total_length(ranges) * (job.verify ? 2 : 1));
    if (chain) {
      write_chain_point(*chain, job, facts, image, ranges, report, &machine);
    } else {
      copy_and_record(job, facts, image, ranges, report, &machine);
    }
    machine.finish();
  } catch (const CliError& error) {
    if (error.code() != ExitCode::io_error || report.snapshot.empty()) throw;
    explain_image_failure(context, report, error);
  }
  print_report(context, job, report);
  return 0;
}

}  // namespace

std::vector<CommandSpec> backup_command_specs() {
  return {
      {{"backup"},
       kSynopsis,
       "copy a snapshot image to a sparse file or a qcow2 chain of restore points, fully or incrementally",
       run_backup}};
}

}  // namespace nbdsnap::cli
