// SPDX-License-Identifier: BSD-3-Clause
// reply_shape.h — the types the CLI expects of the fields of each control command's reply (docs/control.md),
// checked once, where every reply arrives (ControlClient), before any command reads it.
//
// The readers of json_fields.h stay tolerant (a newer server may add fields, or drop one the CLI can do
// without), but a field present with another type means a server the CLI does not understand: read tolerantly
// it printed an empty table and exited 0 ('"origins": 5'). So a field the CLI reads must have the protocol's
// type when present, and the fields that make the reply (the list of a list command, the object of an info
// command) must be present.
#pragma once

#include <string>

#include <nlohmann/json.hpp>

namespace nbdsnap::cli {

// What is wrong with the result (the reply without "ok") of `command`, or "": "'origins' is a number,
// expected an array", "'snapshots[1].name' is missing". Commands this version does not know are not checked.
std::string reply_shape_problem(const std::string& command, const nlohmann::json& result);

// Throws CliError (exit status 4, code protocol_error, errno EPROTO) when reply_shape_problem() finds one:
// "server's reply to origins: 'origins' is a number, expected an array; is the server (nbdsnapd or the nbdkit
// filter) the same version as nbdsnap X?".
void check_reply_shape(const std::string& command, const nlohmann::json& result);

}  // namespace nbdsnap::cli
