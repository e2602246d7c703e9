// SPDX-License-Identifier: BSD-3-Clause
// config_file.cpp — reading nbdsnapd's configuration file with the line of every value (see config_file.h).
#include "config_file.h"

#include <cerrno>
#include <fstream>
#include <map>

namespace nbdsnap {

namespace {

std::string trimmed(std::string_view text) {
  const auto first = text.find_first_not_of(" \t\r");
  if (first == std::string_view::npos) return {};
  const auto last = text.find_last_not_of(" \t\r");
  return std::string(text.substr(first, last - first + 1));
}

Status line_error(const std::string& path, unsigned line, const std::string& message) {
  return {Errc::invalid_argument, path + ":" + std::to_string(line) + ": " + message};
}

}  // namespace

std::string ConfigFile::where(std::string_view key, const std::string* value) const {
  for (const ConfigFileEntry& entry : entries) {
    if (entry.key == key && (value == nullptr || entry.value == *value)) {
      return path + ":" + std::to_string(entry.line) + ": ";
    }
  }
  return {};
}

Status read_config_file(const std::string& path,
                        const std::function<ConfigKeyKind(std::string_view)>& kind_of, ConfigFile& out) {
  std::ifstream file(path);
  if (!file) return Status::from_errno(errno, "cannot open the configuration file " + path);
  out.path = path;
  out.entries.clear();
  std::map<std::string, unsigned, std::less<>> single_lines;  // single keys seen, and their line
  std::string text;
  for (unsigned line = 1; std::getline(file, text); ++line) {
    // As Boost's reader: everything from '#' on is a comment.
    const std::string content = trimmed(std::string_view(text).substr(0, text.find('#')));
    if (content.empty()) continue;
    if (content.front() == '[') {
      return line_error(path, line, "'" + content + "': sections are not used by nbdsnapd: remove the line");
    }
    const auto equals = content.find('=');
    const std::string key = trimmed(std::string_view(content).substr(0, equals));
    if (equals == std::string::npos || key.empty()) {
      return line_error(path, line,
                        "'" + content + "': expected `key = value` (keys are the long options without --)");
    }
    const ConfigKeyKind kind = kind_of(key);
    if (kind == ConfigKeyKind::unknown) {
      return line_error(
          path, line,
          "unknown option '" + key + "' (keys are the long options of nbdsnapd --help, " + "without --)");
    }
    if (kind == ConfigKeyKind::single) {
      if (auto [it, added] = single_lines.emplace(key, line); !added) {
        return line_error(
            path, line,
            key + " is given twice (also on line " + std::to_string(it->second) + "): give it once");
      }
    }
    out.entries.push_back({key, trimmed(std::string_view(content).substr(equals + 1)), line});
  }
  if (file.bad()) return Status::from_errno(errno, "cannot read the configuration file " + path);
  return Status::ok();
}

}  // namespace nbdsnap
