// SPDX-License-Identifier: BSD-3-Clause
// chain_prune.cpp — carrying out a prune plan (chain_manifest.h plan_prune) in crash-safe order.
#include "chain_prune.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
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
      throw CliError(ExitCode::io_error,
                     "cannot rename " + base_path + " to " + kept_path + ": " + std::strerror(errno));
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

}  // namespace

PruneResult prune_chain(ChainDirectory& chain, size_t keep) {
  ChainManifest& manifest = chain.manifest();
  const PrunePlan plan = plan_prune(manifest, keep);
  PruneResult result;
  const std::set<std::string> going(plan.remove.begin(), plan.remove.end());
  for (const ChainPoint& point : manifest.points) {
    if (going.count(point.name) == 0) result.kept.push_back(point.name);
  }
  if (plan.empty()) return result;
  if (plan.merge_into) refuse_to_merge_damage(chain, *plan.merge_into);
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
  return result;
}

}  // namespace nbdsnap::cli
