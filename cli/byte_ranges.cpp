// SPDX-License-Identifier: BSD-3-Clause
// byte_ranges.cpp — parsing and merging of byte ranges.
#include "byte_ranges.h"

#include <algorithm>

#include "exit_codes.h"
#include "units.h"

namespace nbdsnap::cli {

ByteRange parse_byte_range(const std::string& text) {
  size_t plus = text.find('+');
  if (plus == std::string::npos || plus == 0 || plus + 1 == text.size()) {
    usage_error("range '" + text + "' is not OFFSET+LENGTH");
  }
  ByteRange range;
  Status offset_status = parse_size(text.substr(0, plus), range.offset);
  Status length_status = parse_size(text.substr(plus + 1), range.length);
  if (!offset_status) usage_error("range '" + text + "': bad offset: " + offset_status.message());
  if (!length_status) usage_error("range '" + text + "': bad length: " + length_status.message());
  if (range.length == 0) usage_error("range '" + text + "' is empty");
  if (range.offset + range.length < range.offset) usage_error("range '" + text + "' ends beyond 2^64");
  return range;
}

std::vector<ByteRange> read_byte_range_lines(std::istream& in, const std::string& name) {
  std::vector<ByteRange> ranges;
  std::string line;
  for (uint64_t number = 1; std::getline(in, line); ++number) {
    const size_t first = line.find_first_not_of(" \t\r");
    if (first == std::string::npos || line[first] == '#') continue;
    const size_t last = line.find_last_not_of(" \t\r");
    try {
      ranges.push_back(parse_byte_range(line.substr(first, last - first + 1)));
    } catch (const CliError& error) {
      usage_error(name + ":" + std::to_string(number) + ": " + error.what());
    }
  }
  if (in.bad()) throw CliError(ExitCode::io_error, name + ": cannot read");
  return ranges;
}

std::vector<ByteRange> merge_byte_ranges(std::vector<ByteRange> ranges) {
  std::erase_if(ranges, [](const ByteRange& r) { return r.length == 0; });
  std::sort(ranges.begin(), ranges.end(),
            [](const ByteRange& a, const ByteRange& b) { return a.offset < b.offset; });
  std::vector<ByteRange> merged;
  for (const ByteRange& range : ranges) {
    if (!merged.empty() && range.offset <= merged.back().end()) {
      uint64_t end = std::max(merged.back().end(), range.end());
      merged.back().length = end - merged.back().offset;
    } else {
      merged.push_back(range);
    }
  }
  return merged;
}

std::vector<ByteRange> clip_byte_ranges(const std::vector<ByteRange>& ranges, uint64_t limit) {
  std::vector<ByteRange> clipped;
  for (const ByteRange& range : ranges) {
    if (range.offset >= limit) continue;
    clipped.push_back({range.offset, std::min(range.length, limit - range.offset)});
  }
  return clipped;
}

uint64_t total_length(const std::vector<ByteRange>& ranges) {
  uint64_t total = 0;
  for (const ByteRange& range : ranges) total += range.length;
  return total;
}

nlohmann::json byte_ranges_to_json(const std::vector<ByteRange>& ranges) {
  nlohmann::json out = nlohmann::json::array();
  for (const ByteRange& range : ranges) out.push_back({{"offset", range.offset}, {"length", range.length}});
  return out;
}

std::vector<ByteRange> byte_ranges_from_json(const nlohmann::json& ranges) {
  std::vector<ByteRange> out;
  if (!ranges.is_array()) throw CliError(ExitCode::io_error, "server sent ranges that are not a list");
  for (const auto& item : ranges) {
    if (!item.is_object() || !item.contains("offset") || !item.contains("length") ||
        !item["offset"].is_number_unsigned() || !item["length"].is_number_unsigned()) {
      throw CliError(ExitCode::io_error, "server sent a malformed range: " + item.dump());
    }
    out.push_back({item["offset"].get<uint64_t>(), item["length"].get<uint64_t>()});
  }
  return out;
}

}  // namespace nbdsnap::cli
