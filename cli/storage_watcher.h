// SPDX-License-Identifier: BSD-3-Clause
// storage_watcher.h — the decisions of `watch-storage`: which events of a snapshot call for more storage,
// how much, and under which file name. No I/O here; events_commands.cpp runs the loop around it.
#pragma once

#include <cstdint>
#include <functional>
#include <set>
#include <string>

#include <nlohmann/json.hpp>

namespace nbdsnap::cli {

struct WatchAction {
  enum Kind { none, append_storage, report_corruption, stop } kind = none;
  uint64_t size = 0;    // append_storage: bytes to append
  std::string message;  // report_corruption: the reason
};

class StorageWatcher {
 public:
  // REQUIRES: step > 0.
  StorageWatcher(std::string snapshot, std::string grow_path, uint64_t step)
      : snapshot_(std::move(snapshot)), grow_path_(std::move(grow_path)), step_(step) {}

  // What to do about one event object of the control protocol. low_free_space events arriving while an
  // append of ours has not yet been seen in the log (a storage_appended event) are stale and ignored.
  WatchAction on_event(const nlohmann::json& event);
  // Call after an append_storage action failed, so the next low_free_space event is answered again.
  void append_failed() { append_pending_ = false; }
  // The size appended for a request: a multiple of step covering requested_bytes (at least one step).
  uint64_t append_size(uint64_t requested_bytes) const;
  // GROW_PATH.N for the smallest N >= 1 not in `in_use` and for which exists() is false.
  std::string next_storage_path(const std::set<std::string>& in_use,
                                const std::function<bool(const std::string&)>& exists) const;

  const std::string& snapshot() const { return snapshot_; }

 private:
  std::string snapshot_;
  std::string grow_path_;
  uint64_t step_;
  bool append_pending_ = false;
};

}  // namespace nbdsnap::cli
