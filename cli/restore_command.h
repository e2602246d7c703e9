// SPDX-License-Identifier: BSD-3-Clause
// restore_command.h — `nbdsnap restore`: a restore point of a qcow2 backup chain written back to a file, a
// block device or an NBD export (an origin of a server, for instance).
#pragma once

#include <vector>

#include "context.h"

namespace nbdsnap::cli {

std::vector<CommandSpec> restore_command_specs();

}  // namespace nbdsnap::cli
