// SPDX-License-Identifier: BSD-3-Clause
// client_registry.h — which NBD connections are open and which export each one serves.
//
// The control socket asks it for client counts and to disconnect the clients of an origin before detaching
// it; shutdown asks it for every connection. Thread-safe (control threads and the I/O thread use it).
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "mutex.h"

namespace nbdsnap {

class Connection;

class ClientRegistry {
 public:
  // A refused connection (over --max-connections) is only answered with errors until it leaves.
  void add(uint64_t id, const std::shared_ptr<Connection>& connection, bool refused);
  // Records the export a connection entered transmission with.
  void set_export(uint64_t id, const std::string& export_name);
  void remove(uint64_t id);

  size_t size() const;
  // Connections not refused: what --max-connections limits.
  size_t admitted() const;
  unsigned count(const std::string& export_name) const;
  // Clients of the origin's own export and of its images ("ORIGIN@...").
  unsigned count_of_origin(const std::string& origin) const;
  std::vector<std::shared_ptr<Connection>> of_origin(const std::string& origin) const;
  std::vector<std::shared_ptr<Connection>> all() const;

 private:
  struct Entry {
    std::weak_ptr<Connection> connection;
    std::string export_name;  // empty during the handshake
    bool refused = false;
  };
  static bool serves_origin(const Entry& entry, const std::string& origin);
  mutable Mutex mutex_;  // a leaf lock
  std::map<uint64_t, Entry> entries_ GUARDED_BY(mutex_);
};

}  // namespace nbdsnap
