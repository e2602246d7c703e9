// SPDX-License-Identifier: BSD-3-Clause
// events_commands.cpp — following the event log, and the storage watcher's loop.
#include "events_commands.h"

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <set>
#include <string>

#include <sys/stat.h>

#include "exit_codes.h"
#include "json_fields.h"
#include "server_path.h"
#include "storage_watcher.h"
#include "table.h"

namespace po = boost::program_options;

namespace nbdsnap::cli {

namespace {

constexpr std::chrono::milliseconds kFollowPoll{1000};  // one events-wait of --follow and watch-storage

std::string pad(std::string text, size_t width) {
  if (text.size() < width) text.append(width - text.size(), ' ');
  return text;
}

std::string event_detail(const nlohmann::json& event) {
  const std::string type = field_text(event, "type");
  if (type == "low_free_space") return "requested " + size_cell(field_uint(event, "requested_bytes"));
  if (type == "storage_appended") return "+" + size_cell(field_uint(event, "bytes"));
  if (type == "corrupted" && field_int(event, "errno") != 0) {  // blksnap's err_code, with its text
    return "errno " + std::to_string(field_int(event, "errno")) + " (" + field_text(event, "error") +
           "): " + field_text(event, "reason");
  }
  return field_text(event, "reason");
}

// Prints events (table lines or one JSON object per line) and returns the newest sequence seen.
// --wait SECONDS: a fraction allowed, at most the 24 h the server waits (docs/control.md, events-wait).
double parse_wait_seconds(const std::string& text) {
  double seconds = -1;
  size_t used = 0;
  try {
    seconds = std::stod(text, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used == 0 || used != text.size())
    usage_error("--wait " + text + ": expected seconds 0..86400 (e.g. 10 or 2.5)");
  if (!(seconds >= 0 && seconds <= 86400))
    usage_error("--wait " + text + " is out of range: it must be 0..86400");
  return seconds;
}

uint64_t print_events(Context& context, const nlohmann::json& events, uint64_t after) {
  for (const auto& event : events) {
    if (context.json()) {
      context.out() << event.dump() << "\n";
    } else {
      context.out() << format_event_line(event);
    }
    after = std::max(after, field_uint(event, "sequence"));
  }
  context.out().flush();
  return after;
}

int run_events(Context& context, const std::vector<std::string>& words) {
  CommandArgs args("events [--after SEQUENCE] [--wait SECONDS] [--follow]");
  args.options()("after", po::value<std::string>()->value_name("SEQUENCE"),
                 "only events with a larger sequence number")(
      "wait", po::value<std::string>()->value_name("SECONDS"),
      "wait up to SECONDS for the first event (0..86400)")(
      "follow", "keep printing events as they come (until interrupted)");
  if (!parse_or_show_help(context, args, words)) return 0;
  uint64_t after = args.number("after", 0, UINT64_MAX);
  const double wait_seconds = args.has("wait") ? parse_wait_seconds(args.text("wait")) : 0;
  const bool follow = args.flag("follow");
  // The server waits at most 24 h (docs/control.md); so does the client, plus its --timeout.
  const auto wait = std::chrono::milliseconds(static_cast<uint64_t>(std::min(wait_seconds, 86400.0) * 1000));
  nlohmann::json reply =
      context.control().request("events-wait", {{"after", after}, {"timeout_ms", wait.count()}}, wait);
  if (!follow && context.json()) {
    context.print_json(reply);
    return 0;
  }
  // Only now: a refused request (permission_denied, a bad --after) must leave stdout empty, not a lone
  // header.
  if (!context.json()) context.out() << format_event_header();
  after = print_events(context, reply.value("events", nlohmann::json::array()), after);
  if (!follow) return 0;
  for (;;) {  // until interrupted, or the server goes away (exit 4)
    reply = context.control().request("events-wait", {{"after", after}, {"timeout_ms", kFollowPoll.count()}},
                                      kFollowPoll);
    after = print_events(context, reply.value("events", nlohmann::json::array()), after);
  }
}

bool file_exists(const std::string& path) {
  struct stat info {};
  return ::stat(path.c_str(), &info) == 0;
}

// Appends the next GROW_PATH.N of `size` bytes to the snapshot; reports and returns false on failure.
bool append_next_storage(Context& context, StorageWatcher& watcher, uint64_t size,
                         const nlohmann::json& event) {
  ControlClient& control = context.control();
  std::set<std::string> in_use;
  nlohmann::json info = control.request("snapshot-info", {{"name", watcher.snapshot()}});
  for (const auto& area : info["snapshot"].value("storage", nlohmann::json::array())) {
    in_use.insert(field_text(area, "path"));
  }
  std::string path = watcher.next_storage_path(in_use, file_exists);
  try {
    control.request("snapshot-append-storage",
                    {{"name", watcher.snapshot()}, {"path", path}, {"size", size}});
  } catch (const CliError& error) {
    if (error.code() == ExitCode::not_found) throw;
    context.err() << "nbdsnap watch-storage: appending " << path << " to " << watcher.snapshot()
                  << " failed: " << error.what() << "\n";
    return false;
  }
  if (context.json()) {
    context.out() << nlohmann::json({{"action", "appended"},
                                     {"snapshot", watcher.snapshot()},
                                     {"path", path},
                                     {"size", size},
                                     {"event", field_uint(event, "sequence")}})
                         .dump()
                  << "\n";
  } else {
    context.out() << "snapshot " << watcher.snapshot() << " low on space (requested "
                  << size_cell(field_uint(event, "requested_bytes")) << "): appended " << path << " ("
                  << size_cell(size) << ")\n";
  }
  context.out().flush();
  return true;
}

// Applies the watcher's decision for each event; returns false once the snapshot is destroyed.
bool handle_events(Context& context, StorageWatcher& watcher, const nlohmann::json& events) {
  for (const auto& event : events) {
    WatchAction action = watcher.on_event(event);
    switch (action.kind) {
      case WatchAction::append_storage:
        if (!append_next_storage(context, watcher, action.size, event)) watcher.append_failed();
        break;
      case WatchAction::report_corruption:
        context.err() << "nbdsnap watch-storage: snapshot " << watcher.snapshot()
                      << " corrupted: " << action.message << "\n";
        break;
      case WatchAction::stop:
        return false;
      case WatchAction::none:
        break;
    }
  }
  return true;
}

int run_watch_storage(Context& context, const std::vector<std::string>& words) {
  CommandArgs args("watch-storage NAME --grow PATH --step SIZE");
  args.options()("grow", po::value<std::string>()->value_name("PATH"),
                 "new storage files are PATH.1, PATH.2, ...")(
      "step", po::value<std::string>()->value_name("SIZE"),
      "size of each new file (more if an event asks for more)");
  args.positional("NAME", 1);
  if (!parse_or_show_help(context, args, words)) return 0;
  if (!args.has("grow") || !args.has("step")) usage_error("watch-storage needs --grow PATH and --step SIZE");
  uint64_t step = args.size("step");
  if (step == 0) usage_error("--step must be larger than 0");
  StorageWatcher watcher(args.text("NAME"), server_path(args.text("grow")), step);
  ControlClient& control = context.control();
  control.request("snapshot-info", {{"name", watcher.snapshot()}});  // not_found ends here, exit 3
  // Catch up: answer a low_free_space event already in the log that no append followed.
  nlohmann::json reply = control.request("events-wait", {{"after", 0}, {"timeout_ms", 0}});
  uint64_t after = field_uint(reply, "last_sequence");
  nlohmann::json last_relevant;
  for (const auto& event : reply.value("events", nlohmann::json::array())) {
    const std::string type = field_text(event, "type");
    if (field_text(event, "snapshot") == watcher.snapshot() &&
        (type == "low_free_space" || type == "storage_appended")) {
      last_relevant = event;
    }
    after = std::max(after, field_uint(event, "sequence"));
  }
  if (!last_relevant.is_null()) handle_events(context, watcher, nlohmann::json::array({last_relevant}));
  unsigned quiet_rounds = 0;
  for (;;) {
    reply =
        control.request("events-wait", {{"after", after}, {"timeout_ms", kFollowPoll.count()}}, kFollowPoll);
    nlohmann::json events = reply.value("events", nlohmann::json::array());
    for (const auto& event : events) after = std::max(after, field_uint(event, "sequence"));
    if (!handle_events(context, watcher, events)) break;
    if (!events.empty()) {
      quiet_rounds = 0;
    } else if (++quiet_rounds % 5 == 0) {
      // The log is bounded: a destroy may have been pushed out of it. Ask directly now and then.
      try {
        control.request("snapshot-info", {{"name", watcher.snapshot()}});
      } catch (const CliError& error) {
        if (error.code() != ExitCode::not_found) throw;
        break;
      }
    }
  }
  if (!context.json())
    context.out() << "snapshot " << watcher.snapshot() << " destroyed; watch-storage ends\n";
  return 0;
}

}  // namespace

std::vector<CommandSpec> events_command_specs() {
  return {
      {{"events"},
       "events [--after SEQUENCE] [--wait SECONDS] [--follow]",
       "show or follow the server's event log",
       run_events},
      {{"watch-storage"},
       "watch-storage NAME --grow PATH --step SIZE",
       "append storage to a snapshot whenever it runs low (until it is destroyed)",
       run_watch_storage},
  };
}

std::string format_event_header() {
  return pad("SEQ", 7) + pad("TIME", 21) + pad("TYPE", 20) + pad("SNAPSHOT", 16) + pad("ORIGIN", 16) +
         "DETAIL\n";
}

std::string format_event_line(const nlohmann::json& event) {
  std::string line = pad(std::to_string(field_uint(event, "sequence")), 6) + " " +
                     pad(time_cell(field_int(event, "time_unix_ms")), 20) + " " +
                     pad(field_text(event, "type"), 19) + " " +
                     pad(or_dash(field_text(event, "snapshot")), 15) + " " +
                     pad(or_dash(field_text(event, "origin")), 15) + " " + event_detail(event);
  line.erase(line.find_last_not_of(' ') + 1);
  return line + "\n";
}

}  // namespace nbdsnap::cli
