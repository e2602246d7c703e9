// SPDX-License-Identifier: BSD-3-Clause
// origin_files.cpp — opening origin files and keeping the origin list (see origin_files.h).
#include "origin_files.h"

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <optional>

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

Status OriginFiles::attach(const std::string& name, const std::string& path, bool read_only,
                           OriginInfo* attached_info) {
  const OriginSpec spec{name, absolute_path(path), read_only};
  // Listed first, and served only once the list says so: an origin served that the next start would not
  // serve has its writes go untracked in between, and undoing an attach after the fact can fail (a
  // snapshot-create of the origin under way) or meet clients that connected meanwhile. The name is
  // pending until the engine's attach has ended: unlist() waits for it.
  std::optional<OriginSpec> replaced;
  if (Status listed = list_pending(spec, replaced); !listed.is_ok()) return listed;
  // Opened and attached without mutex_: the open waits as long as the file's file system stalls (a hung NFS
  // server) and the engine's attach as long as the state directory's does; the engine refuses the name and
  // the disk to other calls meanwhile (busy, "being attached"), and other attaches and detaches go on.
  Status attached = Status::ok();
  try {
    attached = open_and_attach(spec, attached_info);
  } catch (...) {
    end_pending(spec, false, replaced);
    throw;
  }
  end_pending(spec, attached.is_ok(), replaced);
  return attached;
}

Status OriginFiles::list_pending(const OriginSpec& spec, std::optional<OriginSpec>& replaced) {
  // Refusals that need no list write: the name or the disk in use (the engine's own words).
  std::string identity;
  if (FileDevice::identity_of(spec.path, identity).is_ok()) {
    if (Status s = engine_.check_origin_unused(spec.name, identity); !s) return s;
  }
  {
    MutexLock lock(mutex_);  // at once, not after the wait for another call's list write
    if (pending_.count(spec.name)) return pending_attach(spec.name);
  }
  Status refused = Status::ok();
  const Status saved = change_list([&]() REQUIRES(mutex_) {
    if (pending_.count(spec.name)) {
      refused = pending_attach(spec.name);
      return false;
    }
    if (engine_.find_origin(spec.name)) {
      refused = engine_.check_origin_unused(spec.name, "");
      return false;
    }
    // A listed origin that could not be attached at start is replaced by this one (and put back if this
    // attach fails).
    replaced.reset();
    const auto listed =
        std::find_if(listed_.begin(), listed_.end(), [&](const auto& l) { return l.name == spec.name; });
    if (listed != listed_.end()) {
      replaced = *listed;
      listed_.erase(listed);
    }
    listed_.push_back(spec);
    pending_.insert(spec.name);
    return true;
  });
  if (!refused.is_ok()) return refused;
  if (saved.is_ok()) return Status::ok();
  {
    MutexLock lock(mutex_);  // change_list put the list back
    pending_.erase(spec.name);
    pending_done_.notify_all();
  }
  return {saved.code(), "origin '" + spec.name + "' not attached: " + saved.message() +
                            (saved.code() == Errc::busy
                                 ? "; attach again once it answers"
                                 : "; the next start would not serve it: make the state directory writable "
                                   "and attach again")};
}

void OriginFiles::end_pending(const OriginSpec& spec, bool attached,
                              const std::optional<OriginSpec>& replaced) {
  if (!attached) {
    const Status saved = change_list([&]() REQUIRES(mutex_) {
      const auto listed =
          std::find_if(listed_.begin(), listed_.end(), [&](const auto& l) { return l.name == spec.name; });
      if (listed == listed_.end() || !(*listed == spec)) return false;
      if (replaced) {
        *listed = *replaced;
      } else {
        listed_.erase(listed);
      }
      return true;
    });
    if (!saved.is_ok()) {
      log_error("origin " + spec.name + " was not attached but stays listed: " + saved.message() +
                "; the next start tries to attach it (nbdsnap origin detach " + spec.name + " unlists it)");
    }
  }
  MutexLock lock(mutex_);
  pending_.erase(spec.name);
  pending_done_.notify_all();
}

Status OriginFiles::attach_locked(const OriginSpec& spec) {
  if (Status status = open_and_attach(spec, nullptr); !status.is_ok()) return status;
  list_attached_locked(spec);
  return Status::ok();
}

Status OriginFiles::open_and_attach(const OriginSpec& spec, OriginInfo* attached) {
  // Refused before anything is opened, naming the origin or snapshot that uses the disk: the open would meet
  // our own lock on it first (the file under another path, a loop device over it or the file behind one).
  std::string identity;
  if (FileDevice::identity_of(spec.path, identity)) {
    if (Status s = engine_.check_origin_unused(spec.name, identity); !s) return s;
  }
  std::unique_ptr<FileDevice> device;
  Status status = FileDevice::open(spec.path, spec.read_only, device, cache_);
  if (!status.is_ok()) return status;
  return engine_.attach_origin(spec.name, std::shared_ptr<BlockDevice>(std::move(device)), spec.read_only, 0,
                               0, {}, attached);
}

void OriginFiles::list_attached_locked(const OriginSpec& spec) {
  // A listed origin that could not be attached at start is replaced by the one attached now.
  listed_.erase(
      std::remove_if(listed_.begin(), listed_.end(), [&](const auto& l) { return l.name == spec.name; }),
      listed_.end());
  listed_.push_back(spec);
}

Status OriginFiles::unlist(const std::string& name, Unlisted& outcome, bool wait_for_attach) {
  {
    // An attach of the name between its listing and the end of the engine's attach: whether the entry is
    // its origin's or a failed attach's is known only then.
    MutexLock lock(mutex_);
    if (!wait_for_attach && pending_.count(name)) return pending_attach(name);
    const auto deadline = std::chrono::steady_clock::now() + kListWaitLimit;
    while (pending_.count(name)) {
      if (!pending_done_.wait_until(mutex_, deadline) && pending_.count(name)) {
        return {Errc::busy, "origin '" + name + "' is being attached, for longer than " +
                                std::to_string(kListWaitLimit.count()) +
                                " s (its file or the CBT state directory may not be answering); try again "
                                "once origin-attach has returned"};
      }
    }
  }
  Unlisted found = Unlisted::not_listed;
  Status saved = change_list([&]() REQUIRES(mutex_) {
    // Asked in our turn: an attach listed since (pending again) or attached since owns the entry now.
    if (pending_.count(name) || engine_.find_origin(name)) {
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

Status OriginFiles::pending_attach(const std::string& name) {
  return {Errc::busy, "origin '" + name +
                          "' is being attached by another origin-attach (its file or the state directory may "
                          "not be answering); try again once it has returned"};
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
