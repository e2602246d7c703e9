// filter_config.cpp — parsing and checking the filter's parameters.
#include "filter_config.h"

#include <cerrno>
#include <cstdlib>
#include <string_view>

#include <sys/stat.h>
#include <unistd.h>

#include "export_name.h"
#include "object_file_name.h"
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

Status parse_shift(const std::string& key, const std::string& value, unsigned minimum, unsigned& out) {
  char* end = nullptr;
  errno = 0;
  unsigned long shift = std::strtoul(value.c_str(), &end, 10);
  if (value.empty() || *end != '\0' || errno != 0 || shift < minimum || shift > 40)
    return {Errc::invalid_argument,
            key + "=" + value + ": expected a power of two exponent from " + std::to_string(minimum) + " to 40"};
  out = static_cast<unsigned>(shift);
  return Status::ok();
}

Status parse_checkpoints_kept(const std::string& key, const std::string& value, unsigned& out) {
  char* end = nullptr;
  errno = 0;
  const unsigned long kept = std::strtoul(value.c_str(), &end, 10);
  Status s = check_checkpoints_kept(kept);
  if (value.empty() || value[0] == '-' || *end != '\0' || errno != 0 || !s) {
    return {Errc::invalid_argument, key + "=" + value + ": " + check_checkpoints_kept(0).message()};
  }
  out = static_cast<unsigned>(kept);
  return Status::ok();
}

bool is_directory(const std::string& path) {
  struct stat st {};
  return stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

// nbdsnap-storage=PATH must exist: a misspelt directory must not silently become a file named like it.
Status check_storage_path(const std::string& path, bool& is_directory) {
  struct stat st {};
  if (stat(path.c_str(), &st) != 0) {
    if (errno != ENOENT) return Status::from_errno(errno, "nbdsnap-storage=" + path);
    return {Errc::not_found, "nbdsnap-storage=" + path + " does not exist: mkdir " + path +
                                 " for one file per snapshot in it, or create the file first (e.g. fallocate -l SIZE " +
                                 path + ")"};
  }
  is_directory = S_ISDIR(st.st_mode);
  if (!is_directory && !S_ISREG(st.st_mode) && !S_ISBLK(st.st_mode))
    return {Errc::invalid_argument,
            "nbdsnap-storage=" + path + " is neither a directory, a regular file nor a block device"};
  return Status::ok();
}

}  // namespace

const char* const kConfigHelp =
    "nbdsnap-control=SOCKET        Serve the nbdsnap control protocol on this Unix socket.\n"
    "nbdsnap-state-dir=DIR         Keep change block tracking state here across restarts.\n"
    "nbdsnap-storage=PATH[:SIZE]   Default difference storage for snapshots created without any: an\n"
    "                              existing file, or a directory holding one SNAPSHOT.nbdsnap-diff per snapshot.\n"
    "nbdsnap-storage-limit=SIZE    Default limit of difference storage per snapshot.\n"
    "nbdsnap-default-origin=NAME   Origin name of the plugin's default export \"\" (default: default).\n"
    "nbdsnap-chunk-min-shift=N     Smallest copy-on-write chunk is 2^N bytes (default 18).\n"
    "nbdsnap-tracking-min-shift=N  Smallest change tracking block is 2^N bytes (default 16).\n"
    "nbdsnap-checkpoints-kept=N    CBT checkpoints kept per origin, 2..128; older ones are dropped\n"
    "                              (default 16).";

Status FilterConfig::apply(const std::string& key, const std::string& value) {
  std::string_view name = std::string_view(key).substr(std::string_view(kParameterPrefix).size());
  if (name == "control") return absolute_path(key, value, control_socket);
  if (name == "state-dir") return absolute_path(key, value, state_dir);
  if (name == "default-origin") {
    if (Status s = check_object_name("origin", value); !s) return {s.code(), key + ": " + s.message()};
    default_origin = value;
    return Status::ok();
  }
  if (name == "storage") {
    std::string path;
    if (Status s = parse_storage_spec(value, path, storage_size); !s) return {s.code(), key + ": " + s.message()};
    return absolute_path(key, path, storage_path);
  }
  if (name == "storage-limit") {
    if (Status s = parse_size(value, storage_limit); !s) return {s.code(), key + ": " + s.message()};
    return Status::ok();
  }
  if (name == "chunk-min-shift") return parse_shift(key, value, 9, sizing.chunk_minimum_shift);
  if (name == "tracking-min-shift") return parse_shift(key, value, 9, sizing.tracking_block_minimum_shift);
  if (name == "checkpoints-kept") return parse_checkpoints_kept(key, value, checkpoints_kept);
  return {Errc::invalid_argument, "unknown parameter " + key + " (see nbdkit --filter=nbdsnap --help)"};
}

void FilterConfig::note_plugin_parameter(const std::string& key, const std::string& value) {
  if (value.empty()) return;
  if (key == "file") served_files->add_file(value, key + "=" + value);
  if (key == "dir" || key == "directory") served_files->add_directory(value, key + "=" + value);
}

Status FilterConfig::complete() {
  if (!state_dir.empty() && !is_directory(state_dir))
    return {Errc::not_found, "nbdsnap-state-dir " + state_dir + " is not a directory"};
  // CBT state files in a directory the plugin serves would be exports, and origins, themselves.
  if (Status s = served_files->check_storage(state_dir, "nbdsnap-state-dir"); !s) return s;
  if (has_default_storage()) {
    if (Status s = check_storage_path(storage_path, storage_is_directory); !s) return s;
    if (storage_is_directory && storage_size == 0)
      return {Errc::invalid_argument,
              "nbdsnap-storage=" + storage_path + " is a directory: give the size of each snapshot's file as DIR:SIZE"};
    if (Status s = served_files->check_storage(storage_path); !s) return {s.code(), "nbdsnap-storage: " + s.message()};
  }
  return Status::ok();
}

StorageSpec FilterConfig::default_storage_for(const std::string& snapshot) const {
  StorageSpec spec;
  spec.path = storage_is_directory ? storage_path + "/" + object_file_name(snapshot, ".nbdsnap-diff") : storage_path;
  spec.size = storage_size;
  return spec;
}

}  // namespace nbdsnap
