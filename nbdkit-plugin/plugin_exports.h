// SPDX-License-Identifier: BSD-3-Clause
// plugin_exports.h — the export names the plugin itself lists: the only names the filter serves as origins.
//
// Design notes. One disk must be one origin. Plugins such as memory, or file with file=, serve the same disk
// under every export name; if each name became an origin, a client writing through a second name would change
// the disk behind the first origin's tracker, and that origin's snapshot images and CBT would silently miss
// it. The plugin's own list (its .list_exports; nbdkit's default for plugins without one is the default
// export alone) is the truth: an export the plugin lists is one disk, any other name is refused.
//
// nbdkit hands a filter that list only inside .list_exports, which runs when a client sends NBD_OPT_LIST. So
// the filter records every list that passes through .list_exports, and when it needs a fresh one it makes
// nbdkit run it by asking its own socket (refresh, self_client.h). Until a list has been read (no socket the
// filter can reach, nbdkit requires TLS...), only the default export "" counts as listed.
#pragma once

#include <cstdint>
#include <set>
#include <string>
#include <vector>

#include "mutex.h"
#include "self_client.h"
#include "status.h"

namespace nbdsnap {

class PluginExports {
 public:
  // default_origin: the origin name of the plugin's default export "".
  explicit PluginExports(std::string default_origin) : default_origin_(std::move(default_origin)) {}

  // --- names (the one mapping between origin names and the plugin's export names) ---
  // The origin a plugin export is served as: "" is the default origin, other names are themselves.
  std::string origin_of(const std::string& export_name) const;
  // The plugin export behind an origin name: the default origin is "" unless the plugin's list lacks "" (then
  // a listed export of that very name is meant). Thread-safe.
  std::string export_of(const std::string& origin) const;

  // --- the list ---
  // Records the plugin's list as .list_exports received it. Thread-safe.
  void record(const std::vector<std::string>& names);
  // Records that nbdkit speaks the oldstyle handshake (-o): its clients send no export name, so nbdkit opens
  // one name for all of them ("", or what a filter above maps it to), whatever the plugin lists, and never
  // runs .list_exports. The list is "" from now on, until an open names that one export. Thread-safe.
  void record_oldstyle();
  bool oldstyle() const;
  // Under oldstyle: the name the first open asked for is the one export from then on; another name is
  // refused (bad_state), so that a second disk never comes under one origin. Thread-safe.
  Status accept_oldstyle_open(const std::string& requested);
  // The name accepted so (empty before the first open).
  std::string oldstyle_export() const;
  // Whether the plugin lists `export_name`; while no list has been read, true for "" only. Thread-safe.
  bool is_listed(const std::string& export_name) const;
  bool list_known() const;
  std::vector<std::string> names() const;
  // Makes nbdkit run .list_exports by sending NBD_OPT_LIST through `client`, so that the list is recorded.
  // Errors: the client's (no answer, TLS required...), or io_error when nbdkit answered without the filter
  // seeing the list (a filter stacked above this one answers NBD_OPT_LIST itself). Serialised.
  Status refresh(SelfClient& client);
  // "\"\", \"a.img\"": the list for messages (the first few names, then how many more).
  std::string describe() const;

 private:
  const std::string default_origin_;
  Mutex refresh_mutex_;                                 // one NBD_OPT_LIST at a time
  mutable Mutex mutex_ ACQUIRED_AFTER(refresh_mutex_);  // a leaf
  std::set<std::string> names_ GUARDED_BY(mutex_);
  bool known_ GUARDED_BY(mutex_) = false;            // a list has been recorded
  bool oldstyle_ GUARDED_BY(mutex_) = false;         // record_oldstyle
  bool oldstyle_opened_ GUARDED_BY(mutex_) = false;  // accept_oldstyle_open accepted oldstyle_export_
  std::string oldstyle_export_ GUARDED_BY(mutex_);
  uint64_t recorded_count_ GUARDED_BY(mutex_) = 0;  // lists recorded so far
};

}  // namespace nbdsnap
