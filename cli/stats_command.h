// SPDX-License-Identifier: BSD-3-Clause
// stats_command.h — `nbdsnap stats [--json|--prometheus] [--output FILE]`: the server's counters per origin,
// snapshot and image as tables, JSON, or the Prometheus text format for node_exporter's textfile collector.
#pragma once

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "context.h"

namespace nbdsnap::cli {

std::vector<CommandSpec> stats_command_specs();

// The stats reply as the tables `nbdsnap stats` prints (pure, unit-tested).
std::string format_stats_tables(const nlohmann::json& stats);

}  // namespace nbdsnap::cli
