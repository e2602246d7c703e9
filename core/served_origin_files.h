// SPDX-License-Identifier: BSD-3-Clause
// served_origin_files.h — files a front end serves as origins although no BlockDevice of the engine names
// them, so that difference storage never lands on one.
//
// The engine refuses storage whose file is an origin's device (BlockDevice::file_identity). The nbdkit
// filter's origins are exports of a plugin: the engine sees no file behind them, so a snapshot could be given
// an origin's own file, or a new file in a directory the plugin serves, as difference storage, and
// copy-on-write would overwrite an origin's data. The front end records here what it learnt of the plugin's
// files (its file= and dir= parameters), and the engine checks every storage path against them
// (Engine::create_snapshot, Engine::append_storage).
//
// What is served is taken from the file system when storage is checked, not when it was recorded: a directory
// serves every regular file and block device directly in it, as nbdkit's file plugin does with dir=
// (following symbolic links), including files added after the start. Files are compared as the engine
// compares them (FileDevice::identity_of): a loop device over a served file is that file.
#pragma once

#include <string>
#include <vector>

#include "status.h"

namespace nbdsnap {

class ServedOriginFiles {
 public:
  // Records a served file (or block device) or directory. `path` is made absolute against the current
  // directory and symbolic links in it are resolved where it exists; `source` says where it came from, for
  // messages ("file=/srv/disk.img"). Not thread-safe: record everything before the engine starts.
  void add_file(const std::string& path, const std::string& source);
  void add_directory(const std::string& path, const std::string& source);
  bool empty() const { return files_.empty() && directories_.empty(); }

  // Checks a difference-storage path before it is opened or created. Refuses, with a message naming the file
  // and the reason:
  //  - already_exists: the path is a served file, however it is named (hard link, symbolic link, relative
  //    path, another device node of the same block device);
  //  - invalid_argument: the path names a file directly in a served directory (an export, or one as soon as
  //  it
  //    is created), or is a served directory itself. Another directory passes: it may hold storage files.
  // A relative path is taken from the current directory, as opening it would. `what` names the path in
  // messages ("difference storage PATH is ..."). Thread-safe.
  Status check_storage(const std::string& path, const std::string& what = "difference storage") const;

  // The identity (FileDevice::identity_of) of the file the plugin serves as export `name`, so that the engine
  // counts it as the origin's disk (Engine::attach_origin): a second export of the same file, through a hard
  // or symbolic link in a served directory, is then refused as a second origin, and so is an export that is
  // a snapshot's difference storage. With one file= and no dir=: that file, whatever the export's name; with
  // one dir= and no file=: the entry `name` directly in it, as nbdkit's file plugin serves it. Empty where
  // that cannot be known (several of them, none, an empty name or one with a slash, nothing there).
  // Thread-safe.
  std::string identity_of_export(const std::string& name) const;
  // The path of that file (same rule, whether or not it exists); empty where it cannot be known.
  std::string path_of_export(const std::string& name) const;

 private:
  struct Entry {
    std::string path;
    std::string source;
  };
  // `shown` is the path as messages name it ("difference storage D/e").
  Status check_identity(const std::string& path, const std::string& shown) const;
  Status check_location(const std::string& path, const std::string& shown) const;

  std::vector<Entry> files_;
  std::vector<Entry> directories_;
};

}  // namespace nbdsnap
