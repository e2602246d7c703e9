// SPDX-License-Identifier: BSD-3-Clause
// cbt_page_check.h — whether one page of a CBT map (a reply to cbt-map or cbt-raw-map) is consistent in
// itself and with the request, as docs/control.md ("Paging") promises: ranges sorted, disjoint, not empty,
// within the device and the range asked for; runs of at least one block that cover exactly the whole blocks
// between the page's offset and next_offset. A backup agent copies what the map says: a page that breaks
// these would make it miss data or read past the device, so the call fails instead (protocol_error).
// Internal.
#pragma once

#include <cstdint>
#include <string>

#include <nlohmann/json.hpp>

namespace nbdsnap::client {

// The bytes a CBT request asked for: [offset, end), end UINT64_MAX for "to the device's end".
struct AskedSpan {
  uint64_t offset = 0;
  uint64_t end = UINT64_MAX;
};

// "" when `page` (a reply already checked against the reply shapes, reply_shape.h) is consistent for a
// request of `asked`; else what is wrong, in words that name the field and values. A reply without
// next_offset comes from a server that does not page and sends the whole map whatever was asked: only its
// ranges' order and bounds are checked then.
std::string cbt_page_problem(const std::string& command, const nlohmann::json& page, const AskedSpan& asked);

// "" when a following page of one map agrees with the first on block_size and device_size (each checked
// only where both pages give it); else what differs.
std::string cbt_pages_disagree(const nlohmann::json& first, const nlohmann::json& following);

}  // namespace nbdsnap::client
