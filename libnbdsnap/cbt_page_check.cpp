// SPDX-License-Identifier: BSD-3-Clause
// cbt_page_check.cpp — the rules of a CBT map page (see cbt_page_check.h), checked field by field.
#include "cbt_page_check.h"

#include <limits>

#include "reply_decoding.h"

namespace nbdsnap::client {

namespace {

constexpr uint64_t kNoEnd = std::numeric_limits<uint64_t>::max();

std::string span_text(uint64_t offset, uint64_t end) {
  return "[" + std::to_string(offset) + ", " + std::to_string(end) + ")";
}

// A member's count (reply_decoding.h's count_of), and whether it is there.
bool member_count(const nlohmann::json& object, const char* key, uint64_t& out) {
  auto it = object.find(key);
  if (it == object.end()) return false;
  out = count_of(*it);
  return true;
}

std::string ranges_problem(const nlohmann::json& page, const AskedSpan& asked, bool pages) {
  uint64_t device_size = 0;
  const bool sized = member_count(page, "device_size", device_size);
  uint64_t next_offset = 0;
  const bool bounded = pages && member_count(page, "next_offset", next_offset);
  uint64_t previous_end = 0;
  size_t index = 0;
  for (const nlohmann::json& range : page.at("ranges")) {
    const uint64_t offset = count_of(range.at("offset"));
    const uint64_t length = count_of(range.at("length"));
    const std::string which = "range " + std::to_string(index++);
    if (length == 0) return which + " at offset " + std::to_string(offset) + " is empty";
    if (length > kNoEnd - offset) {
      return which + " at offset " + std::to_string(offset) + " of length " + std::to_string(length) +
             " ends past 2^64";
    }
    const uint64_t end = offset + length;
    const std::string text = which + " " + span_text(offset, end);
    if (index > 1 && offset < previous_end) {
      return text + " starts before the end of the range before it (" + std::to_string(previous_end) +
             "): ranges are sorted and disjoint";
    }
    if (sized && end > device_size) {
      return text + " ends past the device's " + std::to_string(device_size) + " bytes";
    }
    if (pages && (offset < asked.offset || end > asked.end)) {
      return text + " is outside the bytes asked for " + span_text(asked.offset, asked.end);
    }
    if (bounded && end > next_offset) {
      return text + " ends past the page's next_offset " + std::to_string(next_offset);
    }
    previous_end = end;
  }
  return "";
}

std::string runs_problem(const nlohmann::json& page, const AskedSpan& asked) {
  uint64_t blocks = 0;
  size_t index = 0;
  for (const nlohmann::json& run : page.at("runs")) {
    const uint64_t count = count_of(run.at(1));
    if (count == 0) return "run " + std::to_string(index) + " covers no block";
    if (count > kNoEnd - blocks) return "its runs cover more than 2^64 blocks";
    blocks += count;
    ++index;
  }
  uint64_t block_size = 0;
  uint64_t offset = 0;
  if (!member_count(page, "block_size", block_size) || block_size == 0 ||
      !member_count(page, "offset", offset))
    return "";
  const uint64_t next_offset = count_of(page.at("next_offset"));
  if (offset % block_size != 0) {
    return "its offset " + std::to_string(offset) + " is not a multiple of its block_size " +
           std::to_string(block_size);
  }
  if (next_offset < offset) {
    return "it ends at next_offset " + std::to_string(next_offset) + ", before its offset " +
           std::to_string(offset);
  }
  uint64_t length = 0;
  if (member_count(page, "length", length) && length != next_offset - offset) {
    return "its length " + std::to_string(length) + " is not next_offset - offset (" +
           std::to_string(next_offset - offset) + ")";
  }
  if (blocks != 0 && (offset > asked.offset || asked.offset - offset >= block_size)) {
    return "its offset " + std::to_string(offset) +
           " is not the start of the block holding the offset asked for (" + std::to_string(asked.offset) +
           ")";
  }
  const uint64_t span = next_offset - offset;
  const uint64_t covered = span / block_size + (span % block_size != 0);
  if (covered != blocks) {
    return "its runs cover " + std::to_string(blocks) + " blocks of " + std::to_string(block_size) +
           " bytes, but " + span_text(offset, next_offset) + " spans " + std::to_string(covered);
  }
  return "";
}

}  // namespace

std::string cbt_page_problem(const std::string& command, const nlohmann::json& page, const AskedSpan& asked) {
  if (command == "cbt-raw-map") return runs_problem(page, asked);
  return ranges_problem(page, asked, page.contains("next_offset"));
}

std::string cbt_pages_disagree(const nlohmann::json& first, const nlohmann::json& following) {
  for (const char* key : {"block_size", "device_size"}) {
    uint64_t was = 0;
    uint64_t now = 0;
    if (member_count(first, key, was) && member_count(following, key, now) && was != now) {
      return std::string("its ") + key + " changed from " + std::to_string(was) + " to " +
             std::to_string(now) + " between pages of one generation";
    }
  }
  return "";
}

}  // namespace nbdsnap::client
