// filter_config.h — the filter's `nbdsnap-*` parameters: parsed in .config, checked once in .config_complete.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "engine.h"
#include "served_origin_files.h"
#include "status.h"

namespace nbdsnap {

// Prefix of every parameter the filter owns; other keys go to the plugin.
inline constexpr const char* kParameterPrefix = "nbdsnap-";

struct FilterConfig {
  std::string control_socket;           // nbdsnap-control: control protocol socket; empty = no control
  std::string state_dir;                // nbdsnap-state-dir: CBT state; empty = not persistent
  std::string default_origin = "default";  // nbdsnap-default-origin: origin name of the plugin's "" export
  std::string storage_path;             // nbdsnap-storage: default difference storage (file or directory)
  uint64_t storage_size = 0;            // its size (0: the existing file's size)
  bool storage_is_directory = false;    // one file per snapshot inside storage_path
  uint64_t storage_limit = 0;           // nbdsnap-storage-limit: default limit for new snapshots
  SizingRules sizing;                   // nbdsnap-chunk-min-shift, nbdsnap-tracking-min-shift
  // The files and directories the plugin's own parameters name (note_plugin_parameter): never storage.
  std::shared_ptr<ServedOriginFiles> served_files = std::make_shared<ServedOriginFiles>();
  unsigned checkpoints_kept = kDefaultCheckpointsKept;  // nbdsnap-checkpoints-kept

  // Applies one parameter (key with its prefix). Paths are made absolute: nbdkit changes directory when it
  // daemonizes. REQUIRES: key starts with kParameterPrefix.
  Status apply(const std::string& key, const std::string& value);
  // Notes a plugin parameter on its way to the plugin: file= serves a file, dir= (directory=) every file in a
  // directory, whatever the plugin (nbdkit's file plugin; split, partitioning and ondemand too). nbdkit passes
  // a plugin's bare first argument under the plugin's magic key: `file` for the file plugin.
  void note_plugin_parameter(const std::string& key, const std::string& value);
  // Checks the parameters together, once all are known: nbdsnap-state-dir must be a directory; nbdsnap-storage
  // must exist (a directory: one file per snapshot in it; a file or block device: used as is); neither may be
  // something the plugin serves.
  Status complete();

  bool has_default_storage() const { return !storage_path.empty(); }
  // Difference storage for a snapshot created without any: the file, or DIRECTORY/SNAPSHOT.nbdsnap-diff.
  StorageSpec default_storage_for(const std::string& snapshot) const;
};

// Help text for `nbdkit --filter=nbdsnap --help`.
extern const char* const kConfigHelp;

}  // namespace nbdsnap
