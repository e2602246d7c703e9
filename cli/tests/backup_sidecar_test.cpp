// SPDX-License-Identifier: BSD-3-Clause
// backup_sidecar_test.cpp — the backup record's JSON form and its atomic file.
#include <doctest/doctest.h>

#include <cstdlib>
#include <fstream>
#include <string>

#include <unistd.h>

#include "backup_sidecar.h"
#include "exit_codes.h"

using namespace nbdsnap::cli;

namespace {

struct TemporaryDirectory {
  std::string path;
  TemporaryDirectory() {
    char name[] = "/tmp/nbdsnap-cli-test.XXXXXX";
    path = ::mkdtemp(name);
  }
  ~TemporaryDirectory() { std::system(("rm -rf '" + path + "'").c_str()); }
};

BackupRecord sample_record() {
  BackupRecord record;
  record.complete = true;
  record.kind = "incremental";
  record.image_uri = "nbd+unix:///disk@s2?socket=/run/n.sock";
  record.origin = "disk";
  record.snapshot = "s2";
  record.checkpoint = "s2";
  record.checkpoint_taken_unix_ms = 1764159990000;
  record.generation = "6b1f";
  record.size = 256ull << 20;
  record.bytes_read = 65536;
  record.completed_unix_ms = 1764160000000;
  return record;
}

}  // namespace

TEST_CASE("backup_record_round_trips_through_json") {
  BackupRecord record = sample_record();
  nlohmann::json json = backup_record_to_json(record);
  CHECK(json["format"] == "nbdsnap-backup");
  CHECK(json["state"] == "complete");
  BackupRecord back = backup_record_from_json(json);
  CHECK(back.complete);
  CHECK(back.kind == record.kind);
  CHECK(back.image_uri == record.image_uri);
  CHECK(back.checkpoint == "s2");
  CHECK(back.checkpoint_taken_unix_ms == 1764159990000);
  CHECK(back.generation == "6b1f");
  CHECK(back.size == record.size);
  CHECK(back.completed_unix_ms == record.completed_unix_ms);
}

TEST_CASE("a_record_of_an_older_version_has_no_checkpoint_take_time") {
  nlohmann::json json = backup_record_to_json(sample_record());
  json.erase("checkpoint_taken_unix_ms");
  CHECK(backup_record_from_json(json).checkpoint_taken_unix_ms == 0);
}

TEST_CASE("backup_record_refuses_foreign_json") {
  CHECK_THROWS_AS(backup_record_from_json(nlohmann::json::parse(R"({"format":"other"})")), CliError);
  CHECK_THROWS_AS(
      backup_record_from_json(nlohmann::json::parse(R"({"format":"nbdsnap-backup","version":9})")), CliError);
  CHECK_THROWS_AS(backup_record_from_json(nlohmann::json::parse("[1]")), CliError);
}

TEST_CASE("sidecar_is_saved_beside_the_backup_file_and_loaded_back") {
  TemporaryDirectory directory;
  const std::string file = directory.path + "/disk.img";
  CHECK(sidecar_path(file) == file + ".nbdsnap-backup");
  CHECK_FALSE(load_backup_record(file).has_value());
  BackupRecord record = sample_record();
  record.complete = false;
  save_backup_record(file, record);
  REQUIRE(load_backup_record(file).has_value());
  CHECK_FALSE(load_backup_record(file)->complete);
  record.complete = true;
  save_backup_record(file, record);
  CHECK(load_backup_record(file)->complete);
  CHECK(::access((sidecar_path(file) + ".tmp").c_str(), F_OK) != 0);
}

TEST_CASE("a_garbled_sidecar_is_an_io_error") {
  TemporaryDirectory directory;
  const std::string file = directory.path + "/disk.img";
  std::ofstream(sidecar_path(file)) << "{ not json";
  try {
    load_backup_record(file);
    FAIL("accepted");
  } catch (const CliError& error) {
    CHECK(error.code() == ExitCode::io_error);
  }
}
