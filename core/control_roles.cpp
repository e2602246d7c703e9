// SPDX-License-Identifier: BSD-3-Clause
// control_roles.cpp — the command-to-role table (see control_roles.h).
#include "control_roles.h"

#include <sys/stat.h>

#include <cerrno>
#include <filesystem>

namespace nbdsnap {

namespace {

struct CommandRole {
  const char* command;
  ControlRole role;
};

constexpr CommandRole kCommandRoles[] = {
    {"version", ControlRole::read_only},
    {"origins", ControlRole::read_only},
    {"origin-info", ControlRole::read_only},
    {"cbt-info", ControlRole::read_only},
    {"cbt-map", ControlRole::read_only},
    {"cbt-raw-map", ControlRole::read_only},
    {"checkpoints", ControlRole::read_only},
    {"snapshot-info", ControlRole::read_only},
    {"snapshot-list", ControlRole::read_only},
    {"events-wait", ControlRole::read_only},
    {"stats", ControlRole::read_only},
    {"snapshot-create", ControlRole::operator_role},
    {"snapshot-add", ControlRole::operator_role},
    {"snapshot-remove", ControlRole::operator_role},
    {"snapshot-take", ControlRole::operator_role},
    {"snapshot-append-storage", ControlRole::operator_role},
    {"snapshot-destroy", ControlRole::operator_role},
    {"cbt-mark-dirty", ControlRole::operator_role},
    {"cbt-reset", ControlRole::operator_role},
    {"checkpoint-delete", ControlRole::operator_role},
    {"origin-attach", ControlRole::admin},
    {"origin-detach", ControlRole::admin},
};

}  // namespace

const char* control_role_name(ControlRole role) {
  switch (role) {
    case ControlRole::read_only:
      return "read-only";
    case ControlRole::operator_role:
      return "operator";
    case ControlRole::admin:
      return "admin";
  }
  return "admin";
}

std::optional<ControlRole> parse_control_role(const std::string& text) {
  for (ControlRole role : {ControlRole::read_only, ControlRole::operator_role, ControlRole::admin}) {
    if (text == control_role_name(role)) return role;
  }
  return std::nullopt;
}

ControlRole required_control_role(const std::string& command) {
  for (const CommandRole& entry : kCommandRoles) {
    if (command == entry.command) return entry.role;
  }
  return ControlRole::admin;
}

std::vector<std::string> listed_control_commands() {
  std::vector<std::string> names;
  for (const CommandRole& entry : kCommandRoles) names.emplace_back(entry.command);
  return names;
}

Status check_remote_storage_path(const ControlCaller& caller, const std::string& path, bool range) {
  if (!caller.storage_dir) return Status::ok();
  const auto refuse = [&](const std::string& why) {
    return Status{Errc::permission_denied,
                  caller.identity + " may not use '" + path + "' as difference storage: " + why};
  };
  if (caller.storage_dir->empty()) {
    return refuse(
        "remote clients name storage only inside nbdsnapd's --remote-storage-dir, which is not set");
  }
  const std::string allowed = "remote clients may name only new files directly in " + *caller.storage_dir;
  if (range) return refuse("ranges of existing files are for local clients; " + allowed);
  namespace fs = std::filesystem;
  std::error_code ec;
  const fs::path given(path);
  if (!given.is_absolute() || !given.has_filename()) return refuse("not an absolute file path; " + allowed);
  const fs::path parent = fs::canonical(given.parent_path(), ec);
  const fs::path dir = ec ? fs::path() : fs::canonical(*caller.storage_dir, ec);
  if (ec || parent != dir) return refuse(allowed);
  struct stat st {};
  if (::lstat(path.c_str(), &st) == 0 || errno != ENOENT) return refuse("it exists; " + allowed);
  return Status::ok();
}

}  // namespace nbdsnap
