// SPDX-License-Identifier: BSD-3-Clause
// backup_command.h — `nbdsnap backup`: the reference backup agent (full or incremental copy of an image).
#pragma once

#include <vector>

#include "context.h"

namespace nbdsnap::cli {

std::vector<CommandSpec> backup_command_specs();

}  // namespace nbdsnap::cli
