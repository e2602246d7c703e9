// storage_ledger.cpp — a JSON list of paths, rewritten with temp file + rename.
#include "storage_ledger.h"

#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

namespace nbdsnap {

std::vector<std::string> StorageLedger::remove_leftovers() const {
  std::vector<std::string> removed;
  if (!enabled()) return removed;
  std::ifstream in(path());
  if (!in) return removed;
  try {
    const auto listed = nlohmann::json::parse(in).at("files").get<std::vector<std::string>>();
    for (const std::string& file : listed) {
      if (::unlink(file.c_str()) == 0) removed.push_back(file);
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
  const std::string temp = path() + ".tmp";
  {
    std::ofstream out(temp, std::ios::trunc);
    out << nlohmann::json{{"files", paths}}.dump() << '\n';
    if (!out.flush()) return {Errc::io_error, "write " + temp};
  }
  if (std::rename(temp.c_str(), path().c_str()) != 0) return Status::from_errno(errno, "rename " + temp);
  return Status::ok();
}

}  // namespace nbdsnap
