// SPDX-License-Identifier: BSD-3-Clause
// chain_prune.h — `nbdsnap backup prune DIR --keep N`: removes all but the newest N restore points without
// changing what any kept point reads as.
//
// Design notes. The oldest kept point K may be an overlay of points that go. qemu-img commit -b BASE K merges
// the data of every file between BASE (the full point at the root of K's chain) and K, K's own included, into
// BASE; BASE then reads exactly as K does, and its file is renamed over K's (atomically, in the same
// directory), so K's file name, which K's successors name as their backing file, now holds a file of its own.
// Order and crash safety: the points that go are first marked "pruning" in the manifest (no restore or backup
// uses them from then on). While the commit runs, reading K through its chain still gives K's content: for
// any cluster, K or the nearest file above BASE that holds it answers first, as before, and BASE now holds
// for the others what the topmost of them held, which is what K read anyway. A prune interrupted after the
// rename finds K without a backing file (qemu-img info) and does not merge again. Only then are the other
// files removed and the manifest rewritten.
#pragma once

#include <string>
#include <vector>

#include "chain_directory.h"

namespace nbdsnap::cli {

struct PruneResult {
  std::vector<std::string> removed;  // points that left the chain
  std::string merged_into;           // the kept point that took its bases' data ("" if none)
  std::vector<std::string> kept;
  bool finished_unfinished = false;  // a prune that did not finish was finished first
};

// REQUIRES: keep >= 1; the directory is locked exclusively. Throws CliError; what it did so far is recorded
// in the manifest, and running it again (with any --keep) first finishes that work, then prunes to `keep`.
PruneResult prune_chain(ChainDirectory& chain, size_t keep);

// Whether a prune that did not finish left points marked "pruning".
bool prune_unfinished(const ChainManifest& manifest);
// The command line that finishes an interrupted prune and removes nothing more (quoted, for messages).
std::string finish_prune_command(const ChainDirectory& chain);

}  // namespace nbdsnap::cli
