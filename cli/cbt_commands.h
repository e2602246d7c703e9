// SPDX-License-Identifier: BSD-3-Clause
// cbt_commands.h — `cbt info|map|mark-dirty|reset`, `checkpoints` and `checkpoint delete`: changed-block
// tracking of origins.
#pragma once

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "context.h"

namespace nbdsnap::cli {

std::vector<CommandSpec> cbt_command_specs();

// Request for `cbt mark-dirty ORIGIN RANGE...` (ranges as "OFFSET+LENGTH"; pure, unit-tested).
nlohmann::json cbt_mark_dirty_request(const std::string& origin, const std::vector<std::string>& ranges);
std::string format_cbt_info(const nlohmann::json& cbt);
std::string format_cbt_map(const nlohmann::json& reply);
// `cbt map --raw`: one row per run of equal change numbers, and what the numbers mean.
std::string format_cbt_raw_map(const nlohmann::json& reply);
std::string format_checkpoints(const nlohmann::json& reply);

}  // namespace nbdsnap::cli
