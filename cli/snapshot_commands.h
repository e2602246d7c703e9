// SPDX-License-Identifier: BSD-3-Clause
// snapshot_commands.h — `snapshot create|add|remove|take|append-storage|info|list|destroy`.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "context.h"

namespace nbdsnap::cli {

std::vector<CommandSpec> snapshot_command_specs();

// Requests built from the command line (pure, unit-tested). Storage specs are core/storage_spec.h's text
// form: "PATH", "PATH:SIZE", "PATH:OFFSET+LENGTH" or "PATH:". `sparse` (--sparse) asks for files created at a
// size to be sparse (core/storage_allocation.h); a usage error when no spec creates a file.
nlohmann::json snapshot_create_request(const std::string& name, const std::vector<std::string>& origins,
                                       const std::vector<std::string>& storage_specs, uint64_t limit,
                                       bool writable, bool sparse = false);
nlohmann::json snapshot_append_storage_request(const std::string& name, const std::string& storage_spec,
                                               bool sparse = false);

std::string format_snapshot(const nlohmann::json& snapshot);
std::string format_snapshot_table(const nlohmann::json& snapshots);

}  // namespace nbdsnap::cli
