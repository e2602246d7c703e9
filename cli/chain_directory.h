// SPDX-License-Identifier: BSD-3-Clause
// chain_directory.h — a backup chain directory opened for one command: locked against other nbdsnap
// commands (exclusive for backup and prune, which change it; shared for list, verify and restore), its
// manifest loaded, and the paths of its points.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include <sys/types.h>

#include "chain_manifest.h"
#include "private_files.h"

namespace nbdsnap::cli {

class ChainDirectory {
 public:
  // Opens `directory`, creating it (for a backup) with a mode fitting `mode` if `create`. A directory that
  // does not exist, or holds no chain when one is needed (`must_hold_chain`), is a usage error.
  ChainDirectory(const std::string& directory, bool exclusive, bool create, bool must_hold_chain,
                 mode_t mode);

  const std::string& path() const { return directory_; }
  ChainManifest& manifest() { return manifest_; }
  const ChainManifest& manifest() const { return manifest_; }
  // The point's file: DIR/FILE.
  std::string file_of(const ChainPoint& point) const { return directory_ + "/" + point.file; }
  // Writes the manifest (atomically, with the chain's file mode).
  void save() const;
  // The point named (or whose checkpoint is) `name`; with an empty name the newest complete one. Throws
  // CliError (not_found) naming the points there are.
  const ChainPoint& point(const std::string& name) const;
  // Points left "writing" by a backup that did not finish: their files are removed and they leave the
  // manifest (exclusive lock only). Returns their names.
  std::vector<std::string> discard_unfinished();

 private:
  std::string directory_;
  std::unique_ptr<DirectoryLock> lock_;
  ChainManifest manifest_;
};

}  // namespace nbdsnap::cli
