// SPDX-License-Identifier: BSD-3-Clause
// systemd_service.h — nbdsnapd as a systemd service: socket activation and readiness notification.
//
// Socket activation (sd_listen_fds(3)): systemd binds the sockets of nbdsnapd.socket and passes them as
// descriptors 3, 4, ... with LISTEN_FDS, LISTEN_PID and LISTEN_FDNAMES; each is named by its
// FileDescriptorName=: "nbd" for an NBD listener (Unix or TCP, any number), "control" for the control socket
// (Unix, at most one). Passed NBD sockets replace the configured `listen` addresses, a passed control socket
// the configured `control` path; a kind systemd does not pass is bound as configured. Passed sockets are
// never unlinked or shut down by nbdsnapd: they belong to systemd, which keeps them across restarts.
// Notification (sd_notify(3)): READY=1 once every socket listens, RELOADING=1 ... READY=1 around a SIGHUP
// reload, STOPPING=1 when a clean stop begins. Without NOTIFY_SOCKET these do nothing.
#pragma once

#include <string>
#include <vector>

#include "server_config.h"
#include "status.h"

namespace nbdsnap {

struct ActivatedSocket {
  int fd = -1;
  ListenAddress address;  // what the socket is bound to (for export URIs and the log)
};

struct ActivatedSockets {
  std::vector<ActivatedSocket> nbd;
  int control_fd = -1;
  std::string control_path;
  bool any() const { return !nbd.empty() || control_fd >= 0; }
};

// Takes the sockets systemd passed (none when not socket-activated) and unsets the LISTEN_* variables so
// children do not inherit them. Errors (invalid_argument) name a socket of an unknown name or kind.
Status take_activated_sockets(ActivatedSockets& out);

// sd_notify(0, state); failures are ignored (no systemd, or it is gone: nothing to tell).
void notify_service_manager(const char* state);

}  // namespace nbdsnap
