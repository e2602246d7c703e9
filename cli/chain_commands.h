// SPDX-License-Identifier: BSD-3-Clause
// chain_commands.h — the commands on a qcow2 backup chain directory: backup verify, backup prune, backup
// list.
#pragma once

#include <string>
#include <vector>

#include "chain_manifest.h"
#include "context.h"

namespace nbdsnap::cli {

std::vector<CommandSpec> chain_command_specs();

// The `backup list` table (pure): point, checkpoint, time, bytes and share of the disk, base, state.
std::string format_chain_table(const ChainManifest& manifest);

}  // namespace nbdsnap::cli
