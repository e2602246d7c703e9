// cbt_commands.cpp — the CBT commands and their tables.
#include "cbt_commands.h"

#include "byte_ranges.h"
#include "exit_codes.h"
#include "json_fields.h"
#include "table.h"

namespace nbdsnap::cli {

namespace {

int run_cbt_info(Context& context, const std::vector<std::string>& words) {
  CommandArgs args("cbt info ORIGIN");
  args.positional("ORIGIN", 1);
  if (!parse_or_show_help(context, args, words)) return 0;
  nlohmann::json reply = context.control().request("cbt-info", {{"origin", args.text("ORIGIN")}});
  if (context.json()) {
    context.print_json(reply);
  } else {
    context.out() << format_cbt_info(reply.value("cbt", nlohmann::json::object()));
  }
  return 0;
}

int run_cbt_map(Context& context, const std::vector<std::string>& words) {
  CommandArgs args("cbt map ORIGIN [--since CHECKPOINT]");
  args.options()("since", boost::program_options::value<std::string>()->value_name("CHECKPOINT"),
                 "only blocks changed after this checkpoint (default: all changes in this generation)");
  args.positional("ORIGIN", 1);
  if (!parse_or_show_help(context, args, words)) return 0;
  nlohmann::json request = {{"origin", args.text("ORIGIN")}};
  if (args.has("since")) request["since"] = args.text("since");
  nlohmann::json reply = context.control().request("cbt-map", request);
  if (context.json()) {
    context.print_json(reply);
  } else {
    context.out() << format_cbt_map(reply);
  }
  return 0;
}

int run_cbt_mark_dirty(Context& context, const std::vector<std::string>& words) {
  CommandArgs args("cbt mark-dirty ORIGIN OFFSET+LENGTH...");
  args.positional("ORIGIN", 1).positional("OFFSET+LENGTH", -1);
  if (!parse_or_show_help(context, args, words)) return 0;
  nlohmann::json request = cbt_mark_dirty_request(args.text("ORIGIN"), args.list("OFFSET+LENGTH"));
  nlohmann::json reply = context.control().request("cbt-mark-dirty", request);
  if (context.json()) {
    context.print_json(reply);
  } else {
    uint64_t bytes = total_length(byte_ranges_from_json(request["ranges"]));
    context.out() << "marked " << request["ranges"].size() << " range(s), " << size_cell(bytes) << ", dirty on "
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
    context.out() << "CBT of " << args.text("ORIGIN") << " reset: new generation " << field_text(reply, "generation")
                  << " (the next backup must be full)\n";
  }
  return 0;
}

int run_checkpoints(Context& context, const std::vector<std::string>& words) {
  CommandArgs args("checkpoints ORIGIN");
  args.positional("ORIGIN", 1);
  if (!parse_or_show_help(context, args, words)) return 0;
  nlohmann::json reply = context.control().request("checkpoints", {{"origin", args.text("ORIGIN")}});
  if (context.json()) {
    context.print_json(reply);
  } else {
    context.out() << format_checkpoints(reply);
  }
  return 0;
}

}  // namespace

std::vector<CommandSpec> cbt_command_specs() {
  return {
      {{"cbt", "info"}, "cbt info ORIGIN", "CBT generation, change number, block size, checkpoints", run_cbt_info},
      {{"cbt", "map"}, "cbt map ORIGIN [--since CHECKPOINT]", "changed ranges of an origin", run_cbt_map},
      {{"cbt", "mark-dirty"}, "cbt mark-dirty ORIGIN OFFSET+LENGTH...",
       "mark ranges changed (writes the tracker did not see)", run_cbt_mark_dirty},
      {{"cbt", "reset"}, "cbt reset ORIGIN", "start a new CBT generation (forces full backups)", run_cbt_reset},
      {{"checkpoints"}, "checkpoints ORIGIN", "list the CBT checkpoints of an origin", run_checkpoints},
  };
}

nlohmann::json cbt_mark_dirty_request(const std::string& origin, const std::vector<std::string>& ranges) {
  std::vector<ByteRange> parsed;
  for (const std::string& text : ranges) parsed.push_back(parse_byte_range(text));
  if (parsed.empty()) usage_error("cbt mark-dirty needs at least one OFFSET+LENGTH");
  return {{"origin", origin}, {"ranges", byte_ranges_to_json(parsed)}};
}

std::string format_cbt_info(const nlohmann::json& cbt) {
  KeyValueList list;
  list.add("origin", field_text(cbt, "origin"));
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
  Table table({{"OFFSET", Align::right}, {"LENGTH", Align::right}, {"END", Align::right}, {"SIZE", Align::right}});
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

std::string format_checkpoints(const nlohmann::json& reply) {
  Table table({{"NAME"}, {"NUMBER", Align::right}, {"GENERATION"}});
  if (reply.contains("checkpoints") && reply["checkpoints"].is_array()) {
    for (const auto& checkpoint : reply["checkpoints"]) {
      table.add_row({field_text(checkpoint, "name"), std::to_string(field_uint(checkpoint, "number")),
                     field_text(reply, "generation")});
    }
  }
  return table.render();
}

}  // namespace nbdsnap::cli
