// SPDX-License-Identifier: BSD-3-Clause
// reply_shape.h — the types of the fields of each control command's reply (docs/control.md), checked once,
// where every reply arrives (Client::Impl::exchange), before a typed call decodes it or call() hands it on.
// The table is python/nbdsnap/reply_shapes.json, compiled in: the Python package checks against the same
// file. Internal to libnbdsnap.
//
// The decoders (reply_decoding.h) and the CLI's readers stay tolerant of fields left out or added (a newer
// server may add fields, or drop one a client can do without), but a field present with another type means a
// server this client does not understand, and read tolerantly it reads as empty: '"origins": 5' printed an
// empty table with exit status 0, and a CBT range whose length is "64K" read as length 0, a changed range an
// incremental backup would skip. So every field a client reads must have the protocol's type when present,
// and the fields that make the reply (the list of a list command, the object of an info command, the offset
// and length of each CBT range) must be present.
#pragma once

#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

namespace nbdsnap::client {

// What is wrong with the result (the reply without "ok") of `command`, or "": "'origins' is a number,
// expected an array", "'snapshots[1].name' is missing". Commands this version does not know are not checked.
// Thread-safe (the table is built once, then only read).
std::string reply_shape_problem(const std::string& command, const nlohmann::json& result);

// What is wrong with a reply line before it is parsed, or "": lists and objects nested deeper than the
// table's max_depth ("the reply nests lists and objects deeper than 64 levels"). The parser does not recurse,
// but serialising a value (call() hands replies on as text) and every walk of it would, without bound: a
// reply 100,000 levels deep crashed the CLI. A linear scan of the bytes. Thread-safe.
std::string reply_nesting_problem(std::string_view line);

}  // namespace nbdsnap::client
