// SPDX-License-Identifier: BSD-3-Clause
// standard_fds.h — descriptors 0, 1 and 2 held open from a program's start.
//
// A program started with stderr closed (`nbdsnapd 2>&-`, a careless supervisor) would otherwise hand fd 2 to
// the first file it opens, and everything it logs would be written there: into an origin's disk image from
// byte 0, untracked by CBT, or into a backup target. Each of the three that is closed is opened on /dev/null
// first, as daemons do. Call at the start of main, before any other open.
#pragma once

namespace nbdsnap {

// Opens /dev/null on each of fds 0, 1, 2 that is not open. Returns false if one could not be (then the
// caller should exit: any file it opened could take that descriptor).
bool keep_standard_fds_open();

}  // namespace nbdsnap
