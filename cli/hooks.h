// SPDX-License-Identifier: BSD-3-Clause
// hooks.h — runs the --pre-hook / --post-hook commands of `snapshot take` (e.g. a guest fsfreeze / thaw).
#pragma once

#include <string>

namespace nbdsnap::cli {

// Runs `/bin/sh -c command` with NBDSNAP_SNAPSHOT=snapshot and NBDSNAP_HOOK=stage ("pre"/"post") in its
// environment, its stdout sent to our stderr (so --json output stays clean). Returns the exit status
// (128+N for a signal, 127 if the shell could not run).
int run_hook(const std::string& command, const std::string& snapshot, const std::string& stage);

}  // namespace nbdsnap::cli
