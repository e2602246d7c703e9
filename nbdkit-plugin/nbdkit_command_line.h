// SPDX-License-Identifier: BSD-3-Clause
// nbdkit_command_line.h — what the filter reads from nbdkit's own command line: whether nbdkit speaks the
// oldstyle handshake (-o).
//
// nbdkit tells a filter nothing about its protocol, and under -o the filter must know it before any client
// comes: oldstyle clients send no export name, so an image URI (ORIGIN@SNAPSHOT) handed to an agent would
// reach the live origin through libnbd, which connects anyway; and a connection of the filter's own, the
// other way to find out, cannot be made under every thread model and in time for every open. So the filter
// reads /proc/self/cmdline once, as nbdkit's getopt_long did (nbdkit(1)): options may come anywhere before
// "--" (GNU permutation: `nbdkit file disk.img -o` is oldstyle), short ones may be clustered ("-fo"), the
// last of -o/--oldstyle and -n/--newstyle wins, and newstyle is the default.
#pragma once

#include <string>
#include <vector>

namespace nbdsnap {

// Whether nbdkit's arguments (argv[0] first) ask for the oldstyle handshake. Pure; unit-tested.
bool nbdkit_arguments_ask_oldstyle(const std::vector<std::string>& argv);
// The same for this process, from /proc/self/cmdline; false when it cannot be read.
bool nbdkit_runs_oldstyle();

}  // namespace nbdsnap
