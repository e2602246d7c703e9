// SPDX-License-Identifier: BSD-3-Clause
// control.cpp — the JSON command set over the engine (docs/control.md is its reference).
#include "control.h"

#include <string.h>

#include <algorithm>
#include <chrono>
#include <functional>
#include <map>
#include <new>
#include <thread>

#include "control_client_watch.h"
#include "export_name.h"

namespace nbdsnap {

using json = nlohmann::json;

namespace {

// Thrown inside handlers for malformed arguments; caught in Control::handle, never escapes it.
struct BadArgument {
  Status status;
};

const json& argument(const json& request, const char* key) {
  auto it = request.find(key);
  if (it == request.end())
    throw BadArgument{{Errc::invalid_argument, std::string("missing argument '") + key + "'"}};
  return *it;
}

std::string string_arg(const json& request, const char* key) {
  const json& value = argument(request, key);
  if (!value.is_string())
    throw BadArgument{{Errc::invalid_argument, std::string("'") + key + "' must be a string"}};
  return value.get<std::string>();
}

std::string optional_string(const json& request, const char* key) {
  return request.contains(key) ? string_arg(request, key) : std::string();
}

uint64_t uint_arg(const json& value, const char* key) {
  if (!value.is_number_unsigned() && !(value.is_number_integer() && value.get<int64_t>() >= 0)) {
    throw BadArgument{{Errc::invalid_argument, std::string("'") + key + "' must be a non-negative integer"}};
  }
  return value.get<uint64_t>();
}

uint64_t optional_uint(const json& request, const char* key, uint64_t fallback) {
  return request.contains(key) ? uint_arg(request.at(key), key) : fallback;
}

bool optional_bool(const json& request, const char* key) {
  if (!request.contains(key)) return false;
  if (!request.at(key).is_boolean()) {
    throw BadArgument{{Errc::invalid_argument, std::string("'") + key + "' must be true or false"}};
  }
  return request.at(key).get<bool>();
}

std::vector<Range> ranges_arg(const json& request) {
  const json& list = argument(request, "ranges");
  if (!list.is_array()) throw BadArgument{{Errc::invalid_argument, "'ranges' must be a list"}};
  std::vector<Range> ranges;
  for (const json& r : list) {
    if (!r.is_object()) throw BadArgument{{Errc::invalid_argument, "each range is {offset, length}"}};
    ranges.push_back({uint_arg(argument(r, "offset"), "offset"), uint_arg(argument(r, "length"), "length")});
  }
  return ranges;
}

// A storage entry: {path, size[, sparse]} (a whole file, created at size if given: fully allocated unless
// sparse) or {path, offset, length} (a range of an existing file or device; length 0 or absent: to the end).
// Checked by check_storage_spec().
StorageSpec storage_arg(const json& entry) {
  StorageSpec spec;
  spec.path = string_arg(entry, "path");
  spec.size = optional_uint(entry, "size", 0);
  spec.offset = optional_uint(entry, "offset", 0);
  spec.length = optional_uint(entry, "length", 0);
  spec.sparse = optional_bool(entry, "sparse");
  if (Status s = check_storage_spec(spec); !s) throw BadArgument{s};
  return spec;
}

json ranges_json(const std::vector<Range>& ranges) {
  json list = json::array();
  for (const Range& r : ranges) list.push_back({{"offset", r.offset}, {"length", r.length}});
  return list;
}

// strerror's text for an errno ("No space left on device"), thread-safe.
std::string error_text(int error_code) {
  if (error_code == 0) return "";
  char buffer[256];
  return ::strerror_r(error_code, buffer, sizeof buffer);  // the GNU form returns the text
}

json event_json(const Event& e) {
  return {{"sequence", e.sequence},
          {"time_unix_ms", e.time_unix_ms},
          {"type", event_type_name(e.type)},
          {"snapshot", e.snapshot},
          {"origin", e.origin},
          {"reason", e.reason},
          {"requested_bytes", e.requested_bytes},
          {"bytes", e.bytes},
          {"errno", e.error_code},
          {"error", error_text(e.error_code)}};
}

// How long snapshot-destroy waits for image clients that are disconnecting before it refuses (busy).
constexpr std::chrono::milliseconds kImageClientsGrace{1500};

// Replies of cbt-map and cbt-raw-map stay under 1 MiB (the line limit of docs/control.md) whatever the map:
// at most this many ranges (at most 58 bytes of JSON each) or runs (at most 27 bytes each, beside at most 128
// checkpoints of at most ~320 bytes) per page.
constexpr uint64_t kMaxRangesPerPage = 16384;
constexpr uint64_t kMaxRunsPerPage = 32768;

uint64_t page_limit(const json& request, const char* key, uint64_t maximum) {
  const uint64_t limit = optional_uint(request, key, maximum);
  if (limit == 0 || limit > maximum) {
    throw BadArgument{
        {Errc::invalid_argument, std::string("'") + key + "' must be 1.." + std::to_string(maximum)}};
  }
  return limit;
}

// Checkpoints oldest first: [{name, number, taken_unix_ms}].
json checkpoint_list(const Checkpoints& checkpoints) {
  std::vector<std::pair<uint8_t, std::string>> ordered;
  for (const auto& [name, checkpoint] : checkpoints) ordered.emplace_back(checkpoint.number, name);
  std::sort(ordered.begin(), ordered.end());
  json list = json::array();
  for (const auto& [number, name] : ordered) {
    list.push_back(
        {{"name", name}, {"number", number}, {"taken_unix_ms", checkpoints.at(name).taken_unix_ms}});
  }
  return list;
}

json ok_reply(json result = json::object()) {
  result["ok"] = true;
  return result;
}

}  // namespace

json error_reply(const Status& status) {
  return {{"ok", false},
          {"error",
           {{"code", errc_name(status.code())}, {"errno", to_errno(status)}, {"message", status.message()}}}};
}

namespace {

class CommandSet {
 public:
  CommandSet(Engine& engine, ControlFrontEnd& front_end) : engine_(engine), front_end_(front_end) {}

  json run(const std::string& command, const json& request) {
    using Handler = json (CommandSet::*)(const json&);
    static const std::map<std::string, Handler> kCommands = {
        {"version", &CommandSet::version},
        {"origins", &CommandSet::origins},
        {"origin-info", &CommandSet::origin_info},
        {"origin-attach", &CommandSet::origin_attach},
        {"origin-detach", &CommandSet::origin_detach},
        {"cbt-info", &CommandSet::cbt_info},
        {"cbt-map", &CommandSet::cbt_map},
        {"cbt-mark-dirty", &CommandSet::cbt_mark_dirty},
        {"cbt-reset", &CommandSet::cbt_reset},
        {"cbt-raw-map", &CommandSet::cbt_raw_map},
        {"checkpoints", &CommandSet::checkpoints},
        {"checkpoint-delete", &CommandSet::checkpoint_delete},
        {"snapshot-create", &CommandSet::snapshot_create},
        {"snapshot-add", &CommandSet::snapshot_add},
        {"snapshot-remove", &CommandSet::snapshot_remove},
        {"snapshot-take", &CommandSet::snapshot_take},
        {"snapshot-append-storage", &CommandSet::snapshot_append_storage},
        {"snapshot-info", &CommandSet::snapshot_info},
        {"snapshot-list", &CommandSet::snapshot_list},
        {"snapshot-destroy", &CommandSet::snapshot_destroy},
        {"events-wait", &CommandSet::events_wait},
        {"stats", &CommandSet::stats},
    };
    auto it = kCommands.find(command);
    if (it == kCommands.end())
      return error_reply({Errc::invalid_argument, "unknown command '" + command + "'"});
    return (this->*(it->second))(request);
  }

 private:
  static json result_or_error(const Status& s, json result = json::object()) {
    return s ? ok_reply(std::move(result)) : error_reply(s);
  }

  json origin_json(const OriginInfo& o) const {
    return {{"name", o.name},
            {"size", o.size},
            {"minimum_io_size", o.minimum_io_size},
            {"read_only", o.read_only},
            {"generation", o.generation},
            {"change_number", o.change_number},
            {"tracking_block_size", o.tracking_block_size},
            {"chunk_size", o.chunk_size},
            {"snapshot", o.snapshot},
            {"clients", front_end_.client_count(o.name)},
            {"uri", front_end_.export_uri(o.name)}};
  }

  json snapshot_json(const SnapshotInfo& s) const {
    json images = json::array(), storage = json::array();
    if (s.state != SnapshotState::created) {
      for (const auto& origin : s.origins) {
        const std::string name = format_export_name(origin, s.name);
        images.push_back({{"origin", origin},
                          {"export", name},
                          {"uri", front_end_.export_uri(name)},
                          {"clients", front_end_.client_count(name)}});
      }
    }
    json origin_errors = json::array();
    for (const OriginError& error : s.origin_errors) {
      origin_errors.push_back({{"origin", error.origin},
                               {"errno", error.error_code},
                               {"error", error_text(error.error_code)},
                               {"reason", error.reason}});
    }
    for (const auto& area : s.storage) {
      storage.push_back({{"path", area.path},
                         {"offset", area.offset},
                         {"size", area.size},
                         {"created", area.created_by_engine},
                         {"sparse", area.sparse}});
    }
    return {{"name", s.name},
            {"state", snapshot_state_name(s.state)},
            {"writable", s.writable},
            {"origins", s.origins},
            {"images", images},
            {"storage", storage},
            {"storage_total", s.storage_total},
            {"storage_used", s.storage_used},
            {"storage_limit", s.storage_limit},
            {"chunks_copied", s.chunks_copied},
            {"memory_bytes", s.memory_bytes},
            {"corruption_reason", s.corruption_reason},
            {"origin_errors", origin_errors},
            {"taken_unix_ms", s.taken_unix_ms},
            {"take_hold_us", s.take_hold_us},
            {"take_drain_us", s.take_drain_us}};
  }

  // `stats`: every origin's and image's counters and every snapshot's storage space (core/io_counters.h says
  // what each counts), with the clients each export has now.
  json stats(const json&) {
    const EngineStats stats = engine_.stats();
    json origins = json::array(), snapshots = json::array();
    for (const OriginStats& o : stats.origins) {
      const OriginCounterValues& c = o.counters;
      origins.push_back({{"name", o.name},
                         {"writes", c.writes},
                         {"bytes_written", c.bytes_written},
                         {"reads", c.reads},
                         {"bytes_read", c.bytes_read},
                         {"chunks_copied", c.chunks_copied},
                         {"bytes_copied", c.bytes_copied},
                         {"copy_on_write_ns", c.copy_on_write_ns},
                         {"cbt_blocks_marked", c.cbt_blocks_marked},
                         {"clients", front_end_.client_count(o.name)}});
    }
    for (const SnapshotStats& s : stats.snapshots) {
      json images = json::array();
      for (const ImageStats& image : s.images) {
        const std::string name = format_export_name(image.origin, s.name);
        images.push_back({{"origin", image.origin},
                          {"export", name},
                          {"reads", image.counters.reads},
                          {"bytes_read", image.counters.bytes_read},
                          {"clients", front_end_.client_count(name)}});
      }
      snapshots.push_back({{"name", s.name},
                           {"state", s.state},
                           {"storage_total", s.storage_total},
                           {"storage_used", s.storage_used},
                           {"storage_free", s.storage_free},
                           {"storage_limit", s.storage_limit},
                           {"images", images}});
    }
    return ok_reply({{"origins", origins}, {"snapshots", snapshots}});
  }

  json snapshot_reply(const std::string& name) {
    SnapshotInfo info;
    Status s = engine_.snapshot_info(name, info);
    return result_or_error(s, s ? json{{"snapshot", snapshot_json(info)}} : json());
  }
  // The reply of a call that changed the snapshot, from what that call saw: reading it again could answer
  // not_found for a snapshot the call made, when another client destroyed it meanwhile.
  json snapshot_reply(const SnapshotInfo& info) { return ok_reply({{"snapshot", snapshot_json(info)}}); }

  json version(const json&) {
    return ok_reply({{"version", NBDSNAP_VERSION},
                     {"protocol", kControlProtocolVersion},
                     {"front_end", front_end_.front_end_name()}});
  }

  json origins(const json&) {
    json list = json::array();
    for (const auto& o : engine_.origins()) list.push_back(origin_json(o));
    return ok_reply({{"origins", list}});
  }

  json origin_info(const json& request) {
    OriginInfo info;
    Status s = engine_.origin_info(string_arg(request, "name"), info);
    return result_or_error(s, s ? json{{"origin", origin_json(info)}} : json());
  }

  json origin_attach(const json& request) {
    // Described as attached, not looked up by name afterwards: a detach, or another attach of the name,
    // may already have come.
    OriginInfo attached;
    Status s = front_end_.attach_origin(string_arg(request, "name"), string_arg(request, "path"),
                                        optional_bool(request, "read_only"), attached);
    return result_or_error(s, s ? json{{"origin", origin_json(attached)}} : json());
  }

  json origin_detach(const json& request) {
    return result_or_error(
        front_end_.detach_origin(string_arg(request, "name"), optional_bool(request, "force")));
  }

  // The map a CBT command reads: `origin`, optional `snapshot` (its frozen map), `offset` and `length`.
  static CbtMapQuery map_query(const json& request) {
    CbtMapQuery query;
    query.origin = string_arg(request, "origin");
    query.snapshot = optional_string(request, "snapshot");
    query.offset = optional_uint(request, "offset", 0);
    query.length = optional_uint(request, "length", UINT64_MAX);
    return query;
  }

  static json map_fields(const CbtInfo& info) {
    return {{"origin", info.origin},         {"snapshot", info.snapshot},
            {"generation", info.generation}, {"change_number", info.change_number},
            {"block_size", info.block_size}, {"device_size", info.device_size}};
  }

  json cbt_info(const json& request) {
    CbtInfo info;
    Status s = engine_.cbt_info(string_arg(request, "origin"), optional_string(request, "snapshot"), info);
    if (!s) return error_reply(s);
    json numbers = json::object();
    for (const auto& [name, checkpoint] : info.checkpoints) numbers[name] = checkpoint.number;
    json cbt = map_fields(info);
    cbt["block_count"] = info.block_count;
    cbt["checkpoints"] = numbers;
    return ok_reply({{"cbt", cbt}});
  }

  json cbt_map(const json& request) {
    CbtMapQuery query = map_query(request);
    query.since = optional_string(request, "since");
    query.max_items = page_limit(request, "max_ranges", kMaxRangesPerPage);
    CbtInfo info;
    CbtRangesPage page;
    if (Status s = engine_.cbt_map(query, info, page); !s) return error_reply(s);
    json reply = map_fields(info);
    reply["ranges"] = ranges_json(page.ranges);
    reply["next_offset"] = page.next_offset;
    reply["more"] = page.more;
    return ok_reply(std::move(reply));
  }

  json cbt_raw_map(const json& request) {
    CbtMapQuery query = map_query(request);
    query.max_items = page_limit(request, "max_runs", kMaxRunsPerPage);
    CbtInfo info;
    CbtRunsPage page;
    if (Status s = engine_.cbt_raw_map(query, info, page); !s) return error_reply(s);
    json runs = json::array();
    for (const auto& [number, blocks] : page.runs) runs.push_back({number, blocks});
    json reply = map_fields(info);
    reply["checkpoints"] = checkpoint_list(info.checkpoints);
    reply["offset"] = page.offset;
    reply["length"] = page.length;
    reply["runs"] = std::move(runs);
    reply["next_offset"] = page.next_offset;
    reply["more"] = page.more;
    return ok_reply(std::move(reply));
  }

  json cbt_mark_dirty(const json& request) {
    return result_or_error(engine_.cbt_mark_dirty(string_arg(request, "origin"), ranges_arg(request)));
  }

  json cbt_reset(const json& request) {
    const std::string origin = string_arg(request, "origin");
    if (Status s = engine_.cbt_reset(origin); !s) return error_reply(s);
    CbtInfo info;
    Status s = engine_.cbt_info(origin, info);
    return result_or_error(s, {{"generation", info.generation}});
  }

  json checkpoints(const json& request) {
    CbtInfo info;
    Status s = engine_.cbt_info(string_arg(request, "origin"), optional_string(request, "snapshot"), info);
    if (!s) return error_reply(s);
    return ok_reply({{"generation", info.generation}, {"checkpoints", checkpoint_list(info.checkpoints)}});
  }

  json checkpoint_delete(const json& request) {
    return result_or_error(
        engine_.checkpoint_delete(string_arg(request, "origin"), string_arg(request, "name")));
  }

  json snapshot_create(const json& request) {
    const std::string name = string_arg(request, "name");
    SnapshotOptions options;
    if (request.contains("origins")) {
      const json& origins = request.at("origins");
      if (!origins.is_array())
        throw BadArgument{{Errc::invalid_argument, "'origins' must be a list of names"}};
      for (const json& o : origins) {
        if (!o.is_string()) throw BadArgument{{Errc::invalid_argument, "'origins' must be a list of names"}};
        options.origins.push_back(o.get<std::string>());
      }
    }
    if (request.contains("storage")) {
      const json& storage = request.at("storage");
      if (!storage.is_array()) throw BadArgument{{Errc::invalid_argument, "'storage' must be a list"}};
      for (const json& area : storage) {
        if (!area.is_object()) {
          throw BadArgument{
              {Errc::invalid_argument, "each storage entry is {path, size} or {path, offset, length}"}};
        }
        options.storage.push_back(storage_arg(area));
      }
    }
    options.limit = optional_uint(request, "limit", 0);
    options.writable = optional_bool(request, "writable");
    SnapshotInfo created;
    if (Status s = engine_.create_snapshot(name, options, &created); !s) return error_reply(s);
    return snapshot_reply(created);
  }

  json snapshot_add(const json& request) {
    return result_or_error(
        engine_.add_origin_to_snapshot(string_arg(request, "name"), string_arg(request, "origin")));
  }

  json snapshot_remove(const json& request) {
    return result_or_error(
        engine_.remove_origin_from_snapshot(string_arg(request, "name"), string_arg(request, "origin")));
  }

  json snapshot_take(const json& request) {
    const std::string name = string_arg(request, "name");
    SnapshotInfo taken;
    if (Status s = engine_.take_snapshot(name, &taken); !s) return error_reply(s);
    return snapshot_reply(taken);
  }

  json snapshot_append_storage(const json& request) {
    const std::string name = string_arg(request, "name");
    SnapshotInfo appended;
    if (Status s = engine_.append_storage(name, storage_arg(request), &appended); !s) return error_reply(s);
    return snapshot_reply(appended);
  }

  json snapshot_info(const json& request) { return snapshot_reply(string_arg(request, "name")); }

  json snapshot_list(const json&) {
    json list = json::array();
    for (const auto& info : engine_.snapshots()) list.push_back(snapshot_json(info));
    return ok_reply({{"snapshots", list}});
  }

  // Destroying a snapshot whose images clients still read cuts those clients off (their reads fail from then
  // on): refused unless forced, here for both front ends. A client that just disconnected may still be
  // counted for a moment (its front end notices the close a little later): that is waited for, briefly.
  json snapshot_destroy(const json& request) {
    const std::string name = string_arg(request, "name");
    if (!optional_bool(request, "force")) {
      if (Status s = wait_for_no_image_clients(name); !s) return error_reply(s);
    }
    return result_or_error(engine_.destroy_snapshot(name));
  }

  // "disk@nightly: 1 client, data@nightly: 2 clients", or "" when no image of the snapshot has a client.
  std::string image_clients_text(const SnapshotInfo& info) const {
    std::string text;
    for (const std::string& origin : info.origins) {
      const std::string image = format_export_name(origin, info.name);
      const unsigned clients = front_end_.client_count(image);
      if (clients == 0) continue;
      text += (text.empty() ? "" : ", ") + image + ": " + std::to_string(clients) +
              (clients == 1 ? " client" : " clients");
    }
    return text;
  }

  // ok once no image of the snapshot has a client (at once, or within kImageClientsGrace); busy naming the
  // clients of each image otherwise. ok for a snapshot not registered: destroy then says why (not_found, or
  // busy while another call creates or destroys it).
  Status wait_for_no_image_clients(const std::string& name) const {
    const auto deadline = std::chrono::steady_clock::now() + kImageClientsGrace;
    for (;;) {
      SnapshotInfo info;
      if (Status s = engine_.snapshot_info(name, info); !s)
        return s.code() == Errc::not_found ? Status::ok() : s;
      const std::string clients = info.state == SnapshotState::created ? "" : image_clients_text(info);
      if (clients.empty()) return Status::ok();
      if (std::chrono::steady_clock::now() >= deadline) {
        return {Errc::busy, "snapshot '" + name + "' has image clients (" + clients +
                                "): disconnect them, or destroy with force (their reads then fail)"};
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  }

  json events_wait(const json& request) {
    const uint64_t after = optional_uint(request, "after", 0);
    const uint64_t timeout_ms =
        std::min<uint64_t>(optional_uint(request, "timeout_ms", 0), 24ull * 3600 * 1000);
    // A client that hung up ends its wait (ControlClientWatch): checked each second.
    const std::vector<Event> events = engine_.events().wait_after(
        after, std::chrono::milliseconds(timeout_ms), [] { return ControlClientWatch::client_gone(); });
    json list = json::array();
    for (const Event& e : events) list.push_back(event_json(e));
    return ok_reply({{"events", list}, {"last_sequence", engine_.events().last_sequence()}});
  }

  Engine& engine_;
  ControlFrontEnd& front_end_;
};

}  // namespace

json Control::handle(const json& request) {
  try {
    if (!request.is_object()) return error_reply({Errc::invalid_argument, "a request is a JSON object"});
    auto command = request.find("command");
    if (command == request.end() || !command->is_string()) {
      return error_reply({Errc::invalid_argument, "a request needs a \"command\" string"});
    }
    return CommandSet(engine_, front_end_).run(command->get<std::string>(), request);
  } catch (const BadArgument& bad) {
    return error_reply(bad.status);
  } catch (const std::bad_alloc&) {
    // Not the request's fault. The engine's calls change all or nothing on std::bad_alloc and give back what
    // they reserved, but one may have been done when its reply (an info, an event) could not be made.
    return error_reply(
        {Errc::no_memory,
         "out of memory while handling the request: it may have been done (a reply or an event "
         "could not be made); look at the state (e.g. snapshot-info) before trying again"});
  } catch (const std::exception& e) {
    return error_reply({Errc::invalid_argument, std::string("bad request: ") + e.what()});
  }
}

namespace {

// Every storage path of a snapshot-create or snapshot-append-storage request, checked for a remote caller
// (control_roles.h). Malformed entries are left to the command, which reports them.
Status check_remote_storage(const json& request, const ControlCaller& caller) {
  const auto check_area = [&caller](const json& area) -> Status {
    if (!area.is_object() || !area.contains("path") || !area["path"].is_string()) return Status::ok();
    return check_remote_storage_path(caller, area["path"].get<std::string>(),
                                     area.contains("offset") || area.contains("length"));
  };
  if (!request.is_object() || !request.contains("command") || !request["command"].is_string())
    return Status::ok();
  const std::string command = request["command"].get<std::string>();
  if (command == "snapshot-append-storage") return check_area(request);
  if (command == "snapshot-create" && request.contains("storage") && request["storage"].is_array()) {
    for (const json& area : request["storage"]) {
      if (Status s = check_area(area); !s) return s;
    }
  }
  return Status::ok();
}

}  // namespace

std::string Control::handle_line(const std::string& line) {
  return handle_line(line, ControlCaller{});
}

std::string Control::handle_line(const std::string& line, const ControlCaller& caller) {
  // Replies may quote bytes of the request (names, parse errors): replace invalid UTF-8 rather than throw.
  auto dump = [](const json& reply) { return reply.dump(-1, ' ', false, json::error_handler_t::replace); };
  json request;
  try {
    request = json::parse(line);
  } catch (const json::exception& e) {  // parse_error, and out_of_range for numbers like 1e9999
    return dump(error_reply({Errc::invalid_argument, std::string("request is not valid JSON: ") + e.what()}));
  }
  if (request.is_object() && request.contains("command") && request["command"].is_string()) {
    const std::string command = request["command"].get<std::string>();
    const ControlRole needed = required_control_role(command);
    if (caller.role < needed) {
      return dump(error_reply({Errc::permission_denied,
                               "command '" + command + "' needs the " + control_role_name(needed) +
                                   " role; " + caller.identity + " has " + control_role_name(caller.role)}));
    }
  }
  if (caller.storage_dir) {
    if (Status s = check_remote_storage(request, caller); !s) return dump(error_reply(s));
  }
  return dump(handle(request));
}

}  // namespace nbdsnap
