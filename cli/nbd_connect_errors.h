// SPDX-License-Identifier: BSD-3-Clause
// nbd_connect_errors.h — what a failed NBD connection of the CLI (--image URIs, libnbd) means, in words an
// administrator acts on. libnbd 1.14 passes GnuTLS's words on for TLS failures ("The TLS connection was
// non-properly terminated", "Error in the certificate verification") and keeps an NBD server's refusal text
// (NBD_REP_ERR_POLICY's message, proto.md "Option reply types") in its debug output only.
#pragma once

#include <string>

struct nbd_handle;

namespace nbdsnap::cli {

// Keeps the error messages the server sends in the handshake (from libnbd's debug lines) in `sink` until
// stop_capturing(); lines are still printed when the user asked for them (LIBNBD_DEBUG=1). `sink` must
// outlive the capture.
void capture_server_messages(nbd_handle* handle, std::string& sink);
// Back to libnbd's own debug setting; once the handshake is over (debug output costs per request).
void stop_capturing(nbd_handle* handle);

// The error for a connection to `uri` that failed with libnbd's `libnbd_error`: the server's own reason when
// it gave one (`server_message`), else for nbds:// what to check (the PSK file and user, the certificates
// directory's CA and client certificate, its validity dates); libnbd's text stays in parentheses.
std::string explain_connect_failure(const std::string& uri, const std::string& libnbd_error,
                                    const std::string& server_message);

// Once a connection that worked is over (the server closed it, died, or the socket broke), libnbd fails
// every call with words about its own state ("nbd_aio_get_fd: connection is not in a connected state",
// "invalid state: CLOSED"). Returns "the NBD server of URI closed the connection" then, "" while `handle` is
// still connected.
std::string lost_connection_message(nbd_handle* handle, const std::string& uri);

}  // namespace nbdsnap::cli
