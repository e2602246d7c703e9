// SPDX-License-Identifier: BSD-3-Clause
// origin_commands.h — `version`, `origins`, `origin attach|detach|info`: the server and its origins.
#pragma once

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "context.h"

namespace nbdsnap::cli {

std::vector<CommandSpec> origin_command_specs();

// Human-readable forms of the replies (pure, unit-tested).
std::string format_version(const std::string& client_version, const nlohmann::json& reply);
std::string format_origin_table(const nlohmann::json& origins);
std::string format_origin(const nlohmann::json& origin);

}  // namespace nbdsnap::cli
