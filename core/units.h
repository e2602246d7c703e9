// units.h — sizes as users write them: "1048576", "64K", "256M", "2G", "1T" (powers of 1024), "PATH:SIZE".
#pragma once

#include <cstdint>
#include <string>

#include "status.h"

namespace nbdsnap {

Status parse_size(const std::string& text, uint64_t& out);
std::string format_size(uint64_t bytes);  // "1.5 GiB"
// "PATH" or "PATH:SIZE" (difference storage specs). size 0 when absent.
Status parse_storage_spec(const std::string& text, std::string& path, uint64_t& size);

}  // namespace nbdsnap
