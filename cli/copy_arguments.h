// SPDX-License-Identifier: BSD-3-Clause
// copy_arguments.h — the options every command that copies over NBD shares (backup, restore): how many
// connections, requests in flight and bytes per request, checked once with their bounds in the messages.
#pragma once

#include "command_line.h"
#include "image_copier.h"

namespace nbdsnap::cli {

// Adds --connections, --requests and --request-size (with their defaults) to a command's options.
void add_copy_arguments(CommandArgs& args);
// The copy options given, or a usage error naming the option and its bounds.
CopyOptions copy_options_from(const CommandArgs& args);

}  // namespace nbdsnap::cli
