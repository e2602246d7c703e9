// SPDX-License-Identifier: BSD-3-Clause
// storage_watcher.cpp — event handling rules of the storage watcher.
#include "storage_watcher.h"

#include "json_fields.h"

namespace nbdsnap::cli {

WatchAction StorageWatcher::on_event(const nlohmann::json& event) {
  if (field_text(event, "snapshot") != snapshot_) return {};
  const std::string type = field_text(event, "type");
  if (type == "snapshot_destroyed") return {WatchAction::stop, 0, {}};
  if (type == "storage_appended") {
    append_pending_ = false;
    return {};
  }
  if (type == "corrupted") return {WatchAction::report_corruption, 0, field_text(event, "reason")};
  if (type == "low_free_space" && !append_pending_) {
    append_pending_ = true;
    return {WatchAction::append_storage, append_size(field_uint(event, "requested_bytes")), {}};
  }
  return {};
}

uint64_t StorageWatcher::append_size(uint64_t requested_bytes) const {
  uint64_t steps = requested_bytes / step_ + (requested_bytes % step_ != 0);
  return (steps == 0 ? 1 : steps) * step_;
}

std::string StorageWatcher::next_storage_path(const std::set<std::string>& in_use,
                                              const std::function<bool(const std::string&)>& exists) const {
  for (unsigned n = 1;; ++n) {
    std::string candidate = grow_path_ + "." + std::to_string(n);
    if (in_use.count(candidate) == 0 && !exists(candidate)) return candidate;
  }
}

}  // namespace nbdsnap::cli
