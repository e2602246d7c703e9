// SPDX-License-Identifier: BSD-3-Clause
// filter_config.h — the filter's `nbdsnap-*` parameters: parsed in .config, checked once in .config_complete.
#pragma once

#include <cstdint>
#include <memory>
#include <set>
#include <string>
#include <string_view>

#include "options.h"
#include "served_origin_files.h"
#include "status.h"

namespace nbdsnap {

// Prefix of every parameter the filter owns; other keys go to the plugin.
inline constexpr const char* kParameterPrefix = "nbdsnap-";

struct FilterConfig {
  std::string control_socket;  // nbdsnap-control: control protocol socket; empty = no control
  // nbdsnap-control-max-sessions: control clients served at once (a thread each); one more gets `busy`.
  unsigned control_max_sessions = 32;
  std::string state_dir;                   // nbdsnap-state-dir: CBT state; empty = not persistent
  std::string default_origin = "default";  // nbdsnap-default-origin: origin name of the plugin's "" export
  // nbdsnap-storage: default difference storage (storage_spec.h's text form): a file or device, a range of
  // one, or a directory with a size (one file of that size per snapshot). Its path is absolute.
  StorageSpec storage;
  bool storage_is_directory = false;  // one file per snapshot inside storage.path
  uint64_t storage_limit = 0;         // nbdsnap-storage-limit: default limit for new snapshots
  // nbdsnap-storage-sparse: the default storage's files are created sparse instead of fully allocated
  // (core/storage_allocation.h); only with a size (DIR:SIZE or PATH:SIZE).
  bool storage_sparse = false;
  // The engine's tuning (nbdsnap-chunk-min-shift, ... : every option of core/tuning.h, as nbdsnapd has them);
  // the other fields of EngineConfig are filled in when the engine starts.
  EngineConfig tuning;
  // The files and directories the plugin's own parameters name (note_plugin_parameter): never storage.
  std::shared_ptr<ServedOriginFiles> served_files = std::make_shared<ServedOriginFiles>();

  // Applies one parameter (key with its prefix). Paths are made absolute: nbdkit changes directory when it
  // daemonizes. REQUIRES: key starts with kParameterPrefix.
  Status apply(const std::string& key, const std::string& value);
  // Notes a plugin parameter on its way to the plugin: file= serves a file, dir= (directory=) every file in a
  // directory, whatever the plugin (nbdkit's file plugin; split, partitioning and ondemand too). nbdkit
  // passes a plugin's bare first argument under the plugin's magic key: `file` for the file plugin.
  void note_plugin_parameter(const std::string& key, const std::string& value);
  // Checks the parameters together, once all are known: the engine's sanitize step for the tuning options
  // (core/tuning.h); nbdsnap-state-dir must be a directory; nbdsnap-storage must exist (a directory: one file
  // per snapshot in it; a file or block device: used as is); neither may be something the plugin serves;
  // nbdsnap-control-max-sessions needs nbdsnap-control.
  Status complete();

  bool has_default_storage() const { return !storage.path.empty(); }
  // Difference storage for a snapshot created without any: the file (or range), or
  // DIRECTORY/SNAPSHOT.nbdsnap-diff.
  StorageSpec default_storage_for(const std::string& snapshot) const;

 private:
  // The parameters applied so far, by their current names (an old name counts as its new one): nbdkit passes
  // every key=value, so a second one would silently override the first; nbdsnapd refuses a repeated option
  // too.
  std::set<std::string, std::less<>> given_;
};

// Help text for `nbdkit --filter=nbdsnap --help`: the filter's own parameters and every tuning option.
const char* config_help();

// Old names of parameters, still accepted: nbdsnap-tracking-min-shift (now nbdsnap-tracking-block-min-shift,
// the name nbdsnapd has always used).
std::string_view canonical_parameter_name(std::string_view name);

}  // namespace nbdsnap
