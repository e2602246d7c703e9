// SPDX-License-Identifier: BSD-3-Clause
// command_registry.h — the list of all commands, the general help text, and dispatch by command words.
#pragma once

#include <string>
#include <vector>

#include "context.h"

namespace nbdsnap::cli {

std::vector<CommandSpec> all_command_specs();
// The command whose words are the longest prefix of `words`, or null.
const CommandSpec* find_command(const std::vector<CommandSpec>& specs, const std::vector<std::string>& words);
// `nbdsnap --help`: synopsis of every command, global options, exit codes.
std::string general_help(const std::vector<CommandSpec>& specs);
// Runs the command named by words (handles --version, --help, unknown commands).
int dispatch_command(Context& context, const std::vector<std::string>& words,
                     const std::vector<CommandSpec>& specs);

}  // namespace nbdsnap::cli
