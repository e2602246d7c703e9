// SPDX-License-Identifier: BSD-3-Clause
// config_file.h — nbdsnapd's configuration file read line by line, keeping the line each value came from, so
// that every error about a value of the file names the file and the line ("FILE:LINE: ...", as compilers and
// nbdkit's own configuration errors do).
//
// The format is Boost.Program_options' config file format as nbdsnapd has always read it (docs/nbdsnapd.pod,
// CONFIGURATION FILE): one `key = value` per line, keys being the long options without "--", `#` starting a
// comment, blank lines ignored. Sections (`[name]`) are not used by nbdsnapd and are refused.
#pragma once

#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "status.h"

namespace nbdsnap {

struct ConfigFileEntry {
  std::string key;    // "chunk-min-shift"
  std::string value;  // "40", blanks around it removed
  unsigned line = 0;  // 1-based
};

// What the reader needs to know of a key: whether nbdsnapd has it, and whether it may be given more than
// once.
enum class ConfigKeyKind { unknown, single, repeatable };

struct ConfigFile {
  std::string path;
  std::vector<ConfigFileEntry> entries;  // in file order

  // "PATH:LINE: " for the entry setting `key` (the one with `value` when value is not null, for a repeatable
  // key), "" when the file does not set it.
  std::string where(std::string_view key, const std::string* value = nullptr) const;
};

// Reads the file at `path`. Errors (every one naming PATH, and the line where there is one): io errors
// opening or reading it; invalid_argument for a line that is not `key = value`, a section, a key that
// kind_of() calls unknown, and a single key given twice (naming both lines).
Status read_config_file(const std::string& path,
                        const std::function<ConfigKeyKind(std::string_view)>& kind_of, ConfigFile& out);

}  // namespace nbdsnap
