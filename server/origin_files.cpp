// SPDX-License-Identifier: BSD-3-Clause
// origin_files.cpp — opening origin files and keeping the origin list (see origin_files.h).
#include "origin_files.h"

#include <algorithm>
#include <chrono>
#include <filesystem>

#include "file_device.h"
#include "log.h"

namespace nbdsnap {

namespace {

// The list outlives the working directory of whoever asked: keep absolute paths.
std::string absolute_path(const std::string& path) {
  std::error_code ec;
  const auto absolute = std::filesystem::absolute(path, ec);
  return ec ? path : absolute.lexically_normal().string();
}

}  // namespace

OriginFiles::OriginFiles(Engine& engine, const std::string& state_dir, FileCache cache)
    : engine_(engine), list_(state_dir), cache_(cache) {}

Status OriginFiles::attach_at_start(const std::vector<OriginSpec>& command_line) {
  std::vector<OriginSpec> saved;
  if (Status status = list_.load(saved); !status.is_ok()) {
    // Serving the command line's origins beats not starting; the damaged file is kept for the administrator.
    log_error(status.to_string() + "; serving only the command line's origins");
    std::error_code ignored;
    std::filesystem::rename(list_.path(), list_.path() + ".damaged", ignored);
  }
  MutexLock lock(mutex_);
  for (const OriginSpec& spec : command_line) {
    const OriginSpec absolute{spec.name, absolute_path(spec.path), spec.read_only};
    if (Status status = attach_locked(absolute); !status.is_ok()) {
      return {status.code(), "origin " + spec.name + " (" + spec.path + "): " + status.message()};
    }
  }
  for (const OriginSpec& spec : saved) {
    if (std::any_of(command_line.begin(), command_line.end(),
                    [&](const auto& c) { return c.name == spec.name; })) {
      continue;
    }
    if (Status status = attach_locked(spec); !status.is_ok()) {
      log_error("listed origin " + spec.name + " (" + spec.path + ") not attached: " + status.to_string() +
                "; it stays listed in " + list_.path() + " (nbdsnap origin detach " + spec.name +
                " unlists it)");
      listed_.push_back(spec);
    }
  }
  // The origins are served either way (the command line's were asked for): only the next start would miss
  // them, and the error is logged.
  (void)save_list_locked();
  return Status::ok();
}

Status OriginFiles::attach(const std::string& name, const std::string& path, bool read_only) {
  const OriginSpec spec{name, absolute_path(path), read_only};
  // Opened and attached without mutex_: the open waits as long as the file's file system stalls (a hung NFS
  // server) and the engine's attach as long as the state directory's does; the engine refuses the name and
  // the disk to other calls meanwhile (busy, "being attached"), and other attaches and detaches go on.
  std::string identity;
  if (Status status = open_and_attach(spec, identity); !status.is_ok()) return status;
  // A detach may come between the engine's attach and our turn at the list: its unlist() finds nothing to
  // drop then, so list the origin only while the engine still has this attach's origin under the name (and
  // not another attach's, after that detach).
  const std::shared_ptr<Origin> attached = engine_.find_origin(name);
  if (!attached || attached->file_identity() != identity) return Status::ok();
  const Status saved = change_list([&]() REQUIRES(mutex_) {
    if (engine_.find_origin(name) != attached) return false;
    list_attached_locked(spec);
    return true;
  });
  if (saved.is_ok()) return Status::ok();
  // Undone (the detach saves CBT state, in the same failing directory), and only this attach's origin: a
  // detach and another attach of the name may have come meanwhile.
  if (Status undone = engine_.detach_origin(name, /*force=*/true, attached.get());
      !undone.is_ok() && undone.code() != Errc::not_found) {
    log_warning("origin " + name + " detached again with an error: " + undone.to_string());
  }
  return {saved.code(), "origin '" + name + "' not attached: " + saved.message() +
                            (saved.code() == Errc::busy
                                 ? "; attach again once it answers"
                                 : "; the next start would not serve it: make the state directory writable "
                                   "and attach again")};
}

Status OriginFiles::attach_locked(const OriginSpec& spec) {
  std::string identity;
  if (Status status = open_and_attach(spec, identity); !status.is_ok()) return status;
  list_attached_locked(spec);
  return Status::ok();
}

Status OriginFiles::open_and_attach(const OriginSpec& spec, std::string& identity) {
  // Refused before anything is opened, naming the origin or snapshot that uses the disk: the open would meet
  // our own lock on it first (the file under another path, a loop device over it or the file behind one).
  if (FileDevice::identity_of(spec.path, identity)) {
    if (Status s = engine_.check_origin_unused(spec.name, identity); !s) return s;
  }
  std::unique_ptr<FileDevice> device;
  Status status = FileDevice::open(spec.path, spec.read_only, device, cache_);
  if (!status.is_ok()) return status;
  identity = device->file_identity();  // the file opened, not the path
  return engine_.attach_origin(spec.name, std::shared_ptr<BlockDevice>(std::move(device)), spec.read_only);
}

void OriginFiles::list_attached_locked(const OriginSpec& spec) {
  // A listed origin that could not be attached at start is replaced by the one attached now.
  listed_.erase(
      std::remove_if(listed_.begin(), listed_.end(), [&](const auto& l) { return l.name == spec.name; }),
      listed_.end());
  listed_.push_back(spec);
}

Status OriginFiles::unlist(const std::string& name, Unlisted& outcome) {
  Unlisted found = Unlisted::not_listed;
  Status saved = change_list([&]() REQUIRES(mutex_) {
    // Asked in our turn, as attach() asks before it lists: an attach whose engine attach came after the
    // caller's detach (or its look for the name) lists the name itself, and must keep its entry.
    if (engine_.find_origin(name)) {
      found = Unlisted::attached;
      return false;
    }
    const auto listed =
        std::find_if(listed_.begin(), listed_.end(), [&](const auto& l) { return l.name == name; });
    if (listed == listed_.end()) return false;
    listed_.erase(listed);
    found = Unlisted::dropped;
    return true;
  });
  if (saved.is_ok()) outcome = found;
  return saved;
}

Status OriginFiles::change_list(const std::function<bool()>& change) {
  MutexLock lock(mutex_);
  const auto deadline = std::chrono::steady_clock::now() + kListWaitLimit;
  while (writing_) {
    if (!written_.wait_until(mutex_, deadline) && writing_) {
      return {Errc::busy, "the origin list " + list_.path() + " is being written by another call, and its " +
                              "file system has not answered for " + std::to_string(kListWaitLimit.count()) +
                              " s"};
    }
  }
  const std::vector<OriginSpec> before = listed_;
  if (!change()) return Status::ok();
  const std::vector<OriginSpec> after = listed_;
  writing_ = true;
  // Written without mutex_: the write waits as long as the state directory's file system stalls.
  lock.unlock();
  Status saved = list_.save(after);
  lock.lock();
  writing_ = false;
  written_.notify_all();
  if (saved.is_ok()) return saved;
  log_error("origin list not saved (" + saved.to_string() + ")");
  listed_ = before;  // a failed save replaced nothing: the file still lists `before`
  return {saved.code(), "the origin list " + list_.path() + " could not be saved (" + saved.message() + ")"};
}

Status OriginFiles::save_list_locked() {
  Status status = list_.save(listed_);
  if (!status.is_ok()) {
    log_error("origin list not saved (" + status.to_string() + "): the next start may serve other origins");
  }
  return status;
}

}  // namespace nbdsnap
