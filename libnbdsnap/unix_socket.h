// SPDX-License-Identifier: BSD-3-Clause
// unix_socket.h — bounded waits on Unix stream sockets: connecting, sending and receiving each end at a
// deadline, so a server that accepts and never answers (or a full listen backlog) cannot hang a caller.
//
// Descriptors opened here are non-blocking and close-on-exec. Errors are errno values (ETIMEDOUT when the
// deadline passed); callers turn them into Errors naming the socket. Internal to libnbdsnap.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

#include <sys/types.h>

#include "nbdsnap/transport.h"

namespace nbdsnap::client {

// Milliseconds left until `deadline` for poll(2): 0 once passed, rounded up so a wait never ends early,
// capped at INT_MAX.
int poll_milliseconds(Deadline deadline);

// Connects to the Unix socket at path. Returns the descriptor, or -1 with errno (ENAMETOOLONG for a path
// that does not fit; ETIMEDOUT when the listen backlog stayed full until the deadline).
int connect_unix(const std::string& path, Deadline deadline);

// Sends all of data. False with errno (ETIMEDOUT when the peer did not take it in time).
bool send_all(int fd, std::string_view data, Deadline deadline);

// Receives at most `capacity` bytes, waiting until some arrive. Returns the count, 0 at end of file, or -1
// with errno (ETIMEDOUT when nothing came before the deadline).
ssize_t receive_some(int fd, char* buffer, size_t capacity, Deadline deadline);

}  // namespace nbdsnap::client
