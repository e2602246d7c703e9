// cbt_pages.cpp — joining the pages of cbt-map and cbt-raw-map replies.
#include "cbt_pages.h"

#include <cstdint>
#include <limits>

#include "exit_codes.h"
#include "json_fields.h"

namespace nbdsnap::cli {

nlohmann::json read_cbt_pages(ControlClient& control, const std::string& command, nlohmann::json request) {
  const bool raw = command == "cbt-raw-map";
  const char* items = raw ? "runs" : "ranges";
  const std::string origin = field_text(request, "origin");
  const uint64_t start = field_uint(request, "offset");
  // The end of the requested range; none (to the device end) without a length.
  const bool has_length = request.contains("length");
  const uint64_t length = field_uint(request, "length");
  const uint64_t end = length > std::numeric_limits<uint64_t>::max() - start ? std::numeric_limits<uint64_t>::max()
                                                                              : start + length;
  nlohmann::json joined = control.request(command, request);
  nlohmann::json page = joined;
  uint64_t offset = start;
  while (field_bool(page, "more")) {
    const uint64_t next = field_uint(page, "next_offset");
    if (next <= offset || (has_length && next >= end)) {
      throw CliError(ExitCode::server_error, command + " of " + origin + ": a page ended at offset " +
                                                 std::to_string(next) + " yet said more follows");
    }
    offset = next;
    request["offset"] = next;
    if (has_length) request["length"] = end - next;
    page = control.request(command, request);
    if (field_text(page, "generation") != field_text(joined, "generation")) {
      throw CliError(ExitCode::server_error, "the CBT generation of " + origin +
                                                 " changed while its map was read; read it again");
    }
    for (const auto& item : page.value(items, nlohmann::json::array())) joined[items].push_back(item);
  }
  joined["next_offset"] = page.value("next_offset", nlohmann::json(0));
  joined["more"] = false;
  if (raw) joined["length"] = field_uint(page, "next_offset") - field_uint(joined, "offset");
  return joined;
}

}  // namespace nbdsnap::cli
