// SPDX-License-Identifier: BSD-3-Clause
// storage_ledger.cpp — a JSON list of paths, rewritten with temp file + rename.
#include "storage_ledger.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "durable_file.h"
#include "file_lock.h"

namespace nbdsnap {

namespace {

// Removes a leftover storage file unless a process holds its lock: since the crash its path may have been
// given to another nbdsnap as storage (or to anything else that locks it), and then it is no longer ours to
// delete.
bool remove_if_unused(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDWR | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0) return false;
  const bool unused = lock_file(fd, path, FileLockMode::exclusive).is_ok();
  const bool removed = unused && ::unlink(path.c_str()) == 0;
  ::close(fd);
  return removed;
}

}  // namespace

std::vector<std::string> StorageLedger::remove_leftovers() const {
  std::vector<std::string> removed;
  if (!enabled()) return removed;
  std::ifstream in(path());
  if (!in) return removed;
  try {
    const auto listed = nlohmann::json::parse(in).at("files").get<std::vector<std::string>>();
    for (const std::string& file : listed) {
      if (remove_if_unused(file)) removed.push_back(file);
    }
  } catch (const std::exception&) {
    // A damaged ledger lists nothing we can trust to delete.
  }
  (void)record({});
  return removed;
}

Status StorageLedger::record(const std::vector<std::string>& paths) const {
  if (!enabled()) return Status::ok();
  std::error_code ec;
  std::filesystem::create_directories(dir_, ec);
  if (ec) return {Errc::io_error, "create state directory " + dir_ + ": " + ec.message()};
  return replace_file_durably(path(), nlohmann::json{{"files", paths}}.dump() + '\n');
}

}  // namespace nbdsnap
