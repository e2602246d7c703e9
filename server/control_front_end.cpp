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

Status NbdsnapdFrontEnd::attach_origin(const std::string& name, const std::string& path, bool read_only,
                                       OriginInfo& attached) {
  Status status = files_.attach(name, path, read_only, &attached);
  if (status.is_ok()) log_info("origin " + name + " attached: " + path + (read_only ? " (read-only)" : ""));
  return status;
}

Status NbdsnapdFrontEnd::detach_origin(const std::string& name, bool force) {
  // An attach of the name may finish at any point of this (it attaches without our locks): the list
  // changes only through OriginFiles::unlist, which asks the engine under the list's lock, and an origin
  // that appears while we look is detached in a second round, as if this detach came after its attach.
  for (int round = 0;; ++round) {
    if (engine_.find_origin(name)) return detach_attached(name, force);
    OriginFiles::Unlisted outcome{};
    if (Status s = files_.unlist(name, outcome, false); !s) return s;  // listed, and still listed
    if (outcome == OriginFiles::Unlisted::dropped) {  // listed, but its file could not be opened at start
      log_info("origin " + name + " removed from the origin list");
      return Status::ok();
    }
    if (outcome == OriginFiles::Unlisted::not_listed) {
      // busy: an attach of the name waits for its CBT state I/O ("being attached"); already_exists: it
      // has just attached, and is detached in the next round.
      Status unused = engine_.check_origin_unused(name, "");
      if (unused.code() == Errc::busy) return unused;
      if (unused.code() != Errc::already_exists) {
        return {Errc::not_found, "origin '" + name + "' does not exist"};
      }
    }
    if (round > 0) {
      return {Errc::busy, "origin '" + name + "' was attached again while it was detached; detach it again"};
    }
  }
}

Status NbdsnapdFrontEnd::detach_attached(const std::string& name, bool force) {
  const unsigned clients = server_.clients().count_of_origin(name);
  if (clients > 0 && !force) {
    return {Errc::busy, std::to_string(clients) + " NBD clients use origin '" + name +
                            "' or its images (detach with force to disconnect them)"};
  }
  bool done = false;
  Status detached = engine_.detach_origin(name, force, &done);
  // The engine detaches even when the CBT state cannot be saved, and says so; after a refusal (busy, or
  // not_found when another detach came first) there is nothing more to do here.
  if (!done) return detached;
  log_info("origin " + name + " detached" + (detached.is_ok() ? "" : " (" + detached.to_string() + ")"));
  if (server_.clients().count_of_origin(name) > 0) {
    log_info("disconnecting the clients of detached origin " + name);
    if (!server_.disconnect_origin_clients(name, std::chrono::seconds(5))) {
      // Harmless: every request of theirs fails now. They go when their sockets close.
      log_warning("clients of detached origin " + name + " are still closing");
    }
  }
  // An attach of the name since the engine's detach owns the entry now (Unlisted::attached): this detach is
  // done either way.
  OriginFiles::Unlisted outcome{};
  const Status unlisted = files_.unlist(name, outcome, true);
  std::string problems;
  if (!detached.is_ok()) {
    problems = Engine::cbt_not_saved_on_detach(detached);
  }
  if (!unlisted.is_ok()) {
    problems += (problems.empty() ? "" : "; and ") + unlisted.message() +
                ": the next start attaches it again; detach it again once the state directory can be written";
  }
  if (problems.empty()) return Status::ok();
  return {detached.is_ok() ? unlisted.code() : detached.code(),
          "origin '" + name + "' is detached, but " + problems};
}

}  // namespace nbdsnap
