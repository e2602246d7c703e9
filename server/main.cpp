// SPDX-License-Identifier: BSD-3-Clause
// main.cpp — nbdsnapd: reads the configuration, attaches origins, serves NBD and the control socket, and on
// SIGTERM/SIGINT stops cleanly (in-flight requests finished, origins flushed, CBT state saved, exit 0).
#include <malloc.h>
#include <signal.h>
#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <sstream>
#include <thread>

#include "control.h"
#include "control_front_end.h"
#include "control_socket.h"
#include "engine.h"
#include "engine_event_log.h"
#include "log.h"
#include "origin_files.h"
#include "remote_security.h"
#include "server.h"
#include "server_config.h"
#include "standard_fds.h"
#include "state_directory.h"
#include "stop_deadline.h"
#include "systemd_service.h"

using namespace nbdsnap;

namespace {

// How long a stop waits for the control requests still running once their connections are shut down. A
// request waits at most 10 s for a busy origin or snapshot (control.md); longer, it waits on a file system
// that does not answer.
constexpr std::chrono::seconds kControlStopWait{15};

// SIGHUP: the log level is read again from the command line and configuration file (nothing else of the
// file is applied: listeners, origins and limits need a restart). A file that no longer parses changes
// nothing.
void reload_log_level(int argc, char** argv) {
  ServerConfig fresh;
  std::ostringstream out;
  std::ostringstream err;
  if (parse_server_config(argc, argv, fresh, out, err) != ConfigOutcome::run) {
    log_error("configuration not reloaded, the log level stays: " + err.str());
    return;
  }
  set_log_level(fresh.log_level);
  log_info(std::string("log level ") + log_level_name(fresh.log_level));
}

// systemd's sockets replace the configured ones (systemd_service.h). A configured address systemd did not
// pass is not served: say so, since the configuration file alone no longer tells what nbdsnapd listens on.
void use_activated_sockets(const ActivatedSockets& activated, ServerConfig& config) {
  if (!activated.nbd.empty()) {
    std::vector<std::string> passed;
    for (const ActivatedSocket& socket : activated.nbd)
      passed.push_back(format_listen_address(socket.address));
    for (const ListenAddress& address : config.listen) {
      const std::string text = format_listen_address(address);
      if (std::find(passed.begin(), passed.end(), text) == passed.end()) {
        log_warning("listen " + text +
                    " is not served: under socket activation nbdsnapd serves the NBD sockets " +
                    "systemd passes (add ListenStream= to nbdsnapd.socket)");
      }
    }
    config.listen.clear();
    for (const ActivatedSocket& socket : activated.nbd) config.listen.push_back(socket.address);
  }
  if (activated.control_fd >= 0) config.control_path = activated.control_path;
}

// Says which snapshots a stop ends: snapshots live only as long as the process (their storage goes with
// them).
void log_dropped_snapshots(Engine& engine) {
  for (const SnapshotInfo& info : engine.snapshots()) {
    std::string origins;
    for (const std::string& origin : info.origins) origins += (origins.empty() ? "" : ",") + origin;
    log_info("snapshot " + info.name + " (" + snapshot_state_name(info.state) + ", origins " + origins +
             ") dropped at shutdown: snapshots do not outlive nbdsnapd");
  }
}

// The CBT state directory: a given --state-dir is created (mode 0700) only in an existing parent, as the
// filter's nbdsnap-state-dir (a typo must not become a tree of directories); the default one, under the
// runtime or home directory, is created with its parents.
Status prepare_state(const ServerConfig& config) {
  if (config.state_dir_given) return prepare_state_directory(config.engine.state_dir, "--state-dir ");
  std::error_code ec;
  std::filesystem::create_directories(config.engine.state_dir, ec);
  if (ec) return {Errc::io_error, "state directory " + config.engine.state_dir + ": " + ec.message()};
  return Status::ok();
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
  // stderr closed: the log must not land in an origin's disk image (standard_fds.h).
  if (!keep_standard_fds_open()) return 2;
  ServerConfig config;
  switch (parse_server_config(argc, argv, config, std::cout, std::cerr)) {
    case ConfigOutcome::exit_success:
      return 0;
    case ConfigOutcome::exit_failure:
      return 2;
    case ConfigOutcome::run:
      break;
  }
  set_log_level(config.log_level);
  detect_journal_stderr();
  for (const std::string& warning : config.security.warnings) log_warning(warning);
  ActivatedSockets activated;
  if (Status status = take_activated_sockets(activated); !status.is_ok()) {
    log_error(status.to_string());
    return 2;
  }
  use_activated_sockets(activated, config);
  ::signal(SIGPIPE, SIG_IGN);
  // A closed terminal must not take down the disks of running VMs: SIGHUP reloads TLS credentials once the
  // server runs (server.h), and is ignored until then.
  ::signal(SIGHUP, SIG_IGN);
  raise_open_file_limit(config.max_connections);
  // Request payloads are large and short-lived. With glibc's defaults each one is a fresh mmap (or the heap
  // is trimmed after it), so every request pays page faults on memory it just freed; the bench measured 1 MiB
  // writes at 75 MiB/s this way and 517 MiB/s with these thresholds. The price is that freed heap stays with
  // the process, so chunk buffers, the large ones, come from a pool of our own that the engine unmaps at
  // destroy (core/chunk_buffer.h), and the heap is trimmed then too (bench T6, after destroying a snapshot of
  // a 16 TiB origin with 10,000 chunks copied: 81 MiB stayed with malloc's buffers and malloc_trim, 14 MiB
  // with the pool alone, 10 MiB with both; 11 MiB before the take).
  ::mallopt(M_MMAP_THRESHOLD, 64 << 20);
  ::mallopt(M_TRIM_THRESHOLD, 512 << 20);
  config.engine.memory_released = [] { ::malloc_trim(0); };
  config.engine.log_info = [](const std::string& line) { log_info(log_safe_text(line)); };

  if (Status s = prepare_state(config); !s) {
    log_error(s.message());
    return 1;
  }
  // Credentials are read before any origin opens: a typo in a key file must not cost the origins' CBT.
  RemoteSecurity security(config.security);
  if (Status status = security.load(); !status.is_ok()) {
    log_error(status.to_string());
    return 1;
  }
  Engine engine(config.engine);
  EngineEventLog event_log(engine.events());  // stopped before the engine goes (declared after it)
  event_log.start();
  // A start that fails once origins are attached has served nothing: their CBT state is saved as cleanly
  // stopped, so the next start keeps the generation (else every disk would need a full backup after a typo).
  const auto failed_start = [&engine](const std::string& message) {
    log_error(message);
    save_clean_state(engine);
    return 1;
  };
  OriginFiles files(engine, config.engine.state_dir, config.cache);
  if (Status status = files.attach_at_start(config.origins); !status.is_ok()) {
    return failed_start(status.to_string());
  }
  log_origins(engine);

  Server server(engine, config, security.nbd_credentials());
  server.set_reload_handler([&security, argc, argv] {
    reload_log_level(argc, argv);
    security.reload();
  });
  if (Status status = server.listen(activated.nbd); !status.is_ok()) {
    return failed_start(status.to_string());
  }
  NbdsnapdFrontEnd front_end(engine, server, files);
  Control control(engine, front_end);
  ControlSocketServer control_socket;
  control_socket.set_warning_log([](const std::string& message) { log_warning(message); });
  control_socket.set_limits(control_socket_limits(config.security));  // its session cap (no idle timeout)
  const auto handle_line = [&control](const std::string& line) { return control.handle_line(line); };
  if (activated.control_fd >= 0) {
    std::string error;
    if (!control_socket.adopt(activated.control_fd, config.control_path, handle_line, error)) {
      return failed_start("control socket " + config.control_path + ": " + error);
    }
    log_info("control socket on " + config.control_path + " (socket from systemd)");
  } else if (!config.control_path.empty()) {
    std::error_code ec;  // a failure shows when the socket is bound
    std::filesystem::create_directories(std::filesystem::path(config.control_path).parent_path(), ec);
    std::string error;
    if (!control_socket.start(config.control_path, handle_line, error, config.security.control_group)) {
      return failed_start("control socket " + config.control_path + ": " + error);
    }
    log_info("control socket on " + config.control_path);
  }
  ControlSocketServer remote_control;
  security.set_remote_export_uri([&server](const std::string& export_name, std::string& hint) {
    return server.remote_export_uri(export_name, hint);
  });
  if (Status status = security.start_remote_control(remote_control, control); !status.is_ok()) {
    control_socket.stop();  // no control command may run while the state is saved
    return failed_start(status.to_string());
  }
  log_info("nbdsnapd " NBDSNAP_VERSION " ready with " + std::to_string(engine.origins().size()) + " origins");
  notify_service_manager("READY=1");

  // A connection whose engine call is stuck on a disk that does not answer holds run() as long: past
  // kStopWait after the signal, the deadline's thread saves the CBT state and exits (stop_deadline.h).
  StopDeadline deadline(
      kControlStopWait,
      [&engine] {
        Status status = engine.save_state();  // no flush: an origin's disk may be the one that stalls
        if (!status.is_ok()) log_error("saving CBT state: " + status.to_string());
        return status.is_ok();
      },
      [](const std::string& line) { log_warning(line); });
  server.set_stop_handler([&deadline] { deadline.arm(); });
  server.run();  // returns after a signal, once every connection has finished (bounded: server.h)
  if (!deadline.disarm()) {
    for (;;) std::this_thread::sleep_for(std::chrono::hours(1));  // the deadline's thread ends the process
  }

  // For good, not just a wake-up: an events-wait that arrives while the control socket is closing must not
  // hold up saving state for its timeout (up to 24 h).
  engine.events().stop();
  // A request whose file system stopped answering (an origin-attach opening a file there) would hold the stop
  // as long, and with it the CBT save of every other origin: it gets kControlStopWait, then is left behind.
  const bool remote_stopped = remote_control.stop_within(kControlStopWait);
  const bool control_stopped = control_socket.stop_within(kControlStopWait);
  event_log.stop();  // no control command runs any more, so no event comes after this
  log_dropped_snapshots(engine);
  const bool saved = save_clean_state(engine);
  log_info(saved ? "CBT state saved; stopped cleanly" : "stopped with errors");
  if (!remote_stopped || !control_stopped) {
    // Its thread goes on when the file system answers: no destructor may run that it could still use. An
    // origin it attaches then has no clean CBT state, so the next start gives it a new generation.
    log_warning("a control request still ran " + std::to_string(kControlStopWait.count()) +
                " s into the stop (its file system may not be answering); exiting without it");
    log_flush(kExitLogFlush);
    std::fflush(nullptr);
    std::_Exit(saved ? 0 : 1);
  }
  if (!server.stop_reloads()) {
    // Its thread goes on when the file system answers: no destructor may run that it could still use. The
    // difference storage of snapshots dropped above stays until the next start removes it (its ledger).
    log_warning("a reload (SIGHUP) has waited " + std::to_string(Reloader::kStopWait.count()) +
                " s to read its files (their file system may not be answering); exiting without it");
    log_flush(kExitLogFlush);
    std::fflush(nullptr);
    std::_Exit(saved ? 0 : 1);
  }
  return saved ? 0 : 1;
}
