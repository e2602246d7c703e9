// SPDX-License-Identifier: BSD-3-Clause
// chain_verify.h — `nbdsnap backup verify`: re-reads the files of a backup chain and checks each against its
// manifest entry (its checksum, file_digest.h), QEMU's own consistency check (qemu-img check), and its place
// in the chain (the backing file and size qemu-img reads in its header). A point built on a damaged one is
// named too.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "chain_directory.h"

namespace nbdsnap::cli {

class MachineProgress;

struct PointCheck {
  std::string point;
  std::string file;
  std::string problem;     // "" when the point is fine
  std::string unfinished;  // "" or what a prune that did not finish left of the point (not damage)
};

// Checks the point named (with the points it is built on), or every point when `point_name` is empty.
// Progress counts the bytes hashed. Throws CliError only when the directory cannot be read at all.
std::vector<PointCheck> verify_chain(const ChainDirectory& chain, const std::string& point_name,
                                     bool terminal, MachineProgress* machine);

// What is wrong with the point's file as the manifest's checksums see it (missing, unreadable, another
// digest), or "". `progress` is told the bytes hashed.
std::string checksum_problem(const ChainDirectory& chain, const ChainPoint& point,
                             const std::function<void(uint64_t)>& progress = {});

}  // namespace nbdsnap::cli
