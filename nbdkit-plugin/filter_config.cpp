// SPDX-License-Identifier: BSD-3-Clause
// filter_config.cpp — parsing and checking the filter's parameters.
#include "filter_config.h"

#include <strings.h>
#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <string_view>

#include <sys/stat.h>
#include <unistd.h>

#include "export_name.h"
#include "object_file_name.h"
#include "state_directory.h"
#include "tuning.h"
#include "units.h"

namespace nbdsnap {
namespace {

// Relative paths are resolved against the directory nbdkit was started in.
Status absolute_path(const std::string& key, const std::string& path, std::string& out) {
  if (path.empty()) return {Errc::invalid_argument, key + " needs a path"};
  if (path[0] == '/') {
    out = path;
    return Status::ok();
  }
  char cwd[4096];
  if (getcwd(cwd, sizeof cwd) == nullptr) return Status::from_errno(errno, key + ": getcwd");
  out = std::string(cwd) + "/" + path;
  return Status::ok();
}

const OptionSpelling kSpelling{kParameterPrefix, "="};

// nbdsnap-storage=PATH must exist: a misspelt directory must not silently become a file named like it.
Status check_storage_path(const std::string& path, bool& is_directory) {
  struct stat st {};
  if (stat(path.c_str(), &st) != 0) {
    if (errno != ENOENT) return Status::from_errno(errno, "nbdsnap-storage=" + path);
    return {Errc::not_found,
            "nbdsnap-storage=" + path + " does not exist: mkdir " + path +
                " for one file per snapshot in it, or create the file first (e.g. fallocate -l SIZE " + path +
                ")"};
  }
  is_directory = S_ISDIR(st.st_mode);
  if (!is_directory && !S_ISREG(st.st_mode) && !S_ISBLK(st.st_mode))
    return {Errc::invalid_argument,
            "nbdsnap-storage=" + path + " is neither a directory, a regular file nor a block device"};
  return Status::ok();
}

// true/false, yes/no, on/off, 1/0 (as nbdkit_parse_bool reads them).
Status parse_bool_parameter(const std::string& key, const std::string& value, bool& out) {
  for (const char* yes : {"1", "true", "yes", "on"}) {
    if (strcasecmp(value.c_str(), yes) == 0) return out = true, Status::ok();
  }
  for (const char* no : {"0", "false", "no", "off"}) {
    if (strcasecmp(value.c_str(), no) == 0) return out = false, Status::ok();
  }
  return {Errc::invalid_argument, key + "=" + value + ": give true or false"};
}

}  // namespace

const char* config_help() {
  static const std::string help = [] {
    std::string text =
        "nbdsnap-control=SOCKET        Serve the nbdsnap control protocol on this Unix socket.\n"
        "nbdsnap-control-max-sessions=N  Control clients served at once (1..1024, default 32); one more\n"
        "                              gets a busy error.\n"
        "nbdsnap-state-dir=DIR         Keep change block tracking state here across restarts.\n"
        "nbdsnap-storage=PATH[:SIZE]   Default difference storage for snapshots created without any: an\n"
        "                              existing file or device (PATH:OFFSET+LENGTH: a range of it), or a\n"
        "                              directory holding one SNAPSHOT.nbdsnap-diff of SIZE per snapshot.\n"
        "nbdsnap-storage-limit=SIZE    Default limit of difference storage per snapshot.\n"
        "nbdsnap-storage-cache=MODE    none: open difference storage with O_DIRECT (the page cache "
        "bypassed,\n"
        "                              as file cache=none does for the origin); writeback (default).\n"
        "nbdsnap-reflink=auto|off      Accepted for nbdsnapd's --reflink; the filter always copies old\n"
        "                              chunks (the plugin owns the origin's file, "
        "nbdkit-nbdsnap-filter(1)).\n"
        "nbdsnap-storage-sparse=BOOL   Create the default storage's files sparse, not allocated at create\n"
        "                              (copy-on-write may then fail with ENOSPC and corrupt a snapshot).\n"
        "nbdsnap-default-origin=NAME   Origin name of the plugin's default export \"\" (default: default).";
    for (const TuningOption& option : tuning_options()) {
      std::string key = kParameterPrefix + std::string(option.name) + "=" + std::string(option.value_name);
      key.resize(std::max<size_t>(key.size() + 1, 30), ' ');
      text += "\n" + key + option.help_text() + ".";
    }
    return text;
  }();
  return help.c_str();
}

std::string_view canonical_parameter_name(std::string_view name) {
  if (name == "tracking-min-shift") return "tracking-block-min-shift";
  return name;
}

Status FilterConfig::apply(const std::string& key, const std::string& value) {
  const std::string_view name =
      canonical_parameter_name(std::string_view(key).substr(std::string_view(kParameterPrefix).size()));
  if (!given_.emplace(name).second) {
    return {Errc::invalid_argument,
            key + " is given more than once (or with its old name too): give it once"};
  }
  if (name == "control") return absolute_path(key, value, control_socket);
  if (name == "control-max-sessions") {
    uint64_t sessions = 0;
    if (Status s = parse_bounded_number(name, value, 1, 1024, kSpelling, sessions); !s) return s;
    control_max_sessions = unsigned(sessions);
    return Status::ok();
  }
  if (name == "state-dir") return absolute_path(key, value, state_dir);
  if (name == "default-origin") {
    if (Status s = check_object_name("origin", value); !s) return {s.code(), key + ": " + s.message()};
    default_origin = value;
    return Status::ok();
  }
  if (name == "storage") {
    StorageSpec spec;
    if (Status s = parse_storage_spec(value, spec); !s) return {s.code(), key + ": " + s.message()};
    if (Status s = absolute_path(key, spec.path, spec.path); !s) return s;
    storage = spec;
    return Status::ok();
  }
  if (name == "storage-sparse") return parse_bool_parameter(key, value, storage_sparse);
  if (name == "storage-limit") {
    if (Status s = parse_size(value, storage_limit); !s) return {s.code(), key + ": " + s.message()};
    return Status::ok();
  }
  if (name == "storage-cache") {
    // The plugin owns the origin's descriptor (file cache=none for it); this is the filter's own storage.
    return parse_file_cache(value, key, tuning.storage_cache);
  }
  if (name == "reflink") return parse_reflink_mode(value, key, tuning.reflink);
  if (const TuningOption* option = find_tuning_option(name)) {
    Status s = parse_tuning_option(*option, value, tuning, kSpelling);
    if (!s && key != kSpelling.name(name)) {  // an old name: say which one the message means
      return {s.code(), key + " is the old name of " + kSpelling.name(name) + ": " + s.message()};
    }
    return s;
  }
  return {Errc::invalid_argument, "unknown parameter " + key + " (see nbdkit --filter=nbdsnap --help)"};
}

void FilterConfig::note_plugin_parameter(const std::string& key, const std::string& value) {
  if (value.empty()) return;
  if (key == "file") served_files->add_file(value, key + "=" + value);
  if (key == "dir" || key == "directory") served_files->add_directory(value, key + "=" + value);
}

Status FilterConfig::complete() {
  if (Status s = sanitize_tuning(tuning, kSpelling); !s) return s;
  if (given_.count("control-max-sessions") != 0 && control_socket.empty()) {
    return {Errc::invalid_argument,
            "nbdsnap-control-max-sessions applies to the control socket: give nbdsnap-control=SOCKET too"};
  }
  // CBT state files in a directory the plugin serves would be exports, and origins, themselves: checked
  // before the directory is created, so a refused path leaves nothing behind.
  if (Status s = served_files->check_storage(state_dir, "nbdsnap-state-dir"); !s) return s;
  if (!state_dir.empty()) {
    if (Status s = prepare_state_directory(state_dir, "nbdsnap-state-dir="); !s) return s;
  }
  if (has_default_storage()) {
    if (Status s = check_storage_path(storage.path, storage_is_directory); !s) return s;
    if (storage_is_directory && storage.is_range())
      return {Errc::invalid_argument,
              "nbdsnap-storage=" + storage.to_string() + ": " + storage.path +
                  " is a directory: give the size of each snapshot's file as DIR:SIZE, "
                  "not a range"};
    if (storage_is_directory && storage.size == 0)
      return {Errc::invalid_argument,
              "nbdsnap-storage=" + storage.to_string() + ": " + storage.path +
                  " is a directory: give the size of each snapshot's file as DIR:SIZE"};
    if (Status s = served_files->check_storage(storage.path); !s)
      return {s.code(), "nbdsnap-storage: " + s.message()};
  }
  if (storage_sparse && storage.size == 0) {
    return {Errc::invalid_argument,
            "nbdsnap-storage-sparse=true applies to files the filter creates: give "
            "nbdsnap-storage=DIR:SIZE or PATH:SIZE (an existing file, device or range is "
            "used as it is)"};
  }
  return Status::ok();
}

StorageSpec FilterConfig::default_storage_for(const std::string& snapshot) const {
  StorageSpec spec = storage;
  spec.sparse = storage_sparse;
  if (storage_is_directory) spec.path = storage.path + "/" + object_file_name(snapshot, ".nbdsnap-diff");
  return spec;
}

}  // namespace nbdsnap
