// SPDX-License-Identifier: BSD-3-Clause
// socket_kind.h — the CLI's words for the wrong socket given by mistake (libnbdsnap's socket_probe.h tells
// the protocols apart), and the Unix socket of an NBD URI, which it probes.
#pragma once

#include <string>
#include <string_view>

#include "nbdsnap/socket_probe.h"

namespace nbdsnap::cli {

// The socket path of an nbd+unix:// or nbds+unix:// URI (its percent-decoded "socket" query parameter);
// empty for other URIs (TCP, vsock) or when there is none.
std::string unix_socket_of_uri(std::string_view uri);

// The messages for each mistake: what the path is, and what to give instead (`option`: the command's option
// that took the URI, --image or --to).
std::string nbd_socket_given_as_control_message(const std::string& path);
std::string control_socket_given_as_nbd_message(const std::string& uri, const std::string& path,
                                                const std::string& option = "--image");

}  // namespace nbdsnap::cli
