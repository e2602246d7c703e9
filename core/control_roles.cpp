// SPDX-License-Identifier: BSD-3-Clause
// control_roles.cpp — the command-to-role table (see control_roles.h).
#include "control_roles.h"


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
    case ControlRole::read_only: return "read-only";
    case ControlRole::operator_role: return "operator";
    case ControlRole::admin: return "admin";
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

}  // namespace nbdsnap
