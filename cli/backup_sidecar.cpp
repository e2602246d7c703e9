// SPDX-License-Identifier: BSD-3-Clause
// backup_sidecar.cpp — JSON form and atomic storage of the backup record.
#include "backup_sidecar.h"

#include <cerrno>
#include <fstream>
#include <sstream>

#include "exit_codes.h"
#include "json_fields.h"
#include "private_files.h"

namespace nbdsnap::cli {

namespace {
constexpr const char* kFormat = "nbdsnap-backup";
constexpr int kFormatVersion = 1;
}  // namespace

std::string sidecar_path(const std::string& backup_file) {
  return backup_file + ".nbdsnap-backup";
}

nlohmann::json backup_record_to_json(const BackupRecord& record) {
  return {{"format", kFormat},
          {"version", kFormatVersion},
          {"state", record.complete ? "complete" : "incomplete"},
          {"kind", record.kind},
          {"image_uri", record.image_uri},
          {"origin", record.origin},
          {"snapshot", record.snapshot},
          {"checkpoint", record.checkpoint},
          {"checkpoint_taken_unix_ms", record.checkpoint_taken_unix_ms},
          {"generation", record.generation},
          {"size", record.size},
          {"bytes_read", record.bytes_read},
          {"completed_unix_ms", record.completed_unix_ms}};
}

BackupRecord backup_record_from_json(const nlohmann::json& json) {
  if (!json.is_object() || field_text(json, "format") != kFormat) {
    throw CliError(ExitCode::io_error, "not an nbdsnap backup record");
  }
  if (field_uint(json, "version") != kFormatVersion) {
    throw CliError(ExitCode::io_error,
                   "backup record version " + field_text(json, "version") + " is not supported");
  }
  BackupRecord record;
  record.complete = field_text(json, "state") == "complete";
  record.kind = field_text(json, "kind");
  record.image_uri = field_text(json, "image_uri");
  record.origin = field_text(json, "origin");
  record.snapshot = field_text(json, "snapshot");
  record.checkpoint = field_text(json, "checkpoint");
  record.checkpoint_taken_unix_ms = field_int(json, "checkpoint_taken_unix_ms");  // 0 when absent
  record.generation = field_text(json, "generation");
  record.size = field_uint(json, "size");
  record.bytes_read = field_uint(json, "bytes_read");
  record.completed_unix_ms = field_int(json, "completed_unix_ms");
  return record;
}

std::optional<BackupRecord> load_backup_record(const std::string& backup_file) {
  const std::string path = sidecar_path(backup_file);
  std::ifstream in(path);
  if (!in) {
    if (errno == ENOENT) return std::nullopt;
    local_io_error(path, errno);
  }
  std::stringstream text;
  text << in.rdbuf();
  nlohmann::json json = nlohmann::json::parse(text.str(), nullptr, false);
  try {
    return backup_record_from_json(json);
  } catch (const CliError& error) {
    throw CliError(ExitCode::io_error, path + ": " + error.what());
  }
}

void save_backup_record(const std::string& backup_file, const BackupRecord& record, mode_t mode) {
  write_file_atomically(sidecar_path(backup_file), backup_record_to_json(record).dump(2) + "\n", mode);
}

}  // namespace nbdsnap::cli
