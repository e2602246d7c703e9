// SPDX-License-Identifier: BSD-3-Clause
// nbdsnap/socket_probe.h — tells an NBD socket from an nbdsnap control socket, so a program that was given
// one where the other belongs can say which socket to give instead of hanging or failing obscurely.
//
// The two protocols start differently. An NBD server speaks first: its greeting begins with the 8 bytes
// "NBDMAGIC" as soon as a client connects (NBD proto.md, "Newstyle negotiation"; the oldstyle one too). A
// control server says nothing until it receives a request line, and answers every line with a JSON object
// holding a boolean "ok" (docs/control.md).
#pragma once

#include <chrono>
#include <string>
#include <string_view>

#include "nbdsnap/transport.h"

namespace nbdsnap::client {

inline constexpr std::string_view kNbdGreetingMagic = "NBDMAGIC";

// Whether the first bytes a server sent are an NBD greeting (at least the 8 bytes of "NBDMAGIC").
bool is_nbd_greeting(std::string_view received);
// Whether a line a server sent is a control protocol reply.
bool is_control_reply(std::string_view line);

enum class SocketKind { nbd, control, unknown };

// Connects to the Unix socket at path and listens: a greeting within `greeting_wait` is NBD's; else it sends
// {"command":"version"}, and a control reply before the deadline says control. Anything else (no server,
// silence, other bytes) is unknown. Thread-safe; blocks until the deadline at most.
SocketKind probe_socket_kind(const std::string& path, std::chrono::milliseconds greeting_wait,
                             Deadline deadline);

}  // namespace nbdsnap::client
