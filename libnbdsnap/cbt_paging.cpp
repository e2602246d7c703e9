// SPDX-License-Identifier: BSD-3-Clause
// cbt_paging.cpp — a whole CBT map out of its pages: cbt-map and cbt-raw-map answer a bounded number of
// ranges or runs per reply, with `more` and `next_offset` (docs/control.md, "Paging"). The one place of the
// project that follows `more`: the typed calls of client_commands.cpp and the nbdsnap CLI both use it; and
// the one place that checks every page of a map, a single page asked for too (cbt_page_check.h).
#include <cerrno>
#include <limits>

#include "cbt_page_check.h"
#include "client_impl.h"
#include "reply_decoding.h"

namespace nbdsnap::client {

namespace {

uint64_t count_member(const nlohmann::json& object, const char* key) {
  auto it = object.find(key);
  return it == object.end() ? 0 : count_of(*it);  // reply_decoding.h's
}

std::string text_of(const nlohmann::json& object, const char* key) {
  auto it = object.find(key);
  return it != object.end() && it->is_string() ? it->get<std::string>() : std::string();
}

bool flag_of(const nlohmann::json& object, const char* key) {
  auto it = object.find(key);
  return it != object.end() && it->is_boolean() && it->get<bool>();
}

// The bytes `arguments` (of cbt-map or cbt-raw-map) ask for.
AskedSpan asked_by(const nlohmann::json& arguments) {
  AskedSpan asked;
  asked.offset = count_member(arguments, "offset");
  if (arguments.contains("length")) {
    const uint64_t length = count_member(arguments, "length");
    asked.end = length > std::numeric_limits<uint64_t>::max() - asked.offset
                    ? std::numeric_limits<uint64_t>::max()
                    : asked.offset + length;
  }
  return asked;
}

Error inconsistent(const std::string& command, const std::string& origin, const std::string& problem) {
  return client_failure(kProtocolError, EPROTO,
                        command + " of " + origin + ": a page of the map is inconsistent: " + problem +
                            "; is the server the same version as nbdsnap " + NBDSNAP_VERSION + "?");
}

}  // namespace

Result<nlohmann::json> Client::Impl::one_page(const std::string& command, const nlohmann::json& arguments) {
  Result<nlohmann::json> page = exchange(command, arguments, std::chrono::milliseconds(0));
  if (!page) return page;
  if (std::string problem = cbt_page_problem(command, *page, asked_by(arguments)); !problem.empty())
    return inconsistent(command, text_of(arguments, "origin"), problem);
  return page;
}

Result<nlohmann::json> Client::Impl::all_pages(const std::string& command, nlohmann::json arguments) {
  const bool raw = command == "cbt-raw-map";
  if (!raw && command != "cbt-map") {
    return client_failure(kInvalidRequest, EINVAL, command + " has no pages (only cbt-map and cbt-raw-map)");
  }
  const char* items = raw ? "runs" : "ranges";
  const std::string origin = text_of(arguments, "origin");
  const bool has_length = arguments.contains("length");
  const uint64_t end = asked_by(arguments).end;
  Result<nlohmann::json> first = one_page(command, arguments);
  if (!first) return first;
  nlohmann::json joined = std::move(*first);
  if (!joined.contains(items) || !joined[items].is_array()) joined[items] = nlohmann::json::array();
  nlohmann::json page = joined;
  uint64_t offset = count_member(arguments, "offset");
  while (flag_of(page, "more")) {
    // Pages start where the last one stopped; a server that did not move on would loop for ever.
    const uint64_t next = count_member(page, "next_offset");
    if (next <= offset || (has_length && next >= end)) {
      return client_failure(kProtocolError, EPROTO,
                            command + " of " + origin + ": a page ended at offset " + std::to_string(next) +
                                " yet said more follows");
    }
    offset = next;
    arguments["offset"] = next;
    if (has_length) arguments["length"] = end - next;
    Result<nlohmann::json> following = one_page(command, arguments);
    if (!following) return following;
    page = std::move(*following);
    if (text_of(page, "generation") != text_of(joined, "generation")) {
      return client_failure(
          kGenerationChanged, ESTALE,
          "the CBT generation of " + origin + " changed from " + text_of(joined, "generation") + " to " +
              text_of(page, "generation") +
              " while its map was read: CBT history was lost, read it again (a backup: do a full one)");
    }
    if (std::string problem = cbt_pages_disagree(joined, page); !problem.empty())
      return inconsistent(command, origin, problem);
    if (page.contains(items) && page[items].is_array()) {
      for (auto& item : page[items]) joined[items].push_back(std::move(item));
    }
  }
  const uint64_t map_end = count_member(page, "next_offset");
  if (raw && map_end < count_member(joined, "offset")) {  // the table makes next_offset required for raw maps
    return client_failure(kProtocolError, EPROTO,
                          command + " of " + origin + ": the map starting at offset " +
                              std::to_string(count_member(joined, "offset")) +
                              " ended before it, at offset " + std::to_string(map_end));
  }
  joined["next_offset"] = map_end;
  joined["more"] = false;
  if (raw) joined["length"] = map_end - count_member(joined, "offset");
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
