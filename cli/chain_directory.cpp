// SPDX-License-Identifier: BSD-3-Clause
// chain_directory.cpp — opening, locking and naming in a backup chain directory (chain_directory.h).
#include "chain_directory.h"

#include <algorithm>
#include <filesystem>

#include "exit_codes.h"

namespace nbdsnap::cli {

namespace {

// A new chain starts in a new or empty directory: one that holds other files is most likely a mistake
// (--to naming a directory of other things), and prune would later see files it does not know.
void refuse_foreign_files(const std::string& directory) {
  std::error_code error;
  for (const auto& entry : std::filesystem::directory_iterator(directory, error)) {
    const std::string name = entry.path().filename().string();
    if (name == kChainLockName || name == std::string(kChainManifestName) + ".tmp") continue;
    usage_error(directory + " holds files but no backup chain (" + name + "): give a new or empty directory");
  }
  if (error) throw CliError(ExitCode::io_error, directory + ": " + error.message());
}

}  // namespace

ChainDirectory::ChainDirectory(const std::string& directory, bool exclusive, bool create,
                               bool must_hold_chain, mode_t mode)
    : directory_(directory) {
  if (create) {
    make_private_directory(directory, directory_mode_for(mode));
  } else if (!path_exists(directory)) {
    throw CliError(ExitCode::not_found, directory + ": no such backup chain directory");
  }
  lock_ = std::make_unique<DirectoryLock>(directory, kChainLockName, exclusive, mode);
  const bool had_manifest = path_exists(directory + "/" + kChainManifestName);
  if (create && !had_manifest) refuse_foreign_files(directory);
  manifest_ = load_chain_manifest(directory);
  if (!had_manifest) manifest_.file_mode = mode;
  if (must_hold_chain && !had_manifest) {
    throw CliError(ExitCode::not_found, directory + " holds no backup chain (no " + kChainManifestName + ")");
  }
}

void ChainDirectory::save() const {
  save_chain_manifest(directory_, manifest_, manifest_.file_mode);
}

const ChainPoint& ChainDirectory::point(const std::string& name) const {
  const ChainPoint* found = name.empty() ? newest_complete_point(manifest_) : find_point(manifest_, name);
  if (found != nullptr) return *found;
  std::string known;
  for (const ChainPoint& point : manifest_.points) {
    known += (known.empty() ? "" : ", ") + point.name +
             (point.checkpoint.empty() ? "" : " (" + point.checkpoint + ")");
  }
  if (name.empty()) throw CliError(ExitCode::not_found, directory_ + " holds no complete restore point");
  throw CliError(ExitCode::not_found, directory_ + " has no point or checkpoint '" + name + "'" +
                                          (known.empty() ? "" : "; it has " + known));
}

std::vector<std::string> ChainDirectory::discard_unfinished() {
  std::vector<std::string> discarded;
  for (const ChainPoint& point : manifest_.points) {
    if (point.state != "writing") continue;
    remove_file(file_of(point));
    discarded.push_back(point.name);
  }
  if (discarded.empty()) return discarded;
  std::erase_if(manifest_.points, [](const ChainPoint& point) { return point.state == "writing"; });
  save();
  return discarded;
}

}  // namespace nbdsnap::cli
