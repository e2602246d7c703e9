// main.cpp — nbdsnapd: reads the configuration, attaches origins, serves NBD and the control socket, and on
// SIGTERM/SIGINT stops cleanly (in-flight requests finished, origins flushed, CBT state saved, exit 0).
#include <malloc.h>
#include <signal.h>
#include <sys/resource.h>

#include <algorithm>
#include <filesystem>
#include <iostream>

#include "control.h"
#include "control_front_end.h"
#include "control_socket.h"
#include "engine.h"
#include "log.h"
#include "origin_files.h"
#include "remote_security.h"
#include "server.h"
#include "server_config.h"

using namespace nbdsnap;

namespace {

// Says what the engine noticed while attaching: above all, a new CBT generation after an unclean stop.
void log_startup_events(Engine& engine) {
  for (const Event& event : engine.events().wait_after(0, std::chrono::milliseconds(0))) {
    if (event.type == EventType::generation_renewed) {
      log_warning("origin " + event.origin + ": new CBT generation (" + event.reason +
                  "); incremental backups must start again with a full backup");
    } else {
      log_debug(std::string("event ") + event_type_name(event.type) + " origin=" + event.origin +
                (event.reason.empty() ? "" : " reason=" + event.reason));
    }
  }
}

// Logs each origin served at start with its CBT generation.
void log_origins(Engine& engine) {
  for (const OriginInfo& info : engine.origins()) {
    log_info("origin " + info.name + ": " + std::to_string(info.size) + " bytes" +
             (info.read_only ? ", read-only" : "") + ", generation " + info.generation + " change " +
             std::to_string(info.change_number));
  }
}

// Flushes every origin and saves CBT state as cleanly stopped. REQUIRES: no NBD I/O any more.
bool save_clean_state(Engine& engine) {
  bool ok = true;
  for (const auto& info : engine.origins()) {
    if (auto origin = engine.find_origin(info.name); origin && !info.read_only) {
      Status status = origin->flush();
      if (!status.is_ok()) {
        log_error("flush of origin " + info.name + ": " + status.to_string());
        ok = false;
      }
    }
  }
  Status status = engine.save_state();
  if (!status.is_ok()) {
    log_error("saving CBT state: " + status.to_string());
    return false;
  }
  return ok;
}

// Each NBD connection holds two descriptors (connection.h), so the usual soft limit of 1024 would run out
// long before --max-connections; any process may raise its soft limit up to the hard one.
void raise_open_file_limit(unsigned max_connections) {
  rlimit limit{};
  if (::getrlimit(RLIMIT_NOFILE, &limit) != 0) return;
  const rlim_t wanted = std::min<rlim_t>(limit.rlim_max, rlim_t(1) << 20);  // the kernel's default nr_open
  if (limit.rlim_cur < wanted) {
    rlimit raised = limit;
    raised.rlim_cur = wanted;
    if (::setrlimit(RLIMIT_NOFILE, &raised) == 0) limit = raised;
  }
  const rlim_t needed = 2 * rlim_t(max_connections) + 256;  // + origins, storage files, control clients
  if (max_connections > 0 && limit.rlim_cur < needed) {
    log_warning("the open file limit (" + std::to_string(limit.rlim_cur) + ") is below the " +
                std::to_string(needed) + " that --max-connections " + std::to_string(max_connections) +
                " may need: raise it (ulimit -n, LimitNOFILE=) or lower --max-connections");
  }
}

}  // namespace

int main(int argc, char** argv) {
  ServerConfig config;
  switch (parse_server_config(argc, argv, config, std::cout, std::cerr)) {
    case ConfigOutcome::exit_success: return 0;
    case ConfigOutcome::exit_failure: return 2;
    case ConfigOutcome::run: break;
  }
  set_log_level(config.log_level);
  ::signal(SIGPIPE, SIG_IGN);
  // A closed terminal must not take down the disks of running VMs: SIGHUP reloads TLS credentials once the
  // server runs (server.h), and is ignored until then.
  ::signal(SIGHUP, SIG_IGN);
  raise_open_file_limit(config.max_connections);
  // Request payloads and chunk buffers are large and short-lived. With glibc's defaults each one is a fresh
  // mmap (or the heap is trimmed after it), so every request pays page faults on memory it just freed; the
  // bench measured 1 MiB writes at 75 MiB/s this way and 517 MiB/s with these thresholds.
  ::mallopt(M_MMAP_THRESHOLD, 64 << 20);
  ::mallopt(M_TRIM_THRESHOLD, 512 << 20);

  std::error_code ec;
  std::filesystem::create_directories(config.engine.state_dir, ec);
  if (ec) {
    log_error("state directory " + config.engine.state_dir + ": " + ec.message());
    return 1;
  }
  Engine engine(config.engine);
  OriginFiles files(engine, config.engine.state_dir);
  if (Status status = files.attach_at_start(config.origins); !status.is_ok()) {
    log_error(status.to_string());
    return 1;
  }
  log_origins(engine);
  log_startup_events(engine);

  RemoteSecurity security(config.security);
  if (Status status = security.load(); !status.is_ok()) {
    log_error(status.to_string());
    return 1;
  }
  Server server(engine, config, security.nbd_credentials());
  server.set_reload_handler([&security] { security.reload(); });
  if (Status status = server.listen(); !status.is_ok()) {
    log_error(status.to_string());
    return 1;
  }
  NbdsnapdFrontEnd front_end(engine, server, files);
  Control control(engine, front_end);
  ControlSocketServer control_socket;
  if (!config.control_path.empty()) {
    std::filesystem::create_directories(std::filesystem::path(config.control_path).parent_path(), ec);
    std::string error;
    if (!control_socket.start(config.control_path,
                              [&control](const std::string& line) { return control.handle_line(line); }, error,
                              config.security.control_group)) {
      log_error("control socket " + config.control_path + ": " + error);
      return 1;
    }
    log_info("control socket on " + config.control_path);
  }
  ControlSocketServer remote_control;
  if (Status status = security.start_remote_control(remote_control, control); !status.is_ok()) {
    log_error(status.to_string());
    return 1;
  }
  log_info("nbdsnapd " NBDSNAP_VERSION " ready with " + std::to_string(engine.origins().size()) + " origins");

  server.run();  // returns after a signal, once every connection has finished (bounded: server.h)

  // For good, not just a wake-up: an events-wait that arrives while the control socket is closing must not
  // hold up saving state for its timeout (up to 24 h).
  engine.events().stop();
  remote_control.stop();
  control_socket.stop();
  const bool saved = save_clean_state(engine);
  log_info(saved ? "CBT state saved; stopped cleanly" : "stopped with errors");
  return saved ? 0 : 1;
}
