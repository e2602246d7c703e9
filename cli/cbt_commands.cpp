// SPDX-License-Identifier: BSD-3-Clause
// cbt_commands.cpp — the CBT commands and their tables.
#include "cbt_commands.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <iostream>

#include "byte_ranges.h"
#include "exit_codes.h"
#include "json_fields.h"
#include "table.h"

namespace nbdsnap::cli {

namespace {

int run_cbt_info(Context& context, const std::vector<std::string>& words) {
  CommandArgs args("cbt info ORIGIN [--snapshot NAME]");
  args.options()("snapshot", boost::program_options::value<std::string>()->value_name("NAME"),
                 "the CBT frozen when snapshot NAME was taken (default: the live one)");
  args.positional("ORIGIN", 1);
  if (!parse_or_show_help(context, args, words)) return 0;
  nlohmann::json request = {{"origin", args.text("ORIGIN")}};
  if (args.has("snapshot")) request["snapshot"] = args.text("snapshot");
  nlohmann::json reply = context.control().request("cbt-info", request);
  if (context.json()) {
    context.print_json(reply);
  } else {
    context.out() << format_cbt_info(reply.value("cbt", nlohmann::json::object()));
  }
  return 0;
}

constexpr const char* kCbtMapSynopsis =
    "cbt map ORIGIN [--since CHECKPOINT | --raw] [--snapshot NAME] [--offset SIZE] [--length SIZE] "
    "[--page-size N]";

int run_cbt_map(Context& context, const std::vector<std::string>& words) {
  namespace po = boost::program_options;
  CommandArgs args(kCbtMapSynopsis);
  args.options()("since", po::value<std::string>()->value_name("CHECKPOINT"),
                 "only blocks changed after this checkpoint (default: all changes in this generation)")(
      "raw", "the change number of every block (runs of equal numbers) instead of changed ranges")(
      "snapshot", po::value<std::string>()->value_name("NAME"),
      "the map frozen when snapshot NAME was taken (default: the live map)")(
      "offset", po::value<std::string>()->value_name("SIZE"), "start at this byte offset (default 0)")(
      "length", po::value<std::string>()->value_name("SIZE"), "cover this many bytes (default: to the end)")(
      "page-size", po::value<std::string>()->value_name("N"),
      "ranges (or runs with --raw) per control request, 1..16384 (1..32768 with --raw; default: the "
      "maximum)");
  args.positional("ORIGIN", 1);
  if (!parse_or_show_help(context, args, words)) return 0;
  const bool raw = args.flag("raw");
  if (raw && args.has("since")) usage_error("cbt map: --raw shows every block's change number; drop --since");
  nlohmann::json request = {{"origin", args.text("ORIGIN")}};
  if (args.has("since")) request["since"] = args.text("since");
  if (args.has("snapshot")) request["snapshot"] = args.text("snapshot");
  if (args.has("offset")) request["offset"] = args.size("offset");
  if (args.has("length")) request["length"] = args.size("length");
  if (args.has("page-size")) {
    // The server's page limits (docs/control.md, cbt-map and cbt-raw-map).
    request[raw ? "max_runs" : "max_ranges"] = args.number("page-size", 1, raw ? 32768 : 16384);
  }
  nlohmann::json reply = context.control().request_all_pages(raw ? "cbt-raw-map" : "cbt-map", request);
  if (context.json()) {
    context.print_json(reply);
  } else {
    context.out() << (raw ? format_cbt_raw_map(reply) : format_cbt_map(reply));
  }
  return 0;
}

int run_cbt_mark_dirty(Context& context, const std::vector<std::string>& words) {
  CommandArgs args("cbt mark-dirty ORIGIN [OFFSET+LENGTH...] [--ranges-from FILE]");
  args.options()(
      "ranges-from", boost::program_options::value<std::string>()->value_name("FILE"),
      "also mark the ranges listed in FILE, one OFFSET+LENGTH per line ('-': standard input; blank "
      "lines and lines starting with # are skipped): for lists too long for a command line");
  args.positional("ORIGIN", 1).positional("OFFSET+LENGTH", -1, /*required=*/false);
  if (!parse_or_show_help(context, args, words)) return 0;
  std::vector<ByteRange> ranges;
  for (const std::string& text : args.list("OFFSET+LENGTH")) ranges.push_back(parse_byte_range(text));
  if (args.has("ranges-from")) {
    const std::string file = args.text("ranges-from");
    std::vector<ByteRange> listed;
    if (file == "-") {
      listed = read_byte_range_lines(std::cin, "standard input");
    } else {
      std::ifstream in(file);
      if (!in) usage_error("--ranges-from " + file + ": " + std::strerror(errno));
      listed = read_byte_range_lines(in, file);
    }
    ranges.insert(ranges.end(), listed.begin(), listed.end());
  }
  const std::vector<nlohmann::json> requests =
      cbt_mark_dirty_requests(args.text("ORIGIN"), std::move(ranges));
  // Marking is idempotent and only ever adds to what a backup copies, so requests sent before a failure
  // leave the map safe; the message says how far it got, and running the command again is harmless.
  size_t marked = 0;
  uint64_t bytes = 0;
  nlohmann::json reply;
  for (const nlohmann::json& request : requests) {
    try {
      reply = context.control().request("cbt-mark-dirty", request);
    } catch (CliError& error) {
      if (marked == 0) throw;
      const std::string message = std::string(error.what()) + " (" + std::to_string(marked) +
                                  " range(s) were marked before it; marking them again is harmless)";
      ErrorDetail detail = error.detail();
      detail.message = message;
      throw CliError(error.code(), message, detail);
    }
    marked += request["ranges"].size();
    bytes += total_length(byte_ranges_from_json(request["ranges"]));
  }
  if (context.json()) {
    context.print_json(reply);
  } else {
    context.out() << "marked " << marked << " range(s), " << size_cell(bytes) << ", dirty on "
                  << args.text("ORIGIN") << "\n";
  }
  return 0;
}

int run_cbt_reset(Context& context, const std::vector<std::string>& words) {
  CommandArgs args("cbt reset ORIGIN");
  args.positional("ORIGIN", 1);
  if (!parse_or_show_help(context, args, words)) return 0;
  nlohmann::json reply = context.control().request("cbt-reset", {{"origin", args.text("ORIGIN")}});
  if (context.json()) {
    context.print_json(reply);
  } else {
    context.out() << "CBT of " << args.text("ORIGIN") << " reset: new generation "
                  << field_text(reply, "generation") << " (the next backup must be full)\n";
  }
  return 0;
}

int run_checkpoints(Context& context, const std::vector<std::string>& words) {
  CommandArgs args("checkpoints ORIGIN [--snapshot NAME]");
  args.options()("snapshot", boost::program_options::value<std::string>()->value_name("NAME"),
                 "the checkpoints snapshot NAME froze with its CBT (default: the live ones)");
  args.positional("ORIGIN", 1);
  if (!parse_or_show_help(context, args, words)) return 0;
  nlohmann::json request = {{"origin", args.text("ORIGIN")}};
  if (args.has("snapshot")) request["snapshot"] = args.text("snapshot");
  nlohmann::json reply = context.control().request("checkpoints", request);
  if (context.json()) {
    context.print_json(reply);
  } else {
    context.out() << format_checkpoints(reply);
  }
  return 0;
}

int run_checkpoint_delete(Context& context, const std::vector<std::string>& words) {
  CommandArgs args("checkpoint delete ORIGIN NAME");
  args.positional("ORIGIN", 1).positional("NAME", 1);
  if (!parse_or_show_help(context, args, words)) return 0;
  nlohmann::json reply = context.control().request(
      "checkpoint-delete", {{"origin", args.text("ORIGIN")}, {"name", args.text("NAME")}});
  if (context.json()) {
    context.print_json(reply);
  } else {
    context.out() << "checkpoint " << args.text("NAME") << " of " << args.text("ORIGIN")
                  << " deleted (a backup since it must be full)\n";
  }
  return 0;
}

}  // namespace

std::vector<CommandSpec> cbt_command_specs() {
  return {
      {{"cbt", "info"},
       "cbt info ORIGIN [--snapshot NAME]",
       "CBT generation, change number, block size, checkpoints",
       run_cbt_info},
      {{"cbt", "map"},
       kCbtMapSynopsis,
       "changed ranges of an origin, or its raw change numbers",
       run_cbt_map},
      {{"cbt", "mark-dirty"},
       "cbt mark-dirty ORIGIN OFFSET+LENGTH...",
       "mark ranges changed (writes the tracker did not see)",
       run_cbt_mark_dirty},
      {{"cbt", "reset"},
       "cbt reset ORIGIN",
       "start a new CBT generation (forces full backups)",
       run_cbt_reset},
      {{"checkpoints"},
       "checkpoints ORIGIN [--snapshot NAME]",
       "list the CBT checkpoints of an origin",
       run_checkpoints},
      {{"checkpoint", "delete"},
       "checkpoint delete ORIGIN NAME",
       "delete a CBT checkpoint of an origin",
       run_checkpoint_delete},
  };
}

std::vector<nlohmann::json> cbt_mark_dirty_requests(const std::string& origin, std::vector<ByteRange> ranges,
                                                    size_t per_request) {
  if (ranges.empty()) usage_error("cbt mark-dirty needs at least one OFFSET+LENGTH (or --ranges-from FILE)");
  const std::vector<ByteRange> merged = merge_byte_ranges(std::move(ranges));
  std::vector<nlohmann::json> requests;
  const size_t step = std::max<size_t>(per_request, 1);
  for (size_t first = 0; first < merged.size(); first += step) {
    const size_t last = std::min(merged.size(), first + step);
    const std::vector<ByteRange> part(merged.begin() + static_cast<std::ptrdiff_t>(first),
                                      merged.begin() + static_cast<std::ptrdiff_t>(last));
    requests.push_back({{"origin", origin}, {"ranges", byte_ranges_to_json(part)}});
  }
  return requests;
}

std::string format_cbt_info(const nlohmann::json& cbt) {
  KeyValueList list;
  list.add("origin", field_text(cbt, "origin"));
  if (!field_text(cbt, "snapshot").empty()) list.add("snapshot", field_text(cbt, "snapshot"));
  list.add("generation", field_text(cbt, "generation"));
  list.add("change number", std::to_string(field_uint(cbt, "change_number")));
  list.add("block size", size_cell(field_uint(cbt, "block_size")));
  list.add("blocks", std::to_string(field_uint(cbt, "block_count")));
  list.add("device size", size_cell(field_uint(cbt, "device_size")));
  std::string checkpoints;
  if (cbt.contains("checkpoints") && cbt["checkpoints"].is_object()) {
    for (const auto& [name, number] : cbt["checkpoints"].items()) {
      if (!checkpoints.empty()) checkpoints += ", ";
      checkpoints += name + "=" + number.dump();
    }
  }
  list.add("checkpoints", or_dash(checkpoints));
  return list.render();
}

std::string format_cbt_map(const nlohmann::json& reply) {
  Table table(
      {{"OFFSET", Align::right}, {"LENGTH", Align::right}, {"END", Align::right}, {"SIZE", Align::right}});
  std::vector<ByteRange> ranges = byte_ranges_from_json(reply.value("ranges", nlohmann::json::array()));
  for (const ByteRange& range : ranges) {
    table.add_row({std::to_string(range.offset), std::to_string(range.length), std::to_string(range.end()),
                   size_cell(range.length)});
  }
  return table.render() + std::to_string(ranges.size()) + " range(s), " + size_cell(total_length(ranges)) +
         " changed (generation " + field_text(reply, "generation") + ", change number " +
         std::to_string(field_uint(reply, "change_number")) + ", block size " +
         size_cell(field_uint(reply, "block_size")) + ")\n";
}

std::string format_cbt_raw_map(const nlohmann::json& reply) {
  Table table({{"OFFSET", Align::right},
               {"LENGTH", Align::right},
               {"BLOCKS", Align::right},
               {"NUMBER", Align::right}});
  const uint64_t block_size = field_uint(reply, "block_size"), device_size = field_uint(reply, "device_size");
  uint64_t offset = field_uint(reply, "offset"), blocks = 0, runs = 0;
  for (const auto& run : reply.value("runs", nlohmann::json::array())) {
    // Each run is a pair of counts (libnbdsnap checked the reply's shape): none is skipped, since a run has
    // no offset of its own.
    if (!run.is_array() || run.size() != 2) continue;  // not reached
    const uint64_t count = run[1].get<uint64_t>();
    // Saturating: a run reaching past the device (its last block may be partial) ends at device_size, and
    // count * block_size never wraps (counts near 2^48 of 64 KiB blocks pass 2^64).
    const uint64_t room = offset < device_size ? device_size - offset : 0;
    const uint64_t span = block_size != 0 && count <= room / block_size ? count * block_size : room;
    const uint64_t end = offset + span;
    table.add_row({std::to_string(offset), std::to_string(end - offset), std::to_string(count),
                   std::to_string(run[0].get<uint64_t>())});
    offset = end;
    blocks += count;
    ++runs;
  }
  std::string checkpoints;
  for (const auto& checkpoint : reply.value("checkpoints", nlohmann::json::array())) {
    checkpoints += (checkpoints.empty() ? "" : ", ") + field_text(checkpoint, "name") + "=" +
                   std::to_string(field_uint(checkpoint, "number"));
  }
  const std::string map =
      field_text(reply, "snapshot").empty() ? "live map" : "map of snapshot " + field_text(reply, "snapshot");
  return table.render() + std::to_string(blocks) + " block(s) of " + size_cell(block_size) + " in " +
         std::to_string(runs) + " run(s), " + map + " (generation " + field_text(reply, "generation") +
         ", change number " + std::to_string(field_uint(reply, "change_number")) + ")\n" +
         "0: unchanged in this generation; N: changed after every checkpoint numbered below N (" +
         or_dash(checkpoints) + ")\n";
}

std::string format_checkpoints(const nlohmann::json& reply) {
  Table table({{"NAME"}, {"NUMBER", Align::right}, {"TAKEN"}, {"GENERATION"}});
  if (reply.contains("checkpoints") && reply["checkpoints"].is_array()) {
    for (const auto& checkpoint : reply["checkpoints"]) {
      table.add_row({field_text(checkpoint, "name"), std::to_string(field_uint(checkpoint, "number")),
                     time_cell(field_int(checkpoint, "taken_unix_ms")), field_text(reply, "generation")});
    }
  }
  return table.render();
}

}  // namespace nbdsnap::cli
