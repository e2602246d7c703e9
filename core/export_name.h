// SPDX-License-Identifier: BSD-3-Clause
// export_name.h — the one parser of export names: "ORIGIN" is an origin, "ORIGIN@SNAPSHOT" its image.
#pragma once

#include <string>

#include "status.h"

namespace nbdsnap {

struct ExportName {
  std::string origin;
  std::string snapshot;  // empty for an origin export
  bool is_image() const { return !snapshot.empty(); }
};

// Splits at the last '@'. Refuses an empty origin or snapshot part ("@x", "x@").
Status parse_export_name(const std::string& name, ExportName& out);
std::string format_export_name(const std::string& origin, const std::string& snapshot);
// An export name as the path of an NBD URI ("nbd+unix:///PATH?socket=..."): names may hold spaces and other
// bytes a URI path cannot, so every byte but unreserved ones and '@' (kept readable) is percent-encoded.
std::string export_name_uri_path(const std::string& export_name);
// "nbd+unix:///NAME?socket=PATH" with both parts percent-encoded (a socket path may hold '&', '#', spaces),
// as libnbd and QEMU decode them.
std::string nbd_unix_uri(const std::string& export_name, const std::string& socket_path);
// Names of origins and snapshots: 1..255 bytes without '/', '@' or control characters, not starting with
// '.' or '-' (origins are often file names chosen by an nbdkit plugin, so spaces and '+' are allowed).
Status check_object_name(const std::string& kind, const std::string& name);

}  // namespace nbdsnap
