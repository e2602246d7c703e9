// SPDX-License-Identifier: BSD-3-Clause
// control_front_end.cpp — origin attach/detach for the control protocol (see control_front_end.h).
//
// An origin must not be detached while a connection can still write through it: those writes would miss
// CBT after its state was saved. Detach without force refuses while clients are connected (a connection
// counts from the moment its NBD_OPT_GO resolved the origin). A forced detach first detaches in the engine,
// which closes the origin's gates (in-flight requests finish, every later one fails) and takes the name away
// from new connections, and then disconnects the clients still holding it: the other way round, clients that
// reconnect at once kept the origin busy for ever.
#include "control_front_end.h"

#include "log.h"

namespace nbdsnap {

Status NbdsnapdFrontEnd::attach_origin(const std::string& name, const std::string& path, bool read_only) {
  Status status = files_.attach(name, path, read_only);
  if (status.is_ok()) log_info("origin " + name + " attached: " + path + (read_only ? " (read-only)" : ""));
  return status;
}

Status NbdsnapdFrontEnd::detach_origin(const std::string& name, bool force) {
  if (!engine_.find_origin(name)) {
    if (files_.forget(name)) {  // listed, but its file could not be opened at start
      log_info("origin " + name + " removed from the origin list");
      return Status::ok();
    }
    // An origin-attach of the name still waiting for its CBT state I/O: busy, "being attached".
    if (Status s = engine_.check_origin_unused(name, ""); s.code() == Errc::busy) return s;
    return {Errc::not_found, "origin '" + name + "' does not exist"};
  }
  const unsigned clients = server_.clients().count_of_origin(name);
  if (clients > 0 && !force) {
    return {Errc::busy, std::to_string(clients) + " NBD clients use origin '" + name +
                            "' or its images (detach with force to disconnect them)"};
  }
  Status status = engine_.detach_origin(name, force);
  if (!status.is_ok()) return status;
  files_.forget(name);
  log_info("origin " + name + " detached");
  if (server_.clients().count_of_origin(name) > 0) {
    log_info("disconnecting the clients of detached origin " + name);
    if (!server_.disconnect_origin_clients(name, std::chrono::seconds(5))) {
      // Harmless: every request of theirs fails now. They go when their sockets close.
      log_warning("clients of detached origin " + name + " are still closing");
    }
  }
  return Status::ok();
}

}  // namespace nbdsnap
