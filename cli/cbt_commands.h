// SPDX-License-Identifier: BSD-3-Clause
// cbt_commands.h — `cbt info|map|mark-dirty|reset`, `checkpoints` and `checkpoint delete`: changed-block
// tracking of origins.
#pragma once

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "byte_ranges.h"
#include "context.h"
#include "nbdsnap/client.h"

namespace nbdsnap::cli {

std::vector<CommandSpec> cbt_command_specs();

// Ranges per cbt-mark-dirty request: libnbdsnap's (nbdsnap/client.h).
using client::kMarkDirtyRangesPerRequest;

// Requests for `cbt mark-dirty ORIGIN RANGE...`: the ranges merged (marking is idempotent, so overlapping and
// touching ranges are one), at most per_request of them in each. Throws CliError (usage) when there is no
// range. Pure, unit-tested.
std::vector<nlohmann::json> cbt_mark_dirty_requests(const std::string& origin, std::vector<ByteRange> ranges,
                                                    size_t per_request = kMarkDirtyRangesPerRequest);
std::string format_cbt_info(const nlohmann::json& cbt);
std::string format_cbt_map(const nlohmann::json& reply);
// `cbt map --raw`: one row per run of equal change numbers, and what the numbers mean.
std::string format_cbt_raw_map(const nlohmann::json& reply);
std::string format_checkpoints(const nlohmann::json& reply);

}  // namespace nbdsnap::cli
