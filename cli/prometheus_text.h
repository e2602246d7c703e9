// SPDX-License-Identifier: BSD-3-Clause
// prometheus_text.h — the reply of the control command `stats` in the Prometheus text exposition format
// (version 0.0.4), the format node_exporter's textfile collector reads from *.prom files.
//
// Rules of the format followed here: each metric family has one `# HELP` and one `# TYPE` line before its
// samples; counters end in `_total`, byte quantities say `_bytes`, durations are seconds as floating-point
// numbers; label values are quoted with backslash, double quote and line feed escaped as \\, \" and \n (and
// HELP text with backslash and line feed escaped).
#pragma once

#include <string>

#include <nlohmann/json.hpp>

namespace nbdsnap::cli {

// A label value escaped for the format (without the quotes around it).
std::string escape_label_value(const std::string& value);

// The stats reply ({origins, snapshots}, docs/control.md) as exposition text, ending in a line feed.
// Families: nbdsnap_origin_* {origin}, nbdsnap_snapshot_* {snapshot}, nbdsnap_image_* {origin, snapshot}.
std::string format_prometheus(const nlohmann::json& stats);

}  // namespace nbdsnap::cli
