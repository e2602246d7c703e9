// SPDX-License-Identifier: BSD-3-Clause
// stats_command.cpp — `nbdsnap stats`: asks the server for `stats` and prints it in the chosen format, to
// stdout or atomically into a file (so a textfile collector never reads half a file).
#include "stats_command.h"

#include <sys/stat.h>

#include <cstdio>

#include "json_fields.h"
#include "private_files.h"
#include "prometheus_text.h"
#include "table.h"

namespace po = boost::program_options;

namespace nbdsnap::cli {

namespace {

// Nanoseconds as "1.234 s" (milliseconds kept).
std::string seconds_cell(uint64_t ns) {
  char text[40];
  std::snprintf(text, sizeof text, "%.3f s", static_cast<double>(ns) / 1e9);
  return text;
}

std::string origins_table(const nlohmann::json& stats) {
  Table table({{"ORIGIN"},
               {"WRITES", Align::right},
               {"WRITTEN", Align::right},
               {"READS", Align::right},
               {"READ", Align::right},
               {"CHUNKS COPIED", Align::right},
               {"COPIED", Align::right},
               {"COW TIME", Align::right},
               {"CBT BLOCKS", Align::right},
               {"CLIENTS", Align::right}});
  for (const auto& o : field_list(stats, "origins")) {
    table.add_row({field_text(o, "name"), std::to_string(field_uint(o, "writes")),
                   size_cell(field_uint(o, "bytes_written")), std::to_string(field_uint(o, "reads")),
                   size_cell(field_uint(o, "bytes_read")), std::to_string(field_uint(o, "chunks_copied")),
                   size_cell(field_uint(o, "bytes_copied")), seconds_cell(field_uint(o, "copy_on_write_ns")),
                   std::to_string(field_uint(o, "cbt_blocks_marked")),
                   std::to_string(field_uint(o, "clients"))});
  }
  return table.render();
}

std::string snapshots_table(const nlohmann::json& stats) {
  Table table({{"SNAPSHOT"},
               {"STATE"},
               {"USED", Align::right},
               {"FREE", Align::right},
               {"SIZE", Align::right},
               {"LIMIT", Align::right}});
  for (const auto& s : field_list(stats, "snapshots")) {
    const uint64_t limit = field_uint(s, "storage_limit");
    table.add_row({field_text(s, "name"), field_text(s, "state"), size_cell(field_uint(s, "storage_used")),
                   size_cell(field_uint(s, "storage_free")), size_cell(field_uint(s, "storage_total")),
                   limit == 0 ? "-" : size_cell(limit)});
  }
  return table.render();
}

std::string images_table(const nlohmann::json& stats) {
  Table table({{"IMAGE"}, {"READS", Align::right}, {"READ", Align::right}, {"CLIENTS", Align::right}});
  for (const auto& s : field_list(stats, "snapshots")) {
    for (const auto& image : field_list(s, "images")) {
      table.add_row({field_text(image, "export"), std::to_string(field_uint(image, "reads")),
                     size_cell(field_uint(image, "bytes_read")),
                     std::to_string(field_uint(image, "clients"))});
    }
  }
  return table.empty() ? std::string() : "\n" + table.render();
}

int run_stats(Context& context, const std::vector<std::string>& words) {
  CommandArgs args("stats [--json|--prometheus] [--output FILE]");
  args.options()(
      "prometheus",
      "the Prometheus text format (node_exporter's textfile collector reads it from *.prom files)")(
      "output", po::value<std::string>()->value_name("FILE"),
      "write to FILE atomically (a temporary file beside it, renamed over it) instead of stdout");
  if (!parse_or_show_help(context, args, words)) return 0;
  const bool prometheus = args.flag("prometheus");
  if (prometheus && context.json()) usage_error("give --json or --prometheus, not both");
  nlohmann::json reply = context.control().request("stats", nlohmann::json::object());
  std::string text;
  if (prometheus) {
    text = format_prometheus(reply);
  } else if (context.json()) {
    text = reply.dump(2) + "\n";
  } else {
    text = format_stats_tables(reply);
  }
  if (args.has("output")) {
    write_file_atomically(args.text("output"), text,
                          0644);  // world-readable: the collector runs as its own user
  } else {
    context.out() << text;
  }
  return 0;
}

}  // namespace

std::string format_stats_tables(const nlohmann::json& stats) {
  return origins_table(stats) + "\n" + snapshots_table(stats) + images_table(stats);
}

std::vector<CommandSpec> stats_command_specs() {
  return {{{"stats"},
           "stats [--json|--prometheus] [--output FILE]",
           "counters per origin, snapshot and image: writes, reads, chunks copied, storage used and free",
           run_stats}};
}

}  // namespace nbdsnap::cli
