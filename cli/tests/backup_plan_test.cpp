// SPDX-License-Identifier: BSD-3-Clause
// backup_plan_test.cpp — when an incremental backup may build on the previous copy, and the fallback
// messages.
#include <doctest/doctest.h>

#include "backup_plan.h"

using namespace nbdsnap::cli;

namespace {

BackupFacts incremental_facts() {
  BackupFacts facts;
  facts.since = "s1";
  facts.backup_file = "/b/disk.img";
  facts.backup_file_exists = true;
  facts.backup_file_size = 1 << 20;
  facts.image_size = 1 << 20;
  facts.origin = "disk";
  facts.generation = "g1";
  facts.snapshot = "s2";  // backing up image disk@s2 since s1
  facts.checkpoints = {{"s1", 1000}, {"s2", 2000}};
  BackupRecord previous;
  previous.complete = true;
  previous.origin = "disk";
  previous.checkpoint = "s1";
  previous.checkpoint_taken_unix_ms = 1000;
  previous.generation = "g1";
  previous.size = 1 << 20;
  facts.previous = previous;
  return facts;
}

}  // namespace

TEST_CASE("backup_without_since_is_full_without_a_message") {
  BackupFacts facts = incremental_facts();
  facts.since.clear();
  BackupPlan plan = plan_backup(facts);
  CHECK_FALSE(plan.incremental);
  CHECK(plan.fallback_reason.empty());
}

TEST_CASE("backup_since_the_recorded_checkpoint_in_the_same_generation_is_incremental") {
  BackupPlan plan = plan_backup(incremental_facts());
  CHECK(plan.incremental);
  CHECK(plan.fallback_reason.empty());
}

TEST_CASE("a_generation_change_forces_a_full_backup_with_a_message") {
  BackupFacts facts = incremental_facts();
  facts.generation = "g2";
  BackupPlan plan = plan_backup(facts);
  CHECK_FALSE(plan.incremental);
  CHECK(plan.fallback_reason.find("CBT generation of disk changed (g1 -> g2)") != std::string::npos);
  CHECK(plan.fallback_reason.find("doing a full backup") != std::string::npos);
}

TEST_CASE("every_unusable_base_falls_back_to_full") {
  auto reason = [](auto change) {
    BackupFacts facts = incremental_facts();
    change(facts);
    BackupPlan plan = plan_backup(facts);
    CHECK_FALSE(plan.incremental);
    return plan.fallback_reason;
  };
  CHECK(reason([](BackupFacts& f) { f.backup_file_exists = false; }).find("no previous backup") !=
        std::string::npos);
  CHECK(reason([](BackupFacts& f) { f.previous.reset(); }).find("no backup record") != std::string::npos);
  CHECK(reason([](BackupFacts& f) { f.previous->complete = false; }).find("did not complete") !=
        std::string::npos);
  CHECK(reason([](BackupFacts& f) { f.previous->origin = "other"; }).find("origin 'other'") !=
        std::string::npos);
  CHECK(reason([](BackupFacts& f) { f.image_size = 2 << 20; }).find("size changed") != std::string::npos);
  CHECK(reason([](BackupFacts& f) { f.backup_file_size = 5; }).find("size changed") != std::string::npos);
  CHECK(reason([](BackupFacts& f) { f.previous->generation.clear(); }).find("unknown") != std::string::npos);
  CHECK(reason([](BackupFacts& f) { f.previous->checkpoint = "s0"; }).find("holds checkpoint 's0'") !=
        std::string::npos);
  CHECK(reason([](BackupFacts& f) { f.checkpoints.erase("s1"); }).find("not in the CBT") !=
        std::string::npos);
}

TEST_CASE("a_checkpoint_the_image_does_not_know_falls_back_to_full_with_the_servers_reason") {
  BackupFacts facts = incremental_facts();
  facts.checkpoints.erase("s1");
  facts.since_problem =
      "origin 'disk': checkpoint 's1' is gone: only the 16 newest checkpoints are kept; do a "
      "full backup (checkpoint_gone)";
  BackupPlan plan = plan_backup(facts);
  CHECK_FALSE(plan.incremental);
  CHECK(plan.fallback_reason == facts.since_problem + ": doing a full backup");
}

TEST_CASE("a_checkpoint_taken_again_under_its_name_since_the_backup_falls_back_to_full") {
  // The tester's nightly script: every night's snapshot is "bk", so the server's "bk" is tonight's take and
  // changes since it are none: the copy holding last night's "bk" must be rewritten in full.
  BackupFacts facts = incremental_facts();
  facts.since = "bk";
  facts.snapshot = "bk";
  facts.checkpoints = {{"bk", 5000}};
  facts.previous->checkpoint = "bk";
  facts.previous->checkpoint_taken_unix_ms = 1000;
  BackupPlan plan = plan_backup(facts);
  CHECK_FALSE(plan.incremental);
  CHECK(plan.fallback_reason.find("checkpoint 'bk' was taken again after the backup in /b/disk.img") !=
        std::string::npos);
  // The same take the copy holds: nothing changed since it, an (empty) incremental backup is right.
  facts.previous->checkpoint_taken_unix_ms = 5000;
  CHECK(plan_backup(facts).incremental);
  // A record of an older version knows no take time: --since naming the image's own take is refused, any
  // other checkpoint still goes on as before.
  facts.previous->checkpoint_taken_unix_ms = 0;
  plan = plan_backup(facts);
  CHECK_FALSE(plan.incremental);
  CHECK(plan.fallback_reason.find("--since bk names this image's own take") != std::string::npos);
  BackupFacts older = incremental_facts();
  older.previous->checkpoint_taken_unix_ms = 0;
  CHECK(plan_backup(older).incremental);
  // A server that does not say when it took a checkpoint (0) cannot tell either.
  BackupFacts unknown = incremental_facts();
  unknown.checkpoints["s1"] = 0;
  CHECK(plan_backup(unknown).incremental);
}
