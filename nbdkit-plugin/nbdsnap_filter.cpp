// SPDX-License-Identifier: BSD-3-Clause
// nbdsnap_filter.cpp — the nbdkit callbacks of nbdkit-nbdsnap-filter: translation to the engine, nothing
// more.
//
// Design notes. Every export the plugin lists is an origin (plugin_exports.h), and no other name opens: the
// list is recorded in .list_exports and checked in .open. An origin is attached to the engine when it is
// first opened (.prepare, where the plugin's size is known): by a client, or by the filter itself over
// nbdkit's own socket before a control request, so every listed export is an origin once the control socket
// answers. Writes, trims and zeroes of an origin call Origin::begin_write (CBT mark + copy-on-write of old
// chunks read through the plugin) and keep its guard until the plugin's write has returned; reads pass
// through. "ORIGIN@SNAPSHOT" opens the plugin's ORIGIN read-only and is served from the engine's Image, which
// reads unchanged chunks through that connection. The control socket listens from .get_ready (before nbdkit
// forks); the engine and the control socket's threads start in .after_fork (threads must not cross nbdkit's
// fork) and stop in .cleanup; .unload saves CBT state if .cleanup did not.
// No exception crosses a callback: each one catches, reports with nbdkit_error and returns the C error value.
// Engine errors become errno in fail() only.
#include <nbdkit-filter.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <future>
#include <memory>
#include <new>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <dlfcn.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sys/socket.h>
#include <unistd.h>

#include "control.h"
#include "control_socket.h"
#include "engine.h"
#include "export_name.h"
#include "filter_config.h"
#include "filter_front_end.h"
#include "mutex.h"
#include "nbdkit_command_line.h"
#include "next_device.h"
#include "opened_files.h"
#include "plugin_exports.h"
#include "request_errno.h"

namespace nbdsnap {
namespace {

// ---------------------------------------------------------------- state of the filter

FilterConfig config;                              // set in .config / .config_complete, read-only afterwards
std::string startup_dir;                          // nbdkit's working directory before it daemonized
int thread_model = NBDKIT_THREAD_MODEL_PARALLEL;  // nbdkit's, from .get_ready
std::unique_ptr<Engine> engine;                   // from .after_fork to .unload
std::unique_ptr<PluginExports> plugin_exports;
std::unique_ptr<FilterFrontEnd> front_end;
std::unique_ptr<Control> control;
std::unique_ptr<ControlSocketServer> control_server;
int control_listen_fd = -1;  // the control socket, listening from .get_ready until .after_fork serves it
bool state_saved = false;
// A control request stuck on a file system that stopped answering (a snapshot-create opening its difference
// storage there) would hold nbdkit's shutdown, and with it the CBT save of every origin, as long as the file
// system stalls: the stop gives it kControlStopWait (nbdsnapd's bound too), then leaves it behind. Its
// thread may still use the engine and the control objects, so they are never destroyed then, and the module
// stays mapped after nbdkit's dlclose (keep_module_mapped).
constexpr std::chrono::seconds kControlStopWait{15};
bool control_left_behind = false;

// One client connection: an origin export or an image export.
struct Connection {
  ExportName name;
  std::string plugin_export;       // the plugin's export it reads and writes (.open)
  std::shared_ptr<Origin> origin;  // origin exports
  std::shared_ptr<Image> image;    // image exports
  std::unique_ptr<NextDevice> source;
  // The file the plugin opened, when the filter knows the file behind the export (opened_files.h).
  std::string file_identity;
  bool opened_another_file = false;  // the plugin's open did not open the file the export's path names
  bool is_image() const { return name.is_image(); }
};

// One plugin open of a known file at a time, so that the files it adds to the process are its own; the next
// waits at most 10 s behind one whose file system stalls.
PluginOpenTurn plugin_open_turn(std::chrono::seconds(10));

Connection& connection_of(void* handle) {
  return *static_cast<Connection*>(handle);
}

// ---------------------------------------------------------------- errors

// The one place an engine Status becomes an nbdkit error and errno.
int fail(const Status& status, int* err) {
  nbdkit_error("nbdsnap: %s", status.to_string().c_str());
  int code = to_request_errno(status);  // nbdkit sends an errno NBD has no value for as EINVAL
  if (err != nullptr) *err = code;
  errno = code;
  return -1;
}

// Runs a callback body; exceptions become an nbdkit error and `failed` (never cross into C).
template <typename Result, typename Body>
Result guarded(Result failed, int* err, Body&& body) noexcept {
  try {
    return body();
  } catch (const std::bad_alloc&) {
    nbdkit_error("nbdsnap: out of memory");
    if (err != nullptr) *err = ENOMEM;
  } catch (const std::exception& e) {
    nbdkit_error("nbdsnap: unexpected error: %s", e.what());
    if (err != nullptr) *err = EIO;
  } catch (...) {
    nbdkit_error("nbdsnap: unexpected error");
    if (err != nullptr) *err = EIO;
  }
  return failed;
}

// ---------------------------------------------------------------- lifecycle

void nbdsnap_load() {
  char cwd[4096];
  if (getcwd(cwd, sizeof cwd) != nullptr) startup_dir = cwd;
}

int nbdsnap_config(nbdkit_next_config* next, nbdkit_backend* nxdata, const char* key, const char* value) {
  return guarded(-1, nullptr, [&] {
    if (std::string(key).rfind(kParameterPrefix, 0) != 0) {
      config.note_plugin_parameter(key, value);
      return next(nxdata, key, value);
    }
    if (Status s = config.apply(key, value); !s) {
      nbdkit_error("nbdsnap: %s", s.message().c_str());
      return -1;
    }
    return 0;
  });
}

int nbdsnap_config_complete(nbdkit_next_config_complete* next, nbdkit_backend* nxdata) {
  return guarded(-1, nullptr, [&] {
    if (Status s = config.complete(); !s) {
      nbdkit_error("nbdsnap: %s", s.message().c_str());
      return -1;
    }
    return next(nxdata);
  });
}

int nbdsnap_thread_model() {
  return NBDKIT_THREAD_MODEL_PARALLEL;
}

// The control socket exists from here on, before nbdkit forks: its parent returns (daemonizing) and its --run
// command starts with the socket in place, and a client's first request waits in the backlog until
// .after_fork serves it (it used to fail, now and then, with "No such file or directory": a hostile tester).
int nbdsnap_get_ready(int model) {
  thread_model = model;
  if (config.control_socket.empty()) return 0;
  std::string error;
  control_listen_fd = ControlSocketServer::listen_unix(config.control_socket, error);
  if (control_listen_fd < 0) {
    nbdkit_error("nbdsnap: control socket: %s", error.c_str());
    return -1;
  }
  return 0;
}

// The engine does not refuse one file as the difference storage of two snapshots: never hand it out twice.
Status check_storage_unused(const std::string& path) {
  for (const SnapshotInfo& snapshot : engine->snapshots())
    for (const StorageAreaInfo& area : snapshot.storage)
      if (area.path == path)
        return {Errc::busy, "default difference storage " + path + " is in use by snapshot '" +
                                snapshot.name + "'; destroy it or give storage explicitly"};
  return Status::ok();
}

// Whether answering the request needs the plugin's export list read again first. Reading it is an NBD
// connection to nbdkit itself (a handshake and NBD_OPT_LIST), which under a busy server costs milliseconds:
// paid on every request it made a snapshot-take under load slow (bench T8). So: a request that names origins
// reads the list only when one of them is not attached yet; one that lists origins (origins, stats) or that
// the filter does not know always reads it; one about snapshots only (their origins are attached) never.
bool needs_export_list(const nlohmann::json& request) {
  auto command = request.find("command");
  if (command == request.end() || !command->is_string()) return true;
  const std::string& name = command->get_ref<const std::string&>();
  static const std::set<std::string, std::less<>> kSnapshotsOnly = {
      "version",       "events-wait",   "snapshot-take",   "snapshot-destroy",
      "snapshot-info", "snapshot-list", "snapshot-remove", "snapshot-append-storage"};
  if (kSnapshotsOnly.count(name)) return false;
  std::vector<std::string> named;
  auto add = [&](const nlohmann::json& value) {
    if (value.is_string()) named.push_back(value.get<std::string>());
  };
  if (auto origin = request.find("origin"); origin != request.end()) add(*origin);
  if (auto origins = request.find("origins"); origins != request.end() && origins->is_array())
    for (const auto& value : *origins) add(value);
  if ((name == "origin-info" || name == "origin-detach") && request.contains("name")) add(request["name"]);
  if (named.empty()) return true;
  return std::any_of(named.begin(), named.end(),
                     [](const std::string& origin) { return !engine->find_origin(origin); });
}

// Every export the plugin lists is an origin before a control request that looks at it is answered, so CBT
// state is there without any client having opened the export.
void attach_listed_origins(const nlohmann::json& request) {
  if (!needs_export_list(request)) return;
  for (const std::string& failure : front_end->attach_listed_origins())
    nbdkit_debug("nbdsnap: %s", failure.c_str());
}

// A snapshot-create without storage or limit gets the configured defaults.
Status apply_snapshot_defaults(nlohmann::json& request) {
  auto command = request.find("command");
  auto name = request.find("name");
  if (command == request.end() || *command != "snapshot-create" || name == request.end() ||
      !name->is_string() || !check_object_name("snapshot", name->get<std::string>()))
    return Status::ok();
  auto storage = request.find("storage");
  if (config.has_default_storage() &&
      (storage == request.end() || (storage->is_array() && storage->empty()))) {
    StorageSpec spec = config.default_storage_for(name->get<std::string>());
    if (Status s = check_storage_unused(spec.path); !s) return s;
    nlohmann::json entry = {{"path", spec.path}};
    if (spec.is_range()) {
      entry["offset"] = spec.offset;
      entry["length"] = spec.length;
    } else {
      entry["size"] = spec.size;
      if (spec.sparse) entry["sparse"] = true;  // nbdsnap-storage-sparse=true
    }
    request["storage"] = nlohmann::json::array({entry});
  }
  if (config.storage_limit != 0 && !request.contains("limit")) request["limit"] = config.storage_limit;
  return Status::ok();
}

// Control requests as they arrive on the socket. A reply may quote file names that are not UTF-8: those bytes
// are replaced rather than thrown on, as Control::handle_line does.
std::string handle_control_line(const std::string& line) {
  nlohmann::json request = nlohmann::json::parse(line, nullptr, false);
  if (request.is_discarded() || !request.is_object()) return control->handle_line(line);
  attach_listed_origins(request);
  const Status defaults = apply_snapshot_defaults(request);
  const nlohmann::json reply = defaults ? control->handle(request) : error_reply(defaults);
  return reply.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

// Starts the control server with every signal blocked in its threads: signals stay with nbdkit's threads.
bool start_control_server(std::string& error) {
  sigset_t all, previous;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &previous);
  control_server = std::make_unique<ControlSocketServer>();
  ControlSocketServer::Limits limits;
  limits.max_sessions = config.control_max_sessions;
  limits.max_sessions_option = "nbdkit nbdsnap-control-max-sessions";
  control_server->set_limits(limits);
  bool started = control_server->serve_listening(std::exchange(control_listen_fd, -1), config.control_socket,
                                                 handle_control_line, error);
  pthread_sigmask(SIG_SETMASK, &previous, nullptr);
  return started;
}

int nbdsnap_after_fork(nbdkit_backend*) {
  return guarded(-1, nullptr, [&] {
    EngineConfig engine_config = config.tuning;  // sanitized in .config_complete
    engine_config.state_dir = config.state_dir;
    engine_config.served_origin_files = config.served_files;
    // nbdkit has no info level: the engine's lines (how chunks are preserved) go to its debug output (-v).
    engine_config.log_info = [](const std::string& line) { nbdkit_debug("nbdsnap: %s", line.c_str()); };
    engine = std::make_unique<Engine>(std::move(engine_config));
    plugin_exports = std::make_unique<PluginExports>(config.default_origin);
    // Known before any client: under -o no export name reaches nbdkit, so no image URI may be handed out
    // (an agent's libnbd would reach the live origin), and the filter never connects to itself then.
    if (nbdkit_runs_oldstyle()) {
      plugin_exports->record_oldstyle();
      nbdkit_debug("nbdsnap: nbdkit speaks the oldstyle handshake (-o): one export, no image URIs");
    }
    front_end = std::make_unique<FilterFrontEnd>(*engine, *plugin_exports, startup_dir, config.control_socket,
                                                 self_connection_for_thread_model(thread_model));
    control = std::make_unique<Control>(*engine, *front_end);
    if (config.control_socket.empty()) return 0;
    std::string error;
    if (!start_control_server(error)) {
      nbdkit_error("nbdsnap: control socket: %s", error.c_str());
      return -1;
    }
    nbdkit_debug("nbdsnap: control protocol on %s", config.control_socket.c_str());
    return 0;
  });
}

// dlopen of this module with RTLD_NODELETE: nbdkit's dlclose after .unload then leaves it mapped, for the
// thread of a control request left behind.
void keep_module_mapped() {
  Dl_info self{};
  if (::dladdr(reinterpret_cast<void*>(&keep_module_mapped), &self) != 0 && self.dli_fname != nullptr)
    (void)::dlopen(self.dli_fname, RTLD_NOW | RTLD_NOLOAD | RTLD_NODELETE);
}

// Stops the control server. Stopping the event log first is permanent: a handler in events-wait returns at
// once, and so does one whose request arrives while the server stops, so the stop joins every client
// promptly, but for one whose file system does not answer (kControlStopWait).
void stop_control_server() {
  if (!control_server) return;
  engine->events().stop();
  if (control_server->stop_within(kControlStopWait)) {
    control_server.reset();
    return;
  }
  nbdkit_error(
      "nbdsnap: a control request still ran %lld s into the stop (its file system may not be "
      "answering); stopping without it",
      static_cast<long long>(kControlStopWait.count()));
  control_left_behind = true;
  keep_module_mapped();
  (void)control_server.release();  // see control_left_behind
}

void save_state_once() {
  if (!engine || state_saved) return;
  state_saved = true;
  if (Status s = engine->save_state(); !s)
    nbdkit_error("nbdsnap: saving CBT state: %s", s.to_string().c_str());
}

void nbdsnap_cleanup(nbdkit_backend*) {
  guarded(0, nullptr, [&] {
    stop_control_server();
    save_state_once();
    return 0;
  });
}

// Destroys the engine, which waits for the difference-storage writes of its snapshots still in flight (their
// writeback): on a file system that does not answer, as long as it stalls (attack15 F2). The CBT state is
// saved by then; the wait gets kControlStopWait, then the log says why nbdkit still waits and the engine is
// left to end on its own thread (the module stays mapped for it). nbdkit's exit itself still waits in the
// kernel for the stalled write.
void end_engine() {
  auto ended = std::make_shared<std::promise<void>>();
  std::future<void> ended_future = ended->get_future();
  std::thread ender([doomed = engine.release(), ended] {
    delete doomed;
    ended->set_value();
  });
  if (ended_future.wait_for(kControlStopWait) == std::future_status::ready) {
    ender.join();
    return;
  }
  nbdkit_error(
      "nbdsnap: CBT state saved, but difference-storage writes still ran %lld s into the unload (their "
      "file system may not be answering); nbdkit ends once they do",
      static_cast<long long>(kControlStopWait.count()));
  keep_module_mapped();
  ender.detach();
}

void nbdsnap_unload() {
  guarded(0, nullptr, [&] {
    if (control_listen_fd >= 0) {  // nbdkit gave up between .get_ready and .after_fork
      ::close(std::exchange(control_listen_fd, -1));
      ::unlink(config.control_socket.c_str());
    }
    if (engine) stop_control_server();
    save_state_once();
    if (control_left_behind) {  // its thread may still use them: they stay until the process ends
      (void)control.release();
      (void)front_end.release();
      (void)plugin_exports.release();
      (void)engine.release();
      nbdkit_debug("nbdsnap: unloaded, CBT state saved, a control request left behind");
      return 0;
    }
    control.reset();
    front_end.reset();
    plugin_exports.reset();
    end_engine();
    nbdkit_debug("nbdsnap: unloaded, CBT state saved");
    return 0;
  });
}

// ---------------------------------------------------------------- exports and connections

// The plugin's list is recorded (it decides which names are origins), then the images are added to it.
int nbdsnap_list_exports(nbdkit_next_list_exports* next, nbdkit_backend* nxdata, int readonly, int is_tls,
                         nbdkit_exports* exports) {
  return guarded(-1, nullptr, [&] {
    if (next(nxdata, readonly, exports) == -1) return -1;
    if (!engine) return 0;
    std::vector<std::string> listed;
    for (size_t i = 0, n = nbdkit_exports_count(exports); i < n; ++i)
      listed.emplace_back(nbdkit_get_export(exports, i).name);
    plugin_exports->record(listed);
    for (const std::string& name : engine->image_export_names()) {
      if (nbdkit_add_export(exports, name.c_str(), "nbdsnap snapshot image") == -1) return -1;
    }
    return 0;
  });
}

// Whether the connection being opened is one of the filter's own to nbdkit (self_client.h): its peer is a
// Unix socket of this very process, or a TCP address one of its live clients is bound to. Asked only while
// such a client lives, so other opens pay nothing, and nbdkit_peer_name never runs (and logs an error) for a
// connection that has no socket (nbdkit -s).
bool opened_by_own_connection() {
  if (SelfClient::live_count() == 0) return false;
  sockaddr_storage peer{};
  socklen_t length = sizeof peer;
  if (nbdkit_peer_name(reinterpret_cast<sockaddr*>(&peer), &length) == -1) return false;
  if (peer.ss_family == AF_UNIX) return nbdkit_peer_pid() == ::getpid();
  if (peer.ss_family == AF_INET)
    return SelfClient::is_own_tcp_peer(reinterpret_cast<const sockaddr_in&>(peer));
  return false;
}

void* nbdsnap_open(nbdkit_next_open* next, nbdkit_context* context, int readonly, const char* exportname,
                   int is_tls) {
  return guarded<void*>(nullptr, nullptr, [&]() -> void* {
    if (!engine) {
      nbdkit_error("nbdsnap: the engine is not running");
      return nullptr;
    }
    auto connection = std::make_unique<Connection>();
    std::string requested = exportname;
    if (requested.empty()) {
      connection->name.origin = config.default_origin;
    } else if (Status s = parse_export_name(requested, connection->name); !s) {
      nbdkit_error("nbdsnap: export '%s' cannot be served: %s", exportname, s.message().c_str());
      return nullptr;
    }
    // Only the plugin's own exports are origins (and images of them): a name the plugin merely accepts
    // could be the same disk under a second name.
    std::string plugin_export;
    if (Status s = front_end->plugin_export_for(requested, connection->name.origin,
                                                opened_by_own_connection(), plugin_export);
        !s) {
      nbdkit_error("nbdsnap: export '%s' is refused: %s", exportname, s.message().c_str());
      return nullptr;
    }
    if (connection->is_image()) {
      const ExportName& name = connection->name;
      if (Status s = engine->find_image(name.origin, name.snapshot, connection->image); !s) {
        nbdkit_error(
            "nbdsnap: no snapshot image '%s' (snapshot '%s' of origin '%s' is unknown or not taken): %s",
            exportname, name.snapshot.c_str(), name.origin.c_str(), s.message().c_str());
        return nullptr;
      }
      readonly = 1;  // the plugin is only read for an image; its writes go to difference storage
    }
    // Which file the plugin opens (opened_files.h), where the plugin's parameters name one: the file the
    // path names before and after the open, and one the open added. A path that names no file before the
    // open names no file the open could be checked against (it was renamed away meanwhile, or the plugin's
    // open fails anyway): refused.
    const ServedOriginFiles& files = *config.served_files;
    if (files.path_of_export(plugin_export).empty()) {
      if (next(context, readonly, plugin_export.c_str()) == -1) return nullptr;
    } else {
      // The path is asked before the turn and again after it, without it: it may be on a file system that
      // stalls, and then only this open waits for it. In its turn, only this open adds files to the process.
      std::string named = files.identity_of_export(plugin_export);
      {
        PluginOpenTurn::Holder turn;
        if (Status s = plugin_open_turn.take(plugin_export, turn); !s) {
          nbdkit_error("nbdsnap: %s", s.message().c_str());
          return nullptr;
        }
        const OpenedFileCheck check(named);
        if (next(context, readonly, plugin_export.c_str()) == -1) return nullptr;
        connection->opened_another_file = named.empty() || !check.opened();
      }
      connection->opened_another_file =
          connection->opened_another_file || files.identity_of_export(plugin_export) != named;
      connection->file_identity = std::move(named);
    }
    connection->plugin_export = std::move(plugin_export);
    return connection.release();
  });
}

int nbdsnap_prepare(nbdkit_next* next, void* handle, int readonly) {
  return guarded(-1, nullptr, [&] {
    Connection& c = connection_of(handle);
    int64_t size = next->get_size(next);
    if (size == -1) return -1;
    c.source = std::make_unique<NextDevice>(next, static_cast<uint64_t>(size));
    // The file behind the export, where the plugin's parameters say (file=, dir=): one file is one origin
    // however many names reach it (hard and symbolic links), never difference storage too, and always the
    // file the origin was attached with (an image reads its unchanged chunks through the export).
    if (c.opened_another_file)
      return fail(
          {Errc::bad_state, "export '" + c.plugin_export +
                                "': the plugin opened another file than the one its path names (was "
                                "a file in the plugin's directory renamed meanwhile?); connect again"},
          nullptr);
    const std::string& identity = c.file_identity;
    if (c.is_image()) {
      if (Status s = front_end->open_image(handle, format_export_name(c.name.origin, c.name.snapshot),
                                           c.name.origin, identity);
          !s)
        return fail(s, nullptr);
      return 0;
    }
    int can_write = next->can_write(next);
    if (can_write == -1) return -1;
    bool read_only = readonly || can_write == 0;
    // The plugin's minimum block size (0 when it states none): chunks and tracking blocks are never smaller.
    uint32_t minimum = 0, preferred = 0, maximum = 0;
    if (next->block_size(next, &minimum, &preferred, &maximum) == -1) return -1;
    if (Status s = front_end->open_origin(handle, c.name.origin, size, minimum, read_only, identity,
                                          config.served_files->path_of_export(c.plugin_export), c.origin);
        !s)
      return fail(s, nullptr);
    return 0;
  });
}

void nbdsnap_close(void* handle) {
  guarded(0, nullptr, [&] {
    if (front_end) front_end->close_client(handle);
    delete &connection_of(handle);
    return 0;
  });
}

// ---------------------------------------------------------------- what the client is told

int64_t nbdsnap_get_size(nbdkit_next* next, void* handle) {
  Connection& c = connection_of(handle);
  return c.is_image() ? static_cast<int64_t>(c.image->size()) : next->get_size(next);
}

const char* nbdsnap_export_description(nbdkit_next* next, void* handle) {
  Connection& c = connection_of(handle);
  if (!c.is_image()) return next->export_description(next);
  return nbdkit_printf_intern("snapshot '%s' of origin '%s'", c.name.snapshot.c_str(), c.name.origin.c_str());
}

int nbdsnap_can_write(nbdkit_next* next, void* handle) {
  Connection& c = connection_of(handle);
  return c.is_image() ? c.image->writable() : next->can_write(next);
}

int nbdsnap_can_flush(nbdkit_next* next, void* handle) {
  return connection_of(handle).is_image() ? 0 : next->can_flush(next);
}

int nbdsnap_can_trim(nbdkit_next* next, void* handle) {
  return connection_of(handle).is_image() ? 0 : next->can_trim(next);
}

int nbdsnap_can_zero(nbdkit_next* next, void* handle) {
  Connection& c = connection_of(handle);
  if (!c.is_image()) return next->can_zero(next);
  return c.image->writable() ? NBDKIT_ZERO_NATIVE : NBDKIT_ZERO_NONE;
}

// Every export advertises fast zero. A client may send the fast-zero flag whatever was advertised, and nbdkit
// 1.32 (Debian 12) then aborts on an assertion in backend_zero, ending every origin's tracking. The NBD spec
// lets a server that cannot zero faster than it writes fail a fast zero at once with ENOTSUP (the client then
// writes zeros); nbdsnap_zero does that unless the plugin below zeroes fast itself.
int nbdsnap_can_fast_zero(nbdkit_next*, void*) {
  return 1;
}

int nbdsnap_can_extents(nbdkit_next* next, void* handle) {
  return connection_of(handle).is_image() ? 1 : next->can_extents(next);
}

int nbdsnap_can_fua(nbdkit_next* next, void* handle) {
  return connection_of(handle).is_image() ? NBDKIT_FUA_NONE : next->can_fua(next);
}

// Read-only images are consistent across connections; origins are as consistent as the plugin says.
int nbdsnap_can_multi_conn(nbdkit_next* next, void* handle) {
  Connection& c = connection_of(handle);
  return c.is_image() ? !c.image->writable() : next->can_multi_conn(next);
}

int nbdsnap_can_cache(nbdkit_next* next, void* handle) {
  return connection_of(handle).is_image() ? NBDKIT_CACHE_NONE : next->can_cache(next);
}

// ---------------------------------------------------------------- data

int nbdsnap_pread(nbdkit_next* next, void* handle, void* buf, uint32_t count, uint64_t offset, uint32_t flags,
                  int* err) {
  return guarded(-1, err, [&] {
    Connection& c = connection_of(handle);
    if (!c.is_image()) {
      if (Status s = c.origin->check_attached(); !s) return fail(s, err);
      const int rc = next->pread(next, buf, count, offset, flags, err);
      if (rc == 0) c.origin->count_read(count);  // the engine counts what it does not see (io_counters.h)
      return rc;
    }
    if (Status s = c.image->read(buf, count, offset, c.source.get()); !s) return fail(s, err);
    return 0;
  });
}

// An origin write: CBT and copy-on-write first, then `write_to_plugin` while the write gate is held. A
// detached origin's gate is closed: begin_write fails (EIO), so nothing reaches the plugin untracked.
// A write that met ENOSPC asks the engine whether a snapshot gives way (Origin::make_room_for_write: the
// rule lives in core/, the plugin's file system is unknown to it) and is issued once more, under the same
// guard, if one did.
template <typename WriteToPlugin>
int write_origin(Connection& c, uint64_t offset, uint32_t count, int* err, WriteToPlugin&& write_to_plugin) {
  Origin::WriteGuard guard;
  if (Status s = c.origin->begin_write(offset, count, c.source.get(), guard); !s) return fail(s, err);
  int rc = write_to_plugin();
  if (rc == -1 && *err == ENOSPC && c.origin->make_room_for_write(offset, count, guard))
    rc = write_to_plugin();
  return rc;
}

int nbdsnap_pwrite(nbdkit_next* next, void* handle, const void* buf, uint32_t count, uint64_t offset,
                   uint32_t flags, int* err) {
  return guarded(-1, err, [&] {
    Connection& c = connection_of(handle);
    if (c.is_image()) {
      if (Status s = c.image->write(buf, count, offset, c.source.get()); !s) return fail(s, err);
      return 0;
    }
    return write_origin(c, offset, count, err,
                        [&] { return next->pwrite(next, buf, count, offset, flags, err); });
  });
}

int nbdsnap_trim(nbdkit_next* next, void* handle, uint32_t count, uint64_t offset, uint32_t flags, int* err) {
  return guarded(-1, err, [&] {
    Connection& c = connection_of(handle);
    return write_origin(c, offset, count, err, [&] { return next->trim(next, count, offset, flags, err); });
  });
}

int nbdsnap_zero(nbdkit_next* next, void* handle, uint32_t count, uint64_t offset, uint32_t flags, int* err) {
  return guarded(-1, err, [&] {
    Connection& c = connection_of(handle);
    if ((flags & NBDKIT_FLAG_FAST_ZERO) && (c.is_image() || next->can_fast_zero(next) != 1)) {
      *err = ENOTSUP;  // see nbdsnap_can_fast_zero; before copy-on-write, so nothing is copied for it
      return -1;
    }
    if (c.is_image()) {
      if (Status s = c.image->zero(offset, count, c.source.get()); !s) return fail(s, err);
      return 0;
    }
    return write_origin(c, offset, count, err, [&] { return next->zero(next, count, offset, flags, err); });
  });
}

int nbdsnap_flush(nbdkit_next* next, void* handle, uint32_t flags, int* err) {
  return guarded(-1, err, [&] {
    Connection& c = connection_of(handle);
    if (!c.is_image()) {
      if (Status s = c.origin->check_attached(); !s) return fail(s, err);
    }
    return next->flush(next, flags, err);
  });
}

int nbdsnap_extents(nbdkit_next* next, void* handle, uint32_t count, uint64_t offset, uint32_t flags,
                    nbdkit_extents* extents, int* err) {
  return guarded(-1, err, [&] {
    Connection& c = connection_of(handle);
    if (!c.is_image()) {
      if (Status s = c.origin->check_attached(); !s) return fail(s, err);
      return next->extents(next, count, offset, flags, extents, err);
    }
    std::vector<Extent> found;
    if (Status s = c.image->extents(offset, count, found, c.source.get()); !s) return fail(s, err);
    for (const Extent& e : found) {
      uint32_t type = (e.hole ? NBDKIT_EXTENT_HOLE : 0) | (e.zero ? NBDKIT_EXTENT_ZERO : 0);
      if (nbdkit_add_extent(extents, e.offset, e.length, type) == -1) {
        *err = errno;
        return -1;
      }
      if (flags & NBDKIT_FLAG_REQ_ONE) break;
    }
    return 0;
  });
}

// ---------------------------------------------------------------- registration

nbdkit_filter make_filter() {
  nbdkit_filter f{};
  f.name = "nbdsnap";
  f.longname = "nbdkit nbdsnap filter";
  f.description =
      "Block-device snapshots and change block tracking for any plugin: every listed export is an origin, "
      "ORIGIN@SNAPSHOT serves a snapshot image, control on a Unix socket.";
  f.load = nbdsnap_load;
  f.unload = nbdsnap_unload;
  f.config = nbdsnap_config;
  f.config_complete = nbdsnap_config_complete;
  f.config_help = config_help();
  f.thread_model = nbdsnap_thread_model;
  f.get_ready = nbdsnap_get_ready;
  f.after_fork = nbdsnap_after_fork;
  f.cleanup = nbdsnap_cleanup;
  f.list_exports = nbdsnap_list_exports;
  f.open = nbdsnap_open;
  f.close = nbdsnap_close;
  f.prepare = nbdsnap_prepare;
  f.get_size = nbdsnap_get_size;
  f.export_description = nbdsnap_export_description;
  f.can_write = nbdsnap_can_write;
  f.can_flush = nbdsnap_can_flush;
  f.can_trim = nbdsnap_can_trim;
  f.can_zero = nbdsnap_can_zero;
  f.can_fast_zero = nbdsnap_can_fast_zero;
  f.can_extents = nbdsnap_can_extents;
  f.can_fua = nbdsnap_can_fua;
  f.can_multi_conn = nbdsnap_can_multi_conn;
  f.can_cache = nbdsnap_can_cache;
  f.pread = nbdsnap_pread;
  f.pwrite = nbdsnap_pwrite;
  f.trim = nbdsnap_trim;
  f.zero = nbdsnap_zero;
  f.flush = nbdsnap_flush;
  f.extents = nbdsnap_extents;
  return f;
}

nbdkit_filter filter = make_filter();

}  // namespace
}  // namespace nbdsnap

// nbdkit looks up filter_init; NBDKIT_REGISTER_FILTER stamps the API version into the struct.
using nbdsnap::filter;
NBDKIT_REGISTER_FILTER(filter)
