// cbt_pages.h — reads a whole CBT map over the control socket, page after page: `cbt-map` and `cbt-raw-map`
// answer at most a bounded number of ranges or runs per reply, with `next_offset` and `more` (docs/control.md).
#pragma once

#include <string>

#include <nlohmann/json.hpp>

#include "control_client.h"

namespace nbdsnap::cli {

// Sends `command` ("cbt-map" or "cbt-raw-map") with `request` (origin, and optionally snapshot, since, offset,
// length, max_ranges/max_runs), then asks for the next page from `next_offset` until `more` is false, keeping
// the end of the requested range. Returns the first reply with every page's `ranges` (or `runs`) in order, and
// the last page's `next_offset` and `more`; for cbt-raw-map its `length` covers all pages. Throws CliError
// (server_error) when the CBT generation changes between pages, or when a reply makes no progress.
nlohmann::json read_cbt_pages(ControlClient& control, const std::string& command, nlohmann::json request);

}  // namespace nbdsnap::cli
