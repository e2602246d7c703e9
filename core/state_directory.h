// SPDX-License-Identifier: BSD-3-Clause
// state_directory.h — the directory of CBT state a front end is given (nbdsnapd --state-dir, the filter's
// nbdsnap-state-dir): made ready once at start, with the same rule and the same words in both front ends.
#pragma once

#include <string>

#include "status.h"

namespace nbdsnap {

// Makes `path` ready to hold CBT state: an existing directory is used as is; a missing one is created with
// mode 0700 (the state names origins' paths) when its parent directory exists. `option` is how the user gave
// it ("--state-dir", "nbdsnap-state-dir=") and starts every message. Errors: not_found when the parent is
// missing too (the message says to create it: a typo must not become a new tree of directories);
// invalid_argument when `path` is not a directory; the errors of stat and mkdir (read_only for EACCES...).
// Not thread-safe with itself on the same path (front ends call it once, before the engine starts).
Status prepare_state_directory(const std::string& path, const std::string& option);

}  // namespace nbdsnap
