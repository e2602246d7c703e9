// SPDX-License-Identifier: BSD-3-Clause
// chain_prune.cpp — carrying out a prune plan (chain_manifest.h plan_prune) in crash-safe order.
#include "chain_prune.h"

#include <algorithm>
#include <cerrno>
#include <set>

#include <sys/stat.h>
#include <cstdio>

#include "chain_verify.h"
#include "exit_codes.h"
#include "file_digest.h"
#include "qemu_tools.h"

namespace nbdsnap::cli {

namespace {

ChainPoint& point_named(ChainManifest& manifest, const std::string& name) {
  for (ChainPoint& point : manifest.points) {
    if (point.name == name) return point;
  }
  throw CliError(ExitCode::io_error, "the chain manifest lost point " + name);
}

// Merges K's chain into its base file and puts that file in K's place; K then stands alone.
void merge_into(ChainDirectory& chain, const std::string& kept_name, const std::vector<std::string>& bases) {
  ChainPoint& kept = point_named(chain.manifest(), kept_name);
  const std::string kept_path = chain.file_of(kept);
  const std::string base_path = chain.file_of(point_named(chain.manifest(), bases.front()));
  if (!qemu_img_info(kept_path).backing_filename.empty()) {
    qemu_img_commit(kept_path, base_path);
    sync_path(base_path);
    if (::rename(base_path.c_str(), kept_path.c_str()) != 0) {
      local_io_error("cannot rename " + base_path + " to " + kept_path, errno);
    }
    sync_path(chain.path());
  }  // else an earlier prune got as far as the rename
  kept.backing.clear();
  for (const std::string& base : bases) {
    if (std::find(kept.merged.begin(), kept.merged.end(), base) == kept.merged.end())
      kept.merged.push_back(base);
  }
  kept.bytes = qemu_img_stored_bytes(kept_path);
  kept.checksums = {{digest_key(kChainDigest), file_digest(kept_path, kChainDigest)}};
  struct stat info {};
  kept.file_bytes = ::stat(kept_path.c_str(), &info) == 0 ? static_cast<uint64_t>(info.st_size) : 0;
  chain.save();
}

// A merge writes the kept point's chain into one file and records a new checksum of it: damage in any file
// of that chain would become part of a point that verifies. So those files are checked first (as `backup
// verify --point` does), and a damaged one stops the prune before anything changes.
void refuse_to_merge_damage(const ChainDirectory& chain, const std::string& kept_name) {
  for (const PointCheck& check : verify_chain(chain, kept_name, /*terminal=*/false, nullptr)) {
    if (check.problem.empty()) continue;
    throw CliError(ExitCode::io_error, "backup prune: nothing changed: point " + kept_name +
                                           " would be merged with point " + check.point +
                                           ", which is not sound (" + check.problem +
                                           "); a merge would record a checksum over the damage");
  }
}

// An interrupted prune's merge is finished without `backup verify`'s checks: they ran before the points were
// marked, and the merge's base (the file the interrupted qemu-img commit wrote) no longer matches its
// checksum. The files the commit only read, the kept point's and those between it and the base, must still
// match theirs. Once the kept point's file is the merge (renamed over it), there is nothing left to check.
void refuse_to_finish_on_damage(const ChainDirectory& chain, const std::string& kept_name) {
  const ChainPoint& kept = chain.point(kept_name);
  if (qemu_img_info(chain.file_of(kept)).backing_filename.empty()) return;
  const std::vector<const ChainPoint*> links = backing_chain(chain.manifest(), kept);
  for (size_t i = 1; i < links.size(); ++i) {  // links[0], the base, is the commit's target
    if (std::string problem = checksum_problem(chain, *links[i]); !problem.empty()) {
      throw CliError(ExitCode::io_error, "backup prune: cannot finish the prune that did not finish: point " +
                                             kept_name + " would be merged with point " + links[i]->name +
                                             ", which is not sound (" + problem + ")");
    }
  }
}

// Marks the plan's points "pruning", merges, removes their files, then drops them from the manifest; each
// step is safe to repeat from the start (chain_prune.h).
void carry_out(ChainDirectory& chain, const PrunePlan& plan, PruneResult& result) {
  ChainManifest& manifest = chain.manifest();
  const std::set<std::string> going(plan.remove.begin(), plan.remove.end());
  for (ChainPoint& point : manifest.points) {
    if (going.count(point.name) != 0) point.state = "pruning";
  }
  chain.save();
  if (plan.merge_into) {
    merge_into(chain, *plan.merge_into, plan.merged_bases);
    result.merged_into = *plan.merge_into;
  }
  const std::string merged_base = plan.merge_into ? plan.merged_bases.front() : std::string();
  for (const std::string& name : plan.remove) {
    // The merged base's file is now the kept point's: its old name is gone already.
    if (name != merged_base) remove_file(chain.file_of(point_named(manifest, name)));
    result.removed.push_back(name);
  }
  sync_path(chain.path());
  std::erase_if(manifest.points, [&](const ChainPoint& point) { return going.count(point.name) != 0; });
  chain.save();
}

size_t complete_points(const ChainManifest& manifest) {
  return static_cast<size_t>(
      std::count_if(manifest.points.begin(), manifest.points.end(),
                    [](const ChainPoint& point) { return point.state == "complete"; }));
}

}  // namespace

bool prune_unfinished(const ChainManifest& manifest) {
  return std::any_of(manifest.points.begin(), manifest.points.end(),
                     [](const ChainPoint& point) { return point.state == "pruning"; });
}

std::string finish_prune_command(const ChainDirectory& chain) {
  return "'nbdsnap backup prune " + chain.path() + " --keep " +
         std::to_string(std::max<size_t>(complete_points(chain.manifest()), 1)) + "'";
}

PruneResult prune_chain(ChainDirectory& chain, size_t keep) {
  ChainManifest& manifest = chain.manifest();
  PruneResult result;
  if (prune_unfinished(manifest)) {
    // First the interrupted prune, with its own plan: every complete point stays, the "pruning" ones go, and
    // the oldest complete point takes their data if it is built on them.
    const PrunePlan unfinished = plan_prune(manifest, complete_points(manifest));
    if (unfinished.merge_into) refuse_to_finish_on_damage(chain, *unfinished.merge_into);
    carry_out(chain, unfinished, result);
    result.finished_unfinished = true;
  }
  const PrunePlan plan = plan_prune(manifest, keep);
  if (!plan.empty()) {
    if (plan.merge_into) refuse_to_merge_damage(chain, *plan.merge_into);
    carry_out(chain, plan, result);
  }
  for (const ChainPoint& point : manifest.points) result.kept.push_back(point.name);
  return result;
}

}  // namespace nbdsnap::cli
