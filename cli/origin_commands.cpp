// SPDX-License-Identifier: BSD-3-Clause
// origin_commands.cpp — the commands about the server and its origins, and their tables.
#include "origin_commands.h"

#include "json_fields.h"
#include "server_path.h"
#include "table.h"

namespace nbdsnap::cli {

namespace {

int run_version(Context& context, const std::vector<std::string>& words) {
  CommandArgs args("version");
  if (!parse_or_show_help(context, args, words)) return 0;
  nlohmann::json reply = context.control().request("version");
  if (context.json()) {
    reply["client_version"] = NBDSNAP_VERSION;
    context.print_json(reply);
  } else {
    context.out() << format_version(NBDSNAP_VERSION, reply);
  }
  return 0;
}

int run_origins(Context& context, const std::vector<std::string>& words) {
  CommandArgs args("origins");
  if (!parse_or_show_help(context, args, words)) return 0;
  nlohmann::json reply = context.control().request("origins");
  if (context.json()) {
    context.print_json(reply);
  } else {
    context.out() << format_origin_table(reply.value("origins", nlohmann::json::array()));
  }
  return 0;
}

int run_origin_info(Context& context, const std::vector<std::string>& words) {
  CommandArgs args("origin info NAME");
  args.positional("NAME", 1);
  if (!parse_or_show_help(context, args, words)) return 0;
  nlohmann::json reply = context.control().request("origin-info", {{"name", args.text("NAME")}});
  if (context.json()) {
    context.print_json(reply);
  } else {
    context.out() << format_origin(reply.value("origin", nlohmann::json::object()));
  }
  return 0;
}

int run_origin_attach(Context& context, const std::vector<std::string>& words) {
  CommandArgs args("origin attach NAME PATH [--read-only]");
  args.options()("read-only", "attach the origin read-only");
  args.positional("NAME", 1).positional("PATH", 1);
  if (!parse_or_show_help(context, args, words)) return 0;
  nlohmann::json reply = context.control().request("origin-attach", {{"name", args.text("NAME")},
                                                                     {"path", server_path(args.text("PATH"))},
                                                                     {"read_only", args.flag("read-only")}});
  if (context.json()) {
    context.print_json(reply);
  } else {
    context.out() << format_origin(reply.value("origin", nlohmann::json::object()));
  }
  return 0;
}

int run_origin_detach(Context& context, const std::vector<std::string>& words) {
  CommandArgs args("origin detach NAME [--force]");
  args.options()("force", "detach even if the origin is in a snapshot (its image disappears)");
  args.positional("NAME", 1);
  if (!parse_or_show_help(context, args, words)) return 0;
  nlohmann::json reply = context.control().request(
      "origin-detach", {{"name", args.text("NAME")}, {"force", args.flag("force")}});
  if (context.json()) {
    context.print_json(reply);
  } else {
    context.out() << "origin " << args.text("NAME") << " detached\n";
  }
  return 0;
}

}  // namespace

std::vector<CommandSpec> origin_command_specs() {
  return {
      {{"version"}, "version", "versions of the client, the server and the protocol", run_version},
      {{"origins"}, "origins", "list origins: size, tracker, CBT generation, snapshot", run_origins},
      {{"origin", "info"}, "origin info NAME", "show one origin", run_origin_info},
      {{"origin", "attach"},
       "origin attach NAME PATH [--read-only]",
       "attach a file or block device (nbdsnapd)",
       run_origin_attach},
      {{"origin", "detach"},
       "origin detach NAME [--force]",
       "detach an origin (nbdsnapd)",
       run_origin_detach},
  };
}

std::string format_version(const std::string& client_version, const nlohmann::json& reply) {
  KeyValueList list;
  list.add("client", "nbdsnap " + client_version);
  list.add("server", field_text(reply, "front_end") + " " + field_text(reply, "version"));
  list.add("protocol", std::to_string(field_uint(reply, "protocol")));
  return list.render();
}

std::string format_origin_table(const nlohmann::json& origins) {
  Table table({{"NAME"},
               {"SIZE", Align::right},
               {"RO"},
               {"GENERATION"},
               {"CHANGE", Align::right},
               {"SNAPSHOT"},
               {"CLIENTS", Align::right}});
  for (const auto& origin : origins) {
    table.add_row({field_text(origin, "name"), size_cell(field_uint(origin, "size")),
                   yes_no(field_bool(origin, "read_only")), or_dash(field_text(origin, "generation")),
                   std::to_string(field_uint(origin, "change_number")),
                   or_dash(field_text(origin, "snapshot")), std::to_string(field_uint(origin, "clients"))});
  }
  return table.render();
}

std::string format_origin(const nlohmann::json& origin) {
  KeyValueList list;
  list.add("name", field_text(origin, "name"));
  list.add("size", size_cell(field_uint(origin, "size")) + " (" + std::to_string(field_uint(origin, "size")) +
                       " bytes)");
  list.add("read only", yes_no(field_bool(origin, "read_only")));
  list.add("generation", or_dash(field_text(origin, "generation")));
  list.add("change number", std::to_string(field_uint(origin, "change_number")));
  list.add("tracking block", size_cell(field_uint(origin, "tracking_block_size")));
  list.add("chunk", size_cell(field_uint(origin, "chunk_size")));
  list.add("snapshot", or_dash(field_text(origin, "snapshot")));
  list.add("clients", std::to_string(field_uint(origin, "clients")));
  list.add("uri", or_dash(field_text(origin, "uri")));
  return list.render();
}

}  // namespace nbdsnap::cli
