// SPDX-License-Identifier: BSD-3-Clause
// events_commands.h — `events` (read or follow the server's event log) and `watch-storage` (grow a
// snapshot's difference storage when the server reports low free space).
#pragma once

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "context.h"

namespace nbdsnap::cli {

std::vector<CommandSpec> events_command_specs();

// Column header and one fixed-width line per event (pure, unit-tested); both end in '\n'.
std::string format_event_header();
std::string format_event_line(const nlohmann::json& event);

}  // namespace nbdsnap::cli
