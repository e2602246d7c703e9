// SPDX-License-Identifier: BSD-3-Clause
// cbt_paging.cpp — a whole CBT map out of its pages: cbt-map and cbt-raw-map answer a bounded number of
// ranges or runs per reply, with `more` and `next_offset` (docs/control.md, "Paging"). The one place of the
// project that follows `more`: the typed calls of client_commands.cpp and the nbdsnap CLI both use it.
#include <cerrno>
#include <limits>

#include "client_impl.h"

namespace nbdsnap::client {

namespace {

uint64_t count_of(const nlohmann::json& object, const char* key) {
  auto it = object.find(key);
  return it != object.end() && it->is_number_unsigned() ? it->get<uint64_t>() : 0;
}

std::string text_of(const nlohmann::json& object, const char* key) {
  auto it = object.find(key);
  return it != object.end() && it->is_string() ? it->get<std::string>() : std::string();
}

bool flag_of(const nlohmann::json& object, const char* key) {
  auto it = object.find(key);
  return it != object.end() && it->is_boolean() && it->get<bool>();
}

}  // namespace

Result<nlohmann::json> Client::Impl::all_pages(const std::string& command, nlohmann::json arguments) {
  const bool raw = command == "cbt-raw-map";
  if (!raw && command != "cbt-map") {
    return client_failure(kInvalidRequest, EINVAL, command + " has no pages (only cbt-map and cbt-raw-map)");
  }
  const char* items = raw ? "runs" : "ranges";
  const std::string origin = text_of(arguments, "origin");
  const uint64_t start = count_of(arguments, "offset");
  // The end of the range asked for; the device's end without a length.
  const bool has_length = arguments.contains("length");
  const uint64_t length = count_of(arguments, "length");
  const uint64_t end = length > std::numeric_limits<uint64_t>::max() - start
                           ? std::numeric_limits<uint64_t>::max()
                           : start + length;
  Result<nlohmann::json> first = exchange(command, arguments, std::chrono::milliseconds(0));
  if (!first) return first;
  nlohmann::json joined = std::move(*first);
  if (!joined.contains(items) || !joined[items].is_array()) joined[items] = nlohmann::json::array();
  nlohmann::json page = joined;
  uint64_t offset = start;
  while (flag_of(page, "more")) {
    // Pages start where the last one stopped; a server that did not move on would loop for ever.
    const uint64_t next = count_of(page, "next_offset");
    if (next <= offset || (has_length && next >= end)) {
      return client_failure(kProtocolError, EPROTO,
                            command + " of " + origin + ": a page ended at offset " + std::to_string(next) +
                                " yet said more follows");
    }
    offset = next;
    arguments["offset"] = next;
    if (has_length) arguments["length"] = end - next;
    Result<nlohmann::json> following = exchange(command, arguments, std::chrono::milliseconds(0));
    if (!following) return following;
    page = std::move(*following);
    if (text_of(page, "generation") != text_of(joined, "generation")) {
      return client_failure(
          kGenerationChanged, ESTALE,
          "the CBT generation of " + origin + " changed from " + text_of(joined, "generation") + " to " +
              text_of(page, "generation") +
              " while its map was read: CBT history was lost, read it again (a backup: do a full one)");
    }
    if (page.contains(items) && page[items].is_array()) {
      for (auto& item : page[items]) joined[items].push_back(std::move(item));
    }
  }
  const uint64_t map_end = count_of(page, "next_offset");
  if (raw && map_end < count_of(joined, "offset")) {  // the table makes next_offset required for raw maps
    return client_failure(kProtocolError, EPROTO,
                          command + " of " + origin + ": the map starting at offset " +
                              std::to_string(count_of(joined, "offset")) + " ended before it, at offset " +
                              std::to_string(map_end));
  }
  joined["next_offset"] = map_end;
  joined["more"] = false;
  if (raw) joined["length"] = map_end - count_of(joined, "offset");
  return joined;
}

Result<std::string> Client::call_all_pages(const std::string& request_json) {
  if (!impl_) return client_failure(kNotConnected, ENOTCONN, "a moved-from client");
  nlohmann::json request = nlohmann::json::parse(request_json, nullptr, /*allow_exceptions=*/false);
  if (!request.is_object() || !request.contains("command") || !request["command"].is_string()) {
    return client_failure(kInvalidRequest, EINVAL, "a request is a JSON object with a \"command\" string");
  }
  const std::string command = request["command"].get<std::string>();
  request.erase("command");
  Result<nlohmann::json> joined = impl_->all_pages(command, std::move(request));
  if (!joined) return joined.error();
  joined->emplace("ok", true);
  return joined->dump();
}

}  // namespace nbdsnap::client
