// SPDX-License-Identifier: BSD-3-Clause
// server_path.cpp — see server_path.h.
#include "server_path.h"

#include <filesystem>

namespace nbdsnap::cli {

std::string server_path(const std::string& path) {
  if (path.empty()) return path;
  std::error_code ec;
  const std::filesystem::path absolute = std::filesystem::absolute(path, ec);
  return ec ? path : absolute.lexically_normal().string();
}

}  // namespace nbdsnap::cli
