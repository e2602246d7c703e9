// SPDX-License-Identifier: BSD-3-Clause
// control_roles.h — what a remote control client may do: each control command needs a role, and an
// identity's role must be at least that (read-only < operator < admin).
//
//   read-only  looks: version, origins, origin-info, cbt-info, cbt-map, cbt-raw-map, checkpoints,
//              snapshot-info, snapshot-list, events-wait
//   operator   makes and ends snapshots and marks change tracking: snapshot-create, -add, -remove, -take,
//              -append-storage, -destroy, cbt-mark-dirty, cbt-reset, checkpoint-delete
//   admin      changes what is served: origin-attach, origin-detach
// A command missing from the table needs admin: a new command is closed to lesser roles until it is listed
// here. Local clients of the Unix control socket are admins (its file mode decides who connects).
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "status.h"

namespace nbdsnap {

enum class ControlRole { read_only = 0, operator_role = 1, admin = 2 };

// "read-only", "operator", "admin".
const char* control_role_name(ControlRole role);
std::optional<ControlRole> parse_control_role(const std::string& text);
// The role `command` needs (admin for commands not listed).
ControlRole required_control_role(const std::string& command);
// Every command of the table, for tests.
std::vector<std::string> listed_control_commands();

// Who sends a control request, as the front end knows them.
struct ControlCaller {
  std::string identity;  // "psk:agent1", "dn:...", "local"
  ControlRole role = ControlRole::admin;
  // Remote callers only (set): the directory in which they may name difference storage, as new files only;
  // empty: they may not name storage at all. Unset (local callers): any path, as the Unix socket's owner
  // could write it anyway. Without this an operator could have copy-on-write overwrite any file nbdsnapd can
  // write.
  std::optional<std::string> storage_dir;
};

// For a caller with storage_dir: ok, or permission_denied naming the path and what is allowed. A path is
// allowed when its directory, symbolic links resolved, is storage_dir and nothing exists at it yet (nbdsnapd
// creates it, and removes it at destroy); ranges of existing files or devices are for local callers only.
Status check_remote_storage_path(const ControlCaller& caller, const std::string& path, bool range);

}  // namespace nbdsnap
