// SPDX-License-Identifier: BSD-3-Clause
// origin_list.cpp — reading and writing STATE_DIR/origins.json (see origin_list.h).
#include "origin_list.h"

#include <cerrno>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "durable_file.h"

namespace nbdsnap {

namespace {
constexpr int kFormatVersion = 1;
}  // namespace

OriginList::OriginList(const std::string& state_dir)
    : path_(state_dir.empty() ? "" : state_dir + "/origins.json") {}

Status OriginList::load(std::vector<OriginSpec>& out) const {
  out.clear();
  if (path_.empty()) return Status::ok();
  std::ifstream in(path_);
  if (!in) return errno == ENOENT ? Status::ok() : Status::from_errno(errno, "open " + path_);
  std::stringstream text;
  text << in.rdbuf();
  try {
    const auto document = nlohmann::json::parse(text.str());
    if (document.at("version").get<int>() != kFormatVersion) {
      return {Errc::invalid_argument, path_ + ": unknown format version"};
    }
    for (const auto& entry : document.at("origins")) {
      out.push_back({entry.at("name").get<std::string>(), entry.at("path").get<std::string>(),
                     entry.value("read_only", false)});
    }
  } catch (const std::exception& e) {
    out.clear();
    return {Errc::invalid_argument, path_ + " is damaged: " + e.what()};
  }
  return Status::ok();
}

Status OriginList::save(const std::vector<OriginSpec>& origins) const {
  if (path_.empty()) return Status::ok();
  nlohmann::json list = nlohmann::json::array();
  for (const auto& origin : origins) {
    list.push_back({{"name", origin.name}, {"path", origin.path}, {"read_only", origin.read_only}});
  }
  const std::string text = nlohmann::json{{"version", kFormatVersion}, {"origins", list}}.dump(
                               2, ' ', false, nlohmann::json::error_handler_t::replace) +
                           "\n";
  return replace_file_durably(path_, text);
}

}  // namespace nbdsnap
