// SPDX-License-Identifier: BSD-3-Clause
// client_registry.cpp — the table of open connections (see client_registry.h).
#include "client_registry.h"

#include "export_name.h"

namespace nbdsnap {

void ClientRegistry::add(uint64_t id, const std::shared_ptr<Connection>& connection, bool refused) {
  MutexLock lock(mutex_);
  entries_[id] = Entry{connection, {}, refused};
}

void ClientRegistry::set_export(uint64_t id, const std::string& export_name) {
  MutexLock lock(mutex_);
  if (auto it = entries_.find(id); it != entries_.end()) it->second.export_name = export_name;
}

void ClientRegistry::remove(uint64_t id) {
  MutexLock lock(mutex_);
  entries_.erase(id);
}

size_t ClientRegistry::size() const {
  MutexLock lock(mutex_);
  return entries_.size();
}

size_t ClientRegistry::admitted() const {
  MutexLock lock(mutex_);
  size_t n = 0;
  for (const auto& [id, entry] : entries_) n += !entry.refused;
  return n;
}

unsigned ClientRegistry::count(const std::string& export_name) const {
  MutexLock lock(mutex_);
  unsigned n = 0;
  for (const auto& [id, entry] : entries_) n += entry.export_name == export_name;
  return n;
}

bool ClientRegistry::serves_origin(const Entry& entry, const std::string& origin) {
  ExportName parsed;
  return !entry.export_name.empty() && parse_export_name(entry.export_name, parsed).is_ok() &&
         parsed.origin == origin;
}

unsigned ClientRegistry::count_of_origin(const std::string& origin) const {
  MutexLock lock(mutex_);
  unsigned n = 0;
  for (const auto& [id, entry] : entries_) n += serves_origin(entry, origin);
  return n;
}

std::vector<std::shared_ptr<Connection>> ClientRegistry::of_origin(const std::string& origin) const {
  MutexLock lock(mutex_);
  std::vector<std::shared_ptr<Connection>> out;
  for (const auto& [id, entry] : entries_) {
    if (!serves_origin(entry, origin)) continue;
    if (auto connection = entry.connection.lock()) out.push_back(std::move(connection));
  }
  return out;
}

std::vector<std::shared_ptr<Connection>> ClientRegistry::all() const {
  MutexLock lock(mutex_);
  std::vector<std::shared_ptr<Connection>> out;
  for (const auto& [id, entry] : entries_) {
    if (auto connection = entry.connection.lock()) out.push_back(std::move(connection));
  }
  return out;
}

}  // namespace nbdsnap
