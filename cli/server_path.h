// SPDX-License-Identifier: BSD-3-Clause
// server_path.h — file paths the CLI sends to the server are absolute.
//
// The server resolves a relative path against its own working directory (/ under systemd), not the user's:
// `nbdsnap snapshot create s1 --storage diff.img:1G` would create /diff.img. So every path option is made
// absolute here, in the shell where the user typed it.
#pragma once

#include <string>

namespace nbdsnap::cli {

// PATH made absolute against the current directory and normalised ("a/../b" -> "b"); absolute paths unchanged
// except for normalisation.
std::string server_path(const std::string& path);

}  // namespace nbdsnap::cli
