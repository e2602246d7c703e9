// SPDX-License-Identifier: BSD-3-Clause
// plugin_exports.cpp — recording the plugin's export list and asking nbdkit for it.
#include "plugin_exports.h"

namespace nbdsnap {

std::string PluginExports::origin_of(const std::string& export_name) const {
  return export_name.empty() ? default_origin_ : export_name;
}

std::string PluginExports::export_of(const std::string& origin) const {
  if (origin != default_origin_) return origin;
  return is_listed("") ? std::string() : origin;
}

void PluginExports::record(const std::vector<std::string>& names) {
  MutexLock lock(mutex_);
  names_ = std::set<std::string>(names.begin(), names.end());
  known_ = true;
  ++recorded_count_;
}

void PluginExports::record_oldstyle() {
  MutexLock lock(mutex_);
  names_ = {""};
  known_ = true;
  oldstyle_ = true;
}

bool PluginExports::oldstyle() const {
  MutexLock lock(mutex_);
  return oldstyle_;
}

Status PluginExports::accept_oldstyle_open(const std::string& requested) {
  MutexLock lock(mutex_);
  if (!oldstyle_opened_) {
    oldstyle_opened_ = true;
    oldstyle_export_ = requested;
    return Status::ok();
  }
  if (requested == oldstyle_export_) return Status::ok();
  return {Errc::bad_state,
          "nbdkit speaks the oldstyle handshake (-o), whose clients name no export, and it "
          "opened '" +
              oldstyle_export_ +
              "' for them before; a second name could be a "
              "second disk, so only that one is served"};
}

std::string PluginExports::oldstyle_export() const {
  MutexLock lock(mutex_);
  return oldstyle_export_;
}

bool PluginExports::is_listed(const std::string& export_name) const {
  MutexLock lock(mutex_);
  return known_ ? names_.count(export_name) != 0 : export_name.empty();
}

bool PluginExports::list_known() const {
  MutexLock lock(mutex_);
  return known_;
}

std::vector<std::string> PluginExports::names() const {
  MutexLock lock(mutex_);
  return {names_.begin(), names_.end()};
}

Status PluginExports::refresh(SelfClient& client) {
  MutexLock serial(refresh_mutex_);
  uint64_t before = 0;
  {
    MutexLock lock(mutex_);
    before = recorded_count_;
  }
  std::vector<std::string> answered;
  if (Status s = client.list(answered); !s) return s;
  MutexLock lock(mutex_);
  if (recorded_count_ == before)
    return {Errc::io_error,
            "nbdkit answered NBD_OPT_LIST without asking the nbdsnap filter (does a filter "
            "stacked above nbdsnap answer it?)"};
  return Status::ok();
}

std::string PluginExports::describe() const {
  constexpr size_t kShown = 8;
  MutexLock lock(mutex_);
  if (!known_) return "no list read yet";
  if (oldstyle_) return "\"\" alone: nbdkit speaks the oldstyle handshake (-o)";
  if (names_.empty()) return "no exports";
  std::string text;
  size_t shown = 0;
  for (const std::string& name : names_) {
    if (shown == kShown) break;
    text += (shown++ ? ", \"" : "\"") + name + "\"";
  }
  if (names_.size() > kShown) text += " and " + std::to_string(names_.size() - kShown) + " more";
  return text;
}

}  // namespace nbdsnap
