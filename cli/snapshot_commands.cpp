// SPDX-License-Identifier: BSD-3-Clause
// snapshot_commands.cpp — the snapshot life cycle from the shell: create, take (with hooks), grow, destroy.
#include "snapshot_commands.h"

#include <cstdio>
#include <optional>

#include "exit_codes.h"
#include "hooks.h"
#include "json_fields.h"
#include "server_path.h"
#include "storage_spec.h"
#include "table.h"
#include "units.h"

namespace po = boost::program_options;

namespace nbdsnap::cli {

namespace {

// A --storage argument (storage_spec.h: PATH, PATH:SIZE, PATH:OFFSET+LENGTH, PATH:) as the control protocol's
// {path, size[, sparse]} or {path, offset, length}; a usage error in words otherwise. `sparse` (--sparse)
// applies to files created at a size; a range or an existing file is used as it is.
nlohmann::json storage_entry(const std::string& text, bool sparse) {
  StorageSpec spec;
  if (Status status = parse_storage_spec(text, spec); !status) usage_error(status.message());
  nlohmann::json entry = {{"path", server_path(spec.path)}};
  if (spec.is_range()) {
    entry["offset"] = spec.offset;
    entry["length"] = spec.length;
  } else {
    entry["size"] = spec.size;
    if (sparse && spec.size != 0) entry["sparse"] = true;
  }
  return entry;
}

// Every storage spec a --sparse command names: at least one must be a file created at a size.
void check_sparse_applies(const std::vector<std::string>& specs) {
  for (const std::string& text : specs) {
    StorageSpec spec;
    if (parse_storage_spec(text, spec) && spec.size != 0) return;
  }
  usage_error(
      "--sparse applies to files created at a size (PATH:SIZE): none of the storage given is one (a "
      "range or an existing file is used as it is, nothing is allocated there)");
}

constexpr const char* kSparseHelp =
    "create storage files sparse instead of allocating them now: no space is used at create, but if the "
    "filesystem fills up, copy-on-write fails with ENOSPC and the snapshot is corrupted";

// After create or append-storage: what each file the server created holds on disk now.
std::string allocation_lines(const nlohmann::json& snapshot) {
  std::string out;
  if (!snapshot.contains("storage") || !snapshot["storage"].is_array()) return out;
  for (const auto& area : snapshot["storage"]) {
    if (!field_bool(area, "created")) continue;
    const std::string size = size_cell(field_uint(area, "size")), path = field_text(area, "path");
    out += field_bool(area, "sparse")
               ? "sparse: " + path + " (" + size +
                     ") takes space as chunks are copied; if its filesystem fills " +
                     "up first, copy-on-write fails with ENOSPC and the snapshot is corrupted\n"
               : size + " allocated in " + path + "\n";
  }
  return out;
}

constexpr const char* kStorageHelp =
    "difference storage: PATH (an existing file or device), PATH:SIZE (a file created at SIZE), "
    "PATH:OFFSET+LENGTH (a range of an existing file or device), PATH: (a PATH containing ':')";

void print_snapshot_reply(Context& context, const nlohmann::json& reply, bool show_allocation = false) {
  if (context.json()) {
    context.print_json(reply);
  } else {
    const nlohmann::json snapshot = reply.value("snapshot", nlohmann::json::object());
    context.out() << format_snapshot(snapshot);
    if (show_allocation) context.out() << allocation_lines(snapshot);
  }
}

int run_create(Context& context, const std::vector<std::string>& words) {
  CommandArgs args(
      "snapshot create NAME --origin ORIGIN... [--storage STORAGE]... [--limit SIZE] [--writable] "
      "[--sparse]");
  args.options()("origin", po::value<std::vector<std::string>>()->value_name("ORIGIN"),
                 "an origin of the snapshot (repeat for several)")(
      "storage", po::value<std::vector<std::string>>()->value_name("STORAGE"), kStorageHelp)(
      "limit", po::value<std::string>()->value_name("SIZE"), "most difference storage the snapshot may use")(
      "writable", "images accept writes (kept in difference storage)")("sparse", kSparseHelp);
  args.positional("NAME", 1);
  if (!parse_or_show_help(context, args, words)) return 0;
  nlohmann::json request =
      snapshot_create_request(args.text("NAME"), args.list("origin"), args.list("storage"),
                              args.size("limit"), args.flag("writable"), args.flag("sparse"));
  print_snapshot_reply(context, context.control().request("snapshot-create", request), true);
  return 0;
}

int run_add_or_remove(Context& context, const std::vector<std::string>& words, bool add) {
  CommandArgs args(add ? "snapshot add NAME ORIGIN" : "snapshot remove NAME ORIGIN");
  args.positional("NAME", 1).positional("ORIGIN", 1);
  if (!parse_or_show_help(context, args, words)) return 0;
  nlohmann::json reply =
      context.control().request(add ? "snapshot-add" : "snapshot-remove",
                                {{"name", args.text("NAME")}, {"origin", args.text("ORIGIN")}});
  if (context.json()) {
    context.print_json(reply);
  } else {
    context.out() << "origin " << args.text("ORIGIN") << (add ? " added to" : " removed from") << " snapshot "
                  << args.text("NAME") << "\n";
  }
  return 0;
}

int run_add(Context& context, const std::vector<std::string>& words) {
  return run_add_or_remove(context, words, true);
}
int run_remove(Context& context, const std::vector<std::string>& words) {
  return run_add_or_remove(context, words, false);
}

// Pre-hook, take, post-hook. A failing pre-hook aborts the take; the post-hook runs whenever the pre-hook
// was started (to undo a partial freeze) and whether or not the take succeeded.
int run_take(Context& context, const std::vector<std::string>& words) {
  CommandArgs args("snapshot take NAME [--pre-hook CMD] [--post-hook CMD]");
  args.options()("pre-hook", po::value<std::string>()->value_name("CMD"),
                 "shell command run before the take (e.g. fsfreeze -f); failure aborts")(
      "post-hook", po::value<std::string>()->value_name("CMD"),
      "shell command run after the take, even if it failed (e.g. fsfreeze -u)");
  args.positional("NAME", 1);
  if (!parse_or_show_help(context, args, words)) return 0;
  const std::string name = args.text("NAME");
  ControlClient& control = context.control();  // connect before freezing anything
  std::optional<CliError> failure;
  nlohmann::json reply;
  if (args.has("pre-hook")) {
    int status = run_hook(args.text("pre-hook"), name, "pre");
    if (status != 0) {
      failure = CliError(ExitCode::server_error, "pre-hook failed with status " + std::to_string(status) +
                                                     ": snapshot " + name + " not taken");
    }
  }
  if (!failure) {
    try {
      reply = control.request("snapshot-take", {{"name", name}});
    } catch (const CliError& error) {
      failure = error;
    }
  }
  if (args.has("post-hook")) {
    int status = run_hook(args.text("post-hook"), name, "post");
    if (status != 0 && !failure) {
      failure = CliError(
          ExitCode::server_error,
          "snapshot " + name + " was taken but the post-hook failed with status " + std::to_string(status));
    }
  }
  if (failure) throw *failure;
  print_snapshot_reply(context, reply);
  return 0;
}

int run_append_storage(Context& context, const std::vector<std::string>& words) {
  CommandArgs args("snapshot append-storage NAME STORAGE [--sparse]");
  args.options()("sparse", kSparseHelp);
  args.positional("NAME", 1).positional("STORAGE", 1);
  if (!parse_or_show_help(context, args, words)) return 0;
  nlohmann::json request =
      snapshot_append_storage_request(args.text("NAME"), args.text("STORAGE"), args.flag("sparse"));
  print_snapshot_reply(context, context.control().request("snapshot-append-storage", request), true);
  return 0;
}

int run_info(Context& context, const std::vector<std::string>& words) {
  CommandArgs args("snapshot info NAME");
  args.positional("NAME", 1);
  if (!parse_or_show_help(context, args, words)) return 0;
  print_snapshot_reply(context, context.control().request("snapshot-info", {{"name", args.text("NAME")}}));
  return 0;
}

int run_list(Context& context, const std::vector<std::string>& words) {
  CommandArgs args("snapshot list");
  if (!parse_or_show_help(context, args, words)) return 0;
  nlohmann::json reply = context.control().request("snapshot-list");
  if (context.json()) {
    context.print_json(reply);
  } else {
    context.out() << format_snapshot_table(reply.value("snapshots", nlohmann::json::array()));
  }
  return 0;
}

int run_destroy(Context& context, const std::vector<std::string>& words) {
  CommandArgs args("snapshot destroy NAME [--force]");
  args.options()("force", "destroy even while clients read its images (their reads fail from then on)");
  args.positional("NAME", 1);
  if (!parse_or_show_help(context, args, words)) return 0;
  nlohmann::json request = {{"name", args.text("NAME")}};
  if (args.flag("force")) request["force"] = true;
  nlohmann::json reply = context.control().request("snapshot-destroy", request);
  if (context.json()) {
    context.print_json(reply);
  } else {
    context.out() << "snapshot " << args.text("NAME") << " destroyed\n";
  }
  return 0;
}

std::string join_names(const nlohmann::json& names) {
  std::string out;
  if (!names.is_array()) return out;
  for (const auto& name : names) {
    if (!out.empty()) out += ",";
    out += name.is_string() ? name.get<std::string>() : name.dump();
  }
  return out;
}

std::string storage_use(const nlohmann::json& snapshot) {
  return size_cell(field_uint(snapshot, "storage_used")) + " / " +
         size_cell(field_uint(snapshot, "storage_total"));
}

}  // namespace

std::vector<CommandSpec> snapshot_command_specs() {
  return {
      {{"snapshot", "create"},
       "snapshot create NAME --origin ORIGIN... [--storage STORAGE]... [--limit SIZE] [--writable] "
       "[--sparse]",
       "create a snapshot of one or more origins (not yet taken)",
       run_create},
      {{"snapshot", "add"}, "snapshot add NAME ORIGIN", "add an origin to a created snapshot", run_add},
      {{"snapshot", "remove"},
       "snapshot remove NAME ORIGIN",
       "remove an origin from a created snapshot",
       run_remove},
      {{"snapshot", "take"},
       "snapshot take NAME [--pre-hook CMD] [--post-hook CMD]",
       "freeze all origins of the snapshot at once",
       run_take},
      {{"snapshot", "append-storage"},
       "snapshot append-storage NAME STORAGE [--sparse]",
       "give a snapshot more difference storage (PATH, PATH:SIZE or PATH:OFFSET+LENGTH)",
       run_append_storage},
      {{"snapshot", "info"},
       "snapshot info NAME",
       "state, images (NBD URIs), storage used and limit",
       run_info},
      {{"snapshot", "list"}, "snapshot list", "list snapshots", run_list},
      {{"snapshot", "destroy"},
       "snapshot destroy NAME [--force]",
       "destroy a snapshot and free its storage (refused while clients read its images, unless --force)",
       run_destroy},
  };
}

nlohmann::json snapshot_create_request(const std::string& name, const std::vector<std::string>& origins,
                                       const std::vector<std::string>& storage_specs, uint64_t limit,
                                       bool writable, bool sparse) {
  if (origins.empty()) usage_error("snapshot create needs at least one --origin");
  // The server's default storage (no --storage) follows its own setting (the filter's
  // nbdsnap-storage-sparse).
  if (sparse && !storage_specs.empty()) check_sparse_applies(storage_specs);
  if (sparse && storage_specs.empty()) {
    usage_error("--sparse needs --storage PATH:SIZE (the server's default storage follows its own setting)");
  }
  nlohmann::json storage = nlohmann::json::array();
  for (const std::string& spec : storage_specs) storage.push_back(storage_entry(spec, sparse));
  // Without --storage the server picks its default storage (the nbdkit filter's nbdsnap-storage=DIR) or
  // refuses.
  nlohmann::json request = {{"name", name}, {"origins", origins}, {"writable", writable}};
  if (!storage.empty()) request["storage"] = storage;
  if (limit != 0) request["limit"] = limit;
  return request;
}

nlohmann::json snapshot_append_storage_request(const std::string& name, const std::string& storage_spec,
                                               bool sparse) {
  if (sparse) check_sparse_applies({storage_spec});
  nlohmann::json request = storage_entry(storage_spec, sparse);
  request["name"] = name;
  return request;
}

std::string format_snapshot(const nlohmann::json& snapshot) {
  KeyValueList list;
  list.add("name", field_text(snapshot, "name"));
  list.add("state", field_text(snapshot, "state"));
  list.add("writable", yes_no(field_bool(snapshot, "writable")));
  list.add("origins", or_dash(join_names(snapshot.value("origins", nlohmann::json::array()))));
  list.add("taken", time_cell(field_int(snapshot, "taken_unix_ms")));
  if (field_int(snapshot, "taken_unix_ms") != 0) {
    // What the take cost the origins' writers: held for this long, most of it waiting for writes in flight.
    const auto ms = [](uint64_t us) {
      char text[32];
      std::snprintf(text, sizeof(text), "%.2f ms", static_cast<double>(us) / 1000);
      return std::string(text);
    };
    list.add("writes held", ms(field_uint(snapshot, "take_hold_us")) + " at the take (" +
                                ms(field_uint(snapshot, "take_drain_us")) + " waiting for writes in flight)");
  }
  list.add("storage used", storage_use(snapshot));
  uint64_t limit = field_uint(snapshot, "storage_limit");
  list.add("storage limit", limit == 0 ? "none" : size_cell(limit));
  list.add("chunks copied", std::to_string(field_uint(snapshot, "chunks_copied")));
  list.add("memory", size_cell(field_uint(snapshot, "memory_bytes")));
  if (!field_text(snapshot, "corruption_reason").empty()) {
    list.add("corrupted", field_text(snapshot, "corruption_reason"));
  }
  // Per origin, the errno that corrupted it (blksnap's SNAPSHOTINFO error_code) and its text.
  if (snapshot.contains("origin_errors") && snapshot["origin_errors"].is_array()) {
    for (const auto& error : snapshot["origin_errors"]) {
      list.add("error of " + field_text(error, "origin"),
               "errno " + std::to_string(field_int(error, "errno")) + " (" + field_text(error, "error") +
                   "): " + field_text(error, "reason"));
    }
  }
  std::string out = list.render();
  Table images({{"ORIGIN"}, {"EXPORT"}, {"CLIENTS", Align::right}, {"URI"}});
  if (snapshot.contains("images") && snapshot["images"].is_array()) {
    for (const auto& image : snapshot["images"]) {
      images.add_row({field_text(image, "origin"), field_text(image, "export"),
                      std::to_string(field_uint(image, "clients")), or_dash(field_text(image, "uri"))});
    }
  }
  if (!images.empty()) out += "\n" + images.render();
  // A remote control client gets no URI when the server has none it can open (remote_security.h): why.
  if (snapshot.contains("images") && snapshot["images"].is_array()) {
    for (const auto& image : snapshot["images"]) {
      if (field_text(image, "uri").empty() && !field_text(image, "uri_hint").empty()) {
        out += "no URI for " + field_text(image, "export") + ": " + field_text(image, "uri_hint") + "\n";
      }
    }
  }
  Table storage({{"STORAGE"}, {"OFFSET", Align::right}, {"SIZE", Align::right}, {"CREATED"}});
  if (snapshot.contains("storage") && snapshot["storage"].is_array()) {
    for (const auto& area : snapshot["storage"]) {
      storage.add_row({field_text(area, "path"), std::to_string(field_uint(area, "offset")),
                       size_cell(field_uint(area, "size")), yes_no(field_bool(area, "created"))});
    }
  }
  if (!storage.empty()) out += "\n" + storage.render();
  return out;
}

std::string format_snapshot_table(const nlohmann::json& snapshots) {
  Table table({{"NAME"},
               {"STATE"},
               {"ORIGINS"},
               {"USED / TOTAL", Align::right},
               {"LIMIT", Align::right},
               {"CHUNKS", Align::right},
               {"TAKEN"}});
  for (const auto& snapshot : snapshots) {
    uint64_t limit = field_uint(snapshot, "storage_limit");
    table.add_row({field_text(snapshot, "name"), field_text(snapshot, "state"),
                   join_names(snapshot.value("origins", nlohmann::json::array())), storage_use(snapshot),
                   limit == 0 ? "-" : size_cell(limit), std::to_string(field_uint(snapshot, "chunks_copied")),
                   time_cell(field_int(snapshot, "taken_unix_ms"))});
  }
  return table.render();
}

}  // namespace nbdsnap::cli
