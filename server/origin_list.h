// SPDX-License-Identifier: BSD-3-Clause
// origin_list.h — the list of origins nbdsnapd serves, kept in STATE_DIR/origins.json.
//
// Origins attached at run time (nbdsnap origin attach) would be lost at the next start if only the command
// line named origins. So every attach and detach rewrites this list, and a start serves what it names plus
// the command line's origins. The file is JSON so an administrator can read and, with the server stopped,
// edit it.
#pragma once

#include <string>
#include <vector>

#include "status.h"

namespace nbdsnap {

// An origin as the command line and the list name it: "--origin NAME=PATH" serves PATH as export NAME.
struct OriginSpec {
  std::string name;
  std::string path;
  bool read_only = false;
  bool operator==(const OriginSpec&) const = default;
};

class OriginList {
 public:
  // An empty directory disables the list (loads nothing, saves nothing).
  explicit OriginList(const std::string& state_dir);
  const std::string& path() const { return path_; }

  // A missing file is an empty list; a damaged one is an error naming the file.
  Status load(std::vector<OriginSpec>& out) const;
  // Replaces the file atomically (temporary file, fsync, rename).
  Status save(const std::vector<OriginSpec>& origins) const;

 private:
  std::string path_;
};

}  // namespace nbdsnap
