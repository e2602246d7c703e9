// SPDX-License-Identifier: BSD-3-Clause
// backup_plan.cpp — the checks an incremental backup must pass; the first failing one explains the fallback.
#include "backup_plan.h"

namespace nbdsnap::cli {

namespace {

BackupPlan full_because(const std::string& reason) {
  return {false, reason + ": doing a full backup"};
}

}  // namespace

BackupPlan plan_backup(const BackupFacts& facts) {
  if (facts.since.empty()) return {};
  const std::string& file = facts.backup_file;
  if (!facts.backup_file_exists) return full_because("no previous backup in " + file);
  if (!facts.previous) return full_because("no backup record " + sidecar_path(file) + " beside " + file);
  const BackupRecord& previous = *facts.previous;
  if (!previous.complete) return full_because("the previous backup into " + file + " did not complete");
  if (previous.origin != facts.origin) {
    return full_because(file + " holds a backup of origin '" + previous.origin + "', not '" + facts.origin +
                        "'");
  }
  if (previous.size != facts.image_size || facts.backup_file_size != facts.image_size) {
    return full_because("the image size changed (" + std::to_string(previous.size) + " -> " +
                        std::to_string(facts.image_size) + " bytes)");
  }
  if (previous.generation.empty() || previous.generation != facts.generation) {
    return full_because("the CBT generation of " + facts.origin + " changed (" +
                        (previous.generation.empty() ? std::string("unknown") : previous.generation) +
                        " -> " + facts.generation + "), so changes since " + facts.since + " are unknown");
  }
  if (previous.checkpoint != facts.since) {
    return full_because(file + " holds checkpoint '" +
                        (previous.checkpoint.empty() ? "none" : previous.checkpoint) + "', not '" +
                        facts.since + "'");
  }
  const auto checkpoint = facts.checkpoints.find(facts.since);
  if (checkpoint == facts.checkpoints.end()) {
    if (!facts.since_problem.empty()) return full_because(facts.since_problem);
    return full_because("checkpoint '" + facts.since + "' is not in the CBT of " + facts.origin +
                        " any more");
  }
  // A snapshot of an earlier checkpoint's name was taken since (a script that names every night's snapshot
  // alike): the name now stands for the newer take, and "changed since" it would miss what changed between
  // the two takes. Records of older versions know no take time: there a --since naming this image's own
  // take (the usual form of that mistake) is refused too, since nothing changed since it.
  const int64_t held = previous.checkpoint_taken_unix_ms;
  if (held != 0 && checkpoint->second != 0 && held != checkpoint->second) {
    return full_because("checkpoint '" + facts.since + "' was taken again after the backup in " + file +
                        " (that backup holds the take of " + std::to_string(held) + ", the server's '" +
                        facts.since + "' is the take of " + std::to_string(checkpoint->second) +
                        " unix ms), so changes since the earlier take are unknown; name each snapshot anew");
  }
  if (held == 0 && !facts.snapshot.empty() && facts.since == facts.snapshot) {
    return full_because("--since " + facts.since + " names this image's own take, and " + file +
                        " does not say which take of '" + facts.since +
                        "' it holds; name each snapshot anew");
  }
  return {true, {}};
}

}  // namespace nbdsnap::cli
