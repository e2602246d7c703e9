// control_front_end.cpp — origin attach/detach for the control protocol (see control_front_end.h).
//
// An origin must not be detached while a connection can still write through it: those writes would miss
// CBT after its state was saved. So detach refuses while clients are connected, and a forced detach first
// closes them and waits until their in-flight requests are done.
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
    return {Errc::not_found, "origin '" + name + "' does not exist"};
  }
  const unsigned clients = server_.clients().count_of_origin(name);
  if (clients > 0) {
    if (!force) {
      return {Errc::busy, std::to_string(clients) + " NBD clients use origin '" + name +
                              "' or its images (detach with force to disconnect them)"};
    }
    log_info("disconnecting " + std::to_string(clients) + " clients of origin " + name);
    if (!server_.disconnect_origin_clients(name, std::chrono::seconds(30))) {
      return {Errc::busy, "clients of origin '" + name + "' did not finish in time"};
    }
  }
  Status status = engine_.detach_origin(name, force);
  if (status.is_ok()) {
    files_.forget(name);
    log_info("origin " + name + " detached");
  }
  return status;
}

}  // namespace nbdsnap
