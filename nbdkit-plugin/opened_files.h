// SPDX-License-Identifier: BSD-3-Clause
// opened_files.h — which file the plugin really opened for a connection, not only which file its path names.
//
// The filter knows the file behind an export from the plugin's parameters and the export's path
// (ServedOriginFiles::identity_of_export), but the plugin opens that path itself, inside the filter's .open.
// Two renames in the plugin's directory (renameat2 RENAME_EXCHANGE there and back) around that open leave the
// path naming the attached origin's file while the plugin holds another one: its writes would then pass this
// origin's tracker and reach another file (whose CBT misses them), and this origin's images would read that
// file's bytes (found by a hostile tester, invariants 1 and 3). So the filter lists the process's open files
// before and after the plugin's open (serialised, see nbdsnap_open) and requires the file the path names
// among those the open added.
#pragma once

#include <map>
#include <string>

namespace nbdsnap {

// The process's open descriptors and the identity of the file or disk each refers to
// (FileDevice::identity_of: "file DEV:INODE", "block MAJOR:MINOR", a loop device's backing file), from
// /proc/self/fd. Descriptors whose file cannot be told are left out. Costs one stat per descriptor.
std::map<int, std::string> open_file_identities();

// Whether a descriptor that is new in `after`, or refers to another file than in `before`, refers to
// `identity`: whether the code that ran between the two lists opened that file.
bool opened_between(const std::map<int, std::string>& before, const std::map<int, std::string>& after,
                    const std::string& identity);

}  // namespace nbdsnap
