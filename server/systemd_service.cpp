// SPDX-License-Identifier: BSD-3-Clause
// systemd_service.cpp — socket activation and sd_notify (see systemd_service.h).
#include "systemd_service.h"

#include <fcntl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <systemd/sd-daemon.h>

#include <netdb.h>

#include <cstdlib>

namespace nbdsnap {

namespace {

// The address a passed socket is bound to, as a ListenAddress. False when it is not a listening stream socket
// of the kind nbdsnapd serves.
bool bound_address(int fd, bool unix_only, ListenAddress& out) {
  sockaddr_storage address{};
  socklen_t length = sizeof address;
  if (::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length) != 0) return false;
  if (sd_is_socket_unix(fd, SOCK_STREAM, 1, nullptr, 0) > 0) {
    const auto* un = reinterpret_cast<const sockaddr_un*>(&address);
    out.kind = ListenAddress::Kind::unix_socket;
    out.path =
        length > offsetof(sockaddr_un, sun_path) && un->sun_path[0] != '\0' ? std::string(un->sun_path) : "";
    return true;
  }
  if (unix_only || sd_is_socket_inet(fd, AF_UNSPEC, SOCK_STREAM, 1, 0) <= 0) return false;
  char host[NI_MAXHOST];
  char port[NI_MAXSERV];
  if (::getnameinfo(reinterpret_cast<sockaddr*>(&address), length, host, sizeof host, port, sizeof port,
                    NI_NUMERICHOST | NI_NUMERICSERV) != 0) {
    return false;
  }
  out.kind = ListenAddress::Kind::tcp;
  out.host = host;
  out.port = static_cast<uint16_t>(std::atoi(port));
  return true;
}

}  // namespace

Status take_activated_sockets(ActivatedSockets& out) {
  char** names = nullptr;
  const int count = sd_listen_fds_with_names(/*unset_environment=*/1, &names);
  if (count < 0) return Status::from_errno(-count, "socket activation (LISTEN_FDS)");
  Status status = Status::ok();
  for (int i = 0; i < count; ++i) {
    const int fd = SD_LISTEN_FDS_START + i;
    const std::string name = names && names[i] ? names[i] : "";
    ::fcntl(fd, F_SETFD, FD_CLOEXEC);
    ActivatedSocket socket{fd, {}};
    if (!status) continue;  // the first error is the one reported
    if (name == "nbd") {
      if (bound_address(fd, false, socket.address)) {
        out.nbd.push_back(socket);
      } else {
        status = {Errc::invalid_argument, "socket activation: descriptor " + std::to_string(fd) +
                                              " named nbd is not a listening Unix or TCP stream socket"};
      }
    } else if (name == "control") {
      if (out.control_fd >= 0 || !bound_address(fd, true, socket.address) || socket.address.path.empty()) {
        status = {Errc::invalid_argument, "socket activation: descriptor " + std::to_string(fd) +
                                              " named control is not the one listening Unix stream socket"};
      } else {
        out.control_fd = fd;
        out.control_path = socket.address.path;
      }
    } else {
      status = {Errc::invalid_argument, "socket activation: descriptor " + std::to_string(fd) +
                                            " is named '" + name +
                                            "': name each socket FileDescriptorName=nbd or =control"};
    }
  }
  for (int i = 0; names && i < count; ++i) std::free(names[i]);
  std::free(names);
  return status;
}

void notify_service_manager(const char* state) {
  sd_notify(0, state);
}

}  // namespace nbdsnap
