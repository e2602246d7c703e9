// SPDX-License-Identifier: BSD-3-Clause
// byte_ranges.h — byte ranges as the CLI handles them: "OFFSET+LENGTH" arguments, sorting/merging, JSON.
#pragma once

#include <cstdint>
#include <istream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace nbdsnap::cli {

struct ByteRange {
  uint64_t offset = 0;
  uint64_t length = 0;
  uint64_t end() const { return offset + length; }
  bool operator==(const ByteRange&) const = default;
};

// "OFFSET+LENGTH", each part a size as parse_size() reads it ("1M+64K", "0+4096"). Throws CliError (usage)
// for a malformed text, a zero length, or a range whose end overflows 64 bits.
ByteRange parse_byte_range(const std::string& text);

// One "OFFSET+LENGTH" per line of `in` (read from `name`, for messages); blank lines and lines starting with
// '#' are skipped, spaces around a range ignored. Throws CliError (usage) naming NAME:LINE for a malformed
// line, (io_error) when reading fails.
std::vector<ByteRange> read_byte_range_lines(std::istream& in, const std::string& name);

// Sorted by offset, with overlapping and touching ranges joined; empty ranges dropped.
std::vector<ByteRange> merge_byte_ranges(std::vector<ByteRange> ranges);

// The parts of the ranges below `limit` (a range across it is cut there; ranges past it dropped).
std::vector<ByteRange> clip_byte_ranges(const std::vector<ByteRange>& ranges, uint64_t limit);

// Total number of bytes in the ranges (as given, without merging).
uint64_t total_length(const std::vector<ByteRange>& ranges);

// [{offset, length}] as the control protocol writes them; from_json throws CliError (io_error) when
// malformed.
nlohmann::json byte_ranges_to_json(const std::vector<ByteRange>& ranges);
std::vector<ByteRange> byte_ranges_from_json(const nlohmann::json& ranges);

}  // namespace nbdsnap::cli
