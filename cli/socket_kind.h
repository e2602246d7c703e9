// socket_kind.h — tells an NBD socket from an nbdsnap control socket, so that giving one where the other
// belongs ends in a message saying which socket to give instead of a hang or "connection closed".
//
// The two protocols start differently. An NBD server speaks first: its greeting begins with the 8 bytes
// "NBDMAGIC" as soon as a client connects (NBD proto.md, "Newstyle negotiation"; the oldstyle one too). A
// control server says nothing until it receives a request line, and answers every line with a JSON object
// holding a boolean "ok" (docs/control.md). The recognisers are pure; probe_socket_kind() uses them on a
// fresh connection.
#pragma once

#include <string>
#include <string_view>

#include "socket_io.h"

namespace nbdsnap::cli {

inline constexpr std::string_view kNbdGreetingMagic = "NBDMAGIC";

// Whether the first bytes a server sent are an NBD greeting (at least the 8 bytes of "NBDMAGIC").
bool is_nbd_greeting(std::string_view received);
// Whether a line a server sent is a control protocol reply.
bool is_control_reply(std::string_view line);

// The socket path of an nbd+unix:// or nbds+unix:// URI (its percent-decoded "socket" query parameter);
// empty for other URIs (TCP, vsock) or when there is none.
std::string unix_socket_of_uri(std::string_view uri);

enum class SocketKind { nbd, control, unknown };

// Connects to the Unix socket at path and listens: a greeting within `greeting_wait` is NBD's; else it sends
// {"command":"version"}, and a control reply before the deadline says control. Anything else (no server,
// silence, other bytes) is unknown. Never throws.
SocketKind probe_socket_kind(const std::string& path, std::chrono::milliseconds greeting_wait,
                             const Deadline& deadline);

// The messages for each mistake: what the path is, and what to give instead.
std::string nbd_socket_given_as_control_message(const std::string& path);
std::string control_socket_given_as_nbd_message(const std::string& uri, const std::string& path);

}  // namespace nbdsnap::cli
