// SPDX-License-Identifier: BSD-3-Clause
// cbt_store.h — saves and loads CBT state in the state directory, and knows whether the last stop was clean.
//
// One file per origin, STATE_DIR/<origin>.cbt (a long origin name gets a shortened, hashed file name:
// object_file_name.h; the file holds the name, and a file holding another name is not loaded). While an
// origin is tracked its file says "in use"; a clean stop rewrites it as "clean". Loading a file that is in
// use, damaged, or for another device size yields nothing, so the caller starts a new generation (CBT never
// under-reports after a crash).
#pragma once

#include <optional>
#include <string>

#include "cbt.h"
#include "status.h"

namespace nbdsnap {

enum class CbtLoadResult { loaded, missing, unclean, mismatch, damaged };
const char* cbt_load_result_name(CbtLoadResult result);

class CbtStore {
 public:
  explicit CbtStore(std::string state_dir) : dir_(std::move(state_dir)) {}
  bool enabled() const { return !dir_.empty(); }
  const std::string& directory() const { return dir_; }

  // Loads the state of an origin: `loaded` if it was saved cleanly for a device of device_size; `missing`
  // also when the file found holds another origin's state. `out` is filled for `loaded`, and for `unclean`
  // and `mismatch` too, so that a new generation can name the checkpoints it ends (Cbt's renewing
  // constructor); it is left alone for `missing` and `damaged`.
  CbtLoadResult load(const std::string& origin, uint64_t device_size, CbtState& out) const;
  // Writes the state atomically (temp file + rename). clean=false marks it in use. Errors keep their errno's
  // code (no_space, name_too_long when the state directory's path is too long...).
  Status save(const std::string& origin, const CbtState& state, bool clean) const;
  Status remove(const std::string& origin) const;

 private:
  std::string path_for(const std::string& origin) const;
  std::string dir_;
};

}  // namespace nbdsnap
