// SPDX-License-Identifier: BSD-3-Clause
// engine.cpp — registries of origins and snapshots, and the orchestration of take, destroy and detach.
//
// Design notes. Control operations are serialised by control_mutex_, so a take never interleaves with a
// destroy or a detach. The registry mutex_ is held only to look things up, never across I/O or a freeze.
// Control calls whose I/O a stalled disk or file system (a hung NFS server, a frozen file system) can hold
// for as long as it stalls do that I/O without control_mutex_, so that it holds up only the calls that need
// the same snapshot, origin or storage, which fail with busy meanwhile, and not every control call of the
// engine. Each registers what it works on under control_mutex_ first:
// - destroy (destroying_, then releasing_): waits for its images' reads, writes copying to its storage and
//   its writeback, then closes and removes its storage files. The files' disk uses and paths, listed before
//   the release, stay in use and in the ledger until it has ended.
// - detach (detaching_): closes the origin's gates (waiting for its I/O in flight), drops its image, saves
// its
//   CBT, lets go of its device; the origin stays in origins_, its disk in use, until then.
// - create (creating_) and append (appending_): create and size the storage files in storage nothing
//   allocates from (a Snapshot not yet registered, a staged DiffStorage), then take control_mutex_ again,
//   check every new area against the disks in use *now* (a concurrent create or append may have claimed the
//   same bytes) and register or adopt it. The disks listed before the files were made may be stale; the check
//   under the lock is the one that counts. Their paths are reserved meanwhile (storage_paths_in_creation_):
//   two calls making one new file would race for its lock, and the loser's clean-up could remove the file
//   the winner uses.
// - attach (attaching_): reads the origin's fingerprint and loads and saves its CBT state (state directory
//   I/O); the name and the disk are reserved meanwhile, and the origin joins origins_ once that is done.
// - take (taking_): holds every origin of the snapshot, then waits for the writes in flight at each, for at
//   most EngineConfig::take_drain_limit all together; then switches them all, or thaws them all and takes
//   nothing. Meanwhile the snapshot's members and storage, and its origins' CBTs, gates and copy-on-write
//   targets, are the take's alone: the calls that would change them get busy. It refuses a snapshot whose
//   origin is being detached or reset (its freeze would wait for the same I/O).
// - CBT reset (resetting_): holds the origin's writes and waits (bounded) for those in flight, then starts
//   the new generation; no detach (whose CBT save would miss it), take or checkpoint-delete of the origin
//   meanwhile.
// Each entry is given back however its call ends (a ScopeExit armed just before the entry is made, declared
// outside every lock scope so that it runs after they end, taking mutex_ itself): a call left by
// std::bad_alloc half-way must not leave its snapshot, origin or storage path answering busy for good.
// Take freezes the trackers of all its origins before switching any of them, so the snapshot holds, for every
// origin, exactly the writes that completed before the freeze. It first holds new writes at every origin (in
// name order), then waits for the writes in flight at each: the drains overlap, so a take of 32 busy origins
// waits about as long as the slowest origin, not the sum of all (bench T8), and no origin stays frozen while
// the others are still being drained one by one.
#include "engine.h"

#include <algorithm>
#include <filesystem>
#include <new>

#include "block_device_writes.h"
#include "buffer_budget.h"
#include "chunk_buffer.h"
#include "export_name.h"
#include "file_device.h"
#include "scope_exit.h"
#include "served_origin_files.h"
#include "snapshot.h"
#include "tracker.h"
#include "units.h"

namespace nbdsnap {

namespace {

Status unknown_origin(const std::string& name) {
  return {Errc::not_found, "origin '" + name + "' does not exist"};
}
Status unknown_snapshot(const std::string& name) {
  return {Errc::not_found, "snapshot '" + name + "' does not exist"};
}

void post(EventLog& events, EventType type, const std::string& snapshot, const std::string& origin,
          const std::string& reason) {
  Event e;
  e.type = type;
  e.snapshot = snapshot;
  e.origin = origin;
  e.reason = reason;
  events.post(std::move(e));
}

// Freed chunk buffers the pool may keep beyond the budget: the copies in flight when memory is full (each
// writer's chunk is stored by the writer itself, chunk_map.h), so that those do not map and fault every time.
constexpr uint64_t kPoolRoomForCopiesInFlight = 64ull << 20;

}  // namespace

Engine::Engine(EngineConfig config)
    : config_(std::move(config)),
      store_(config_.state_dir),
      storage_ledger_(config_.state_dir),
      budget_(std::make_shared<BufferBudget>(config_.chunk_buffer_budget)) {
  // The pool keeps what the budget may hold, and room for copies in flight past it (written back at once).
  set_chunk_buffer_pool_limit(config_.chunk_buffer_budget + kPoolRoomForCopiesInFlight);
  // Snapshots die with the process: storage files a crashed run created are garbage now.
  for (const std::string& file : storage_ledger_.remove_leftovers()) {
    post(events_, EventType::snapshot_destroyed, "", "",
         "removed difference storage " + file + " left by a run that did not stop cleanly");
  }
}

Engine::~Engine() {
  events_.interrupt();
  std::map<std::string, std::shared_ptr<Snapshot>> snapshots;
  std::map<std::string, std::shared_ptr<Origin>> origins;
  {
    MutexLock lock(mutex_);
    snapshots.swap(snapshots_);
    origins.swap(origins_);
  }
  // Connections that still hold an origin get errors from now on. Chunk maps refer to their snapshot: unhook
  // them from the trackers before the snapshots go.
  for (auto& [name, origin] : origins) {
    origin->close_io();
    origin->tracker().set_cow_target(nullptr);
  }
  for (auto& [name, snapshot] : snapshots) {
    snapshot->image_gate().close();
    snapshot->shutdown();
  }
  (void)storage_ledger_.record({});
}

void Engine::record_created_storage() {
  // Listed and written under one lock: two calls (a destroy's release, a create) never write their lists in
  // the other order, which would leave the older list in the ledger.
  MutexLock ledger(ledger_mutex_);
  std::vector<std::string> files;
  {
    MutexLock lock(mutex_);
    for (const auto* registry : {&snapshots_, &destroying_}) {
      for (const auto& [name, snapshot] : *registry) {
        for (const auto& area : snapshot->storage().areas()) {
          if (area.created_by_engine) files.push_back(area.path);
        }
      }
    }
    for (const auto& [name, released] : releasing_) {
      files.insert(files.end(), released.created_files.begin(), released.created_files.end());
    }
  }
  std::sort(files.begin(), files.end());  // a destroying snapshot's files may be listed twice
  files.erase(std::unique(files.begin(), files.end()), files.end());
  (void)storage_ledger_.record(files);  // best effort: a missing ledger only means leftovers after a crash
}

void Engine::give_back_memory() {
  release_free_chunk_buffers();
  if (config_.memory_released) config_.memory_released();
}

// ---------------------------------------------------------------- origins

Status Engine::check_origin_unused_locked(const std::string& name, const std::string& identity) const {
  {
    MutexLock lock(mutex_);
    if (detaching_.count(name)) return being_detached(name);
    if (attaching_.count(name)) return being_attached(name);
    if (origins_.count(name)) return {Errc::already_exists, "origin '" + name + "' is already attached"};
  }
  if (!identity.empty()) {
    const std::vector<DiskUse> in_use = disks_in_use();
    if (const DiskUse* used = find_overlap(in_use, {identity, 0, 0, ""})) {  // an origin is the whole disk
      return {Errc::already_exists, "the device of origin '" + name + "' is already in use: " +
                                        used->extent_text() + " it is " + used->user};
    }
  }
  return Status::ok();
}

Status Engine::check_origin_unused(const std::string& name, const std::string& identity) const {
  MutexLock control(control_mutex_);
  return check_origin_unused_locked(name, identity);
}

Status Engine::attach_origin(const std::string& name, std::shared_ptr<BlockDevice> device, bool read_only,
                             uint64_t size, uint64_t minimum_io_size, const std::string& file_identity,
                             OriginInfo* attached, const std::string& file_path) {
  if (Status s = check_object_name("origin", name); !s) return s;
  if (size == 0 && device) size = device->size();
  if (minimum_io_size == 0) minimum_io_size = device ? device->minimum_io_size() : 1;
  if (size == 0) return {Errc::invalid_argument, "origin '" + name + "' has no size"};
  const std::string identity = device ? device->file_identity() : file_identity;
  ScopeExit reserved(
      [&] {
        MutexLock lock(mutex_);
        attaching_.erase(name);
      },
      ScopeExitArmed::later);
  {
    MutexLock control(control_mutex_);
    if (Status s = check_origin_unused_locked(name, identity); !s) return s;
    MutexLock lock(mutex_);
    reserved.arm();
    attaching_[name] = identity;  // the name and the disk are ours until the origin is registered or given up
  }
  // Without control_mutex_ (design notes): the device's fingerprint (an fstat) and the CBT state file's load
  // and save wait as long as the origin's file system or the state directory stalls.
  const uint64_t block_size = tracking_block_size(size, minimum_io_size, config_.sizing);
  std::unique_ptr<Cbt> cbt;
  std::string renewed_because;
  CbtState state;
  bool state_ended = false;  // a saved state was read but cannot be resumed: the new generation names its end
  if (store_.enabled()) {
    const CbtLoadResult result = store_.load(name, size, state);
    const std::string fingerprint =
        device ? device->content_fingerprint() : FileDevice::content_fingerprint_of(file_path, identity);
    state_ended = true;
    if (result != CbtLoadResult::loaded) {
      renewed_because = cbt_load_result_name(result);
      state_ended = result == CbtLoadResult::unclean || result == CbtLoadResult::mismatch;
    } else if (state.block_size != block_size) {
      renewed_because = "the tracking block size changed";
    } else if (!state.device_fingerprint.empty() && state.device_fingerprint != fingerprint) {
      renewed_because = fingerprint_change_reason(state.device_fingerprint, fingerprint);
    } else {
      cbt = std::make_unique<Cbt>(std::move(state), config_.checkpoints_kept);
    }
  } else {
    renewed_because = "no state directory";
  }
  if (!cbt) {
    // The map holds a change number per tracking block; for a huge origin (a sparse file of exabytes) that
    // can be more memory than the process gets: refuse the origin by name rather than end the process.
    try {
      cbt = state_ended
                ? std::make_unique<Cbt>(size, block_size, config_.checkpoints_kept, state, renewed_because)
                : std::make_unique<Cbt>(size, block_size, config_.checkpoints_kept);
    } catch (const std::bad_alloc&) {
      const uint64_t blocks = size / block_size + (size % block_size != 0);
      return {Errc::no_memory,
              "origin '" + name + "': its change tracking map of " + std::to_string(blocks) + " blocks of " +
                  std::to_string(block_size) +
                  " bytes could not be allocated; raise the tracking block maximum shift or "
                  "lower its maximum count (tracking-block-max-shift, tracking-block-max-count)"};
    }
  }
  // From now until a clean save the state on disk says "in use": a crash means a new generation next time.
  if (store_.enabled()) {
    if (Status s = store_.save(name, cbt->state(), false); !s) {
      return {s.code(), "cannot record CBT state of origin '" + name + "': " + s.message()};
    }
  }
  const std::string generation = cbt->generation().to_string();
  std::string attached_reason = "generation " + generation;
  if (const std::vector<std::string>& dropped = cbt->checkpoints_dropped_at_resume(); !dropped.empty()) {
    std::string names;
    for (const std::string& checkpoint : dropped) names += (names.empty() ? "" : ", ") + checkpoint;
    attached_reason += "; checkpoints dropped: " + names + " (checkpoints-kept is " +
                       std::to_string(config_.checkpoints_kept) + ", fewer than were saved)";
  }
  const std::string fingerprint_path = device ? std::string() : file_path;
  auto origin =
      std::make_shared<Origin>(name, std::move(device), size, minimum_io_size, read_only,
                               std::make_unique<Tracker>(std::move(cbt)), identity, fingerprint_path);
  {
    // Registered without control_mutex_: attaching_ has kept the name and the disk from every other call.
    MutexLock lock(mutex_);
    OriginInfo info = attached ? info_of_locked(name, *origin) : OriginInfo{};  // may throw: given up then
    origins_[name] = origin;  // first: it may throw, and then the attach is given up
    attaching_.erase(name);
    reserved.dismiss();
    if (attached) *attached = std::move(info);
  }
  post(events_, EventType::origin_attached, "", name, attached_reason);
  if (!renewed_because.empty()) {
    post(events_, EventType::generation_renewed, "", name,
         "new CBT generation " + generation + ": " + renewed_because);
  }
  return Status::ok();
}

Status Engine::detach_origin(const std::string& name, bool force, bool* detached) {
  if (detached) *detached = false;
  std::shared_ptr<Origin> origin;
  std::shared_ptr<Snapshot> snapshot;
  ScopeExit reserved(
      [&] {
        MutexLock lock(mutex_);
        detaching_.erase(name);
      },
      ScopeExitArmed::later);
  {
    MutexLock control(control_mutex_);
    MutexLock lock(mutex_);
    if (detaching_.count(name)) return being_detached(name);
    if (attaching_.count(name)) return being_attached(name);
    if (resetting_.count(name)) return being_reset(name);  // the CBT saved below would miss the reset
    auto it = origins_.find(name);
    if (it == origins_.end()) return unknown_origin(name);
    origin = it->second;
    const std::string member_of = snapshot_of_origin_locked(name);
    // Even forced: a destroy drains (and switches) this origin's copy-on-write itself, and a create has
    // checked its storage against this origin's chunk size.
    if (Status s = check_member_of_locked(member_of); !s) return s;
    snapshot = find_snapshot_locked(member_of);
    if (snapshot && !force) {
      return {Errc::busy,
              "origin '" + name + "' is in snapshot '" + snapshot->name() + "' (destroy it or force)"};
    }
    reserved.arm();
    detaching_[name] =
        member_of;  // from here no other call uses the origin, nor takes or destroys its snapshot
  }
  // Without control_mutex_ from here (design notes): close the origin's gates: in-flight requests finish
  // (writes tracked; a stalled disk holds them, and this detach, as long as it stalls), and every later
  // request of a connection that still holds this origin fails, so none can write it untracked after its
  // CBT is saved below. From here nothing writes the origin through nbdsnap, so an image read in flight
  // still reads take-time data; dropping the image then waits for those reads and fails later ones with
  // not_found. detaching_ keeps takes and destroys off its snapshot: the copy-on-write target is ours.
  origin->close_io();
  origin->tracker().set_cow_target(nullptr);  // closed: nobody is inside
  if (snapshot) snapshot->drop_origin(name);
  Status saved = store_.enabled() ? save_clean(*origin) : Status::ok();
  // The device (and its file's lock) goes now, even while connections still hold the Origin. The origin
  // stays in origins_ until it has let go (its disk counts as in use until then); then the file can be
  // attached again at once.
  origin->release_device();
  {
    MutexLock lock(mutex_);
    origins_.erase(name);
    detaching_.erase(name);
    reserved.dismiss();
  }
  if (detached) *detached = true;
  post(events_, EventType::origin_detached, snapshot ? snapshot->name() : "", name,
       snapshot ? "forced out of its snapshot; its image is gone" : "");
  if (snapshot) give_back_memory();  // the image's buffers went in drop_origin()
  return saved;
}

std::shared_ptr<Origin> Engine::find_origin(const std::string& name) const {
  MutexLock lock(mutex_);
  auto it = origins_.find(name);
  return it == origins_.end() ? nullptr : it->second;
}

Status Engine::origin_info(const std::string& name, OriginInfo& out) const {
  MutexLock lock(mutex_);
  auto it = origins_.find(name);
  if (it == origins_.end()) return unknown_origin(name);
  out = info_of_locked(name, *it->second);
  return Status::ok();
}

OriginInfo Engine::info_of_locked(const std::string& name, Origin& origin) const {
  OriginInfo out;
  out.name = name;
  out.size = origin.size();
  out.minimum_io_size = origin.minimum_io_size();
  out.read_only = origin.read_only();
  out.generation = origin.cbt().generation().to_string();
  out.change_number = origin.cbt().current_number();
  out.tracking_block_size = origin.cbt().block_size();
  out.chunk_size = chunk_size(origin.size(), origin.minimum_io_size(), config_.sizing);
  out.snapshot = snapshot_of_origin_locked(name);
  return out;
}

std::vector<OriginInfo> Engine::origins() const {
  std::vector<std::string> names;
  {
    MutexLock lock(mutex_);
    for (const auto& [name, origin] : origins_) names.push_back(name);
  }
  std::vector<OriginInfo> infos;
  for (const auto& name : names) {
    OriginInfo info;
    if (origin_info(name, info)) infos.push_back(std::move(info));
  }
  return infos;
}

// ---------------------------------------------------------------- CBT

Status Engine::read_cbt(const std::string& origin, const std::string& snapshot,
                        const std::function<Status(const CbtView&)>& read) const {
  if (snapshot.empty()) {
    auto live = find_origin(origin);
    if (!live) return unknown_origin(origin);
    return live->cbt().visit_live(read);
  }
  std::shared_ptr<Snapshot> frozen_by;
  {
    MutexLock lock(mutex_);
    frozen_by = find_snapshot_locked(snapshot);
  }
  if (!frozen_by) return unknown_snapshot(snapshot);
  const auto frozen = frozen_by->frozen_cbt(origin);
  if (!frozen) {
    return {Errc::not_found, "snapshot '" + snapshot + "' has no CBT of origin '" + origin +
                                 "' (it is not taken yet, or the origin is not in it)"};
  }
  return read(frozen->view());
}

namespace {

CbtInfo info_of(const std::string& origin, const std::string& snapshot, const CbtView& view) {
  return {origin,           snapshot,        view.generation.to_string(),
          view.number,      view.block_size, view.map.size(),
          view.device_size, view.checkpoints};
}

Status check_query_offset(const CbtMapQuery& query, const CbtView& view) {
  if (query.offset <= view.device_size) return Status::ok();
  return {Errc::out_of_range, "offset " + std::to_string(query.offset) + " is beyond the end of origin '" +
                                  query.origin + "' (" + std::to_string(view.device_size) + " bytes)"};
}

}  // namespace

Status Engine::cbt_info(const std::string& origin, const std::string& snapshot, CbtInfo& out) const {
  return read_cbt(origin, snapshot, [&](const CbtView& view) {
    out = info_of(origin, snapshot, view);
    return Status::ok();
  });
}

Status Engine::cbt_map(const std::string& origin, const std::string& since_checkpoint,
                       std::vector<Range>& out) const {
  CbtInfo info;
  CbtRangesPage page;
  CbtMapQuery query;
  query.origin = origin;
  query.since = since_checkpoint;
  if (Status s = cbt_map(query, info, page); !s) return s;
  out = std::move(page.ranges);
  return Status::ok();
}

Status Engine::cbt_map(const CbtMapQuery& query, CbtInfo& info, CbtRangesPage& page) const {
  if (query.max_items == 0) return {Errc::invalid_argument, "a page of the CBT map holds at least one range"};
  return read_cbt(query.origin, query.snapshot, [&](const CbtView& view) {
    if (Status s = check_query_offset(query, view); !s) return s;
    Checkpoint since;  // number 0: every block changed in this generation
    if (!query.since.empty()) {
      if (Status s = view.find_checkpoint(query.since, since); !s) {
        return Status(s.code(), "origin '" + query.origin + "': " + s.message());
      }
    }
    info = info_of(query.origin, query.snapshot, view);
    page = view.changed_ranges(since.number, query.offset, query.length, query.max_items);
    return Status::ok();
  });
}

Status Engine::cbt_raw_map(const CbtMapQuery& query, CbtInfo& info, CbtRunsPage& page) const {
  if (query.max_items == 0) return {Errc::invalid_argument, "a page of the CBT map holds at least one run"};
  return read_cbt(query.origin, query.snapshot, [&](const CbtView& view) {
    if (Status s = check_query_offset(query, view); !s) return s;
    info = info_of(query.origin, query.snapshot, view);
    page = view.number_runs(query.offset, query.length, query.max_items);
    return Status::ok();
  });
}

Status Engine::cbt_mark_dirty(const std::string& name, const std::vector<Range>& ranges) {
  auto origin = find_origin(name);
  if (!origin) return unknown_origin(name);
  for (const Range& r : ranges) {
    if (Status s = check_range(origin->size(), r.offset, r.length); !s) return s;
  }
  for (const Range& r : ranges) origin->cbt().mark_dirty(r.offset, r.length);
  return Status::ok();
}

Status Engine::cbt_reset(const std::string& name) {
  std::shared_ptr<Origin> origin;
  ScopeExit reserved(
      [&] {
        MutexLock lock(mutex_);
        resetting_.erase(name);
      },
      ScopeExitArmed::later);
  {
    MutexLock control(control_mutex_);
    MutexLock lock(mutex_);
    // Being detached: its gate is closing, a freeze would wait. Its snapshot being taken: the take freezes
    // this CBT.
    if (Status s = check_origin_unreserved_locked(name); !s) return s;
    auto it = origins_.find(name);
    if (it == origins_.end()) return unknown_origin(name);
    origin = it->second;
    reserved.arm();
    resetting_.insert(name);  // from here no detach, take or checkpoint-delete of it, nor a second reset
  }
  // Without control_mutex_ (design notes). A write in flight has marked the old map and may land after the
  // reset: wait for such writes, holding new ones, so that the new generation misses none (a hostile tester's
  // cbt-map showed [] for a write that landed after the reset). Bounded: a write stuck on a stalled disk
  // fails the reset, not the engine; and only this origin's writes and calls wait for it meanwhile.
  Status result = Status::ok();
  {
    IoGate::Freeze frozen(origin->tracker().gate(), IoGate::Freeze::Drain::later);
    if (frozen.wait_until_empty_for(config_.cbt_reset_drain_limit)) {
      origin->cbt().reset();
    } else {
      result = {Errc::busy, "origin '" + name + "' has writes in flight that did not finish within " +
                                std::to_string(config_.cbt_reset_drain_limit.count()) +
                                " ms (its disk or a snapshot's difference storage is not answering); the CBT "
                                "was not reset: try again"};
    }
  }
  reserved.run_now();
  if (!result) return result;
  post(events_, EventType::generation_renewed, "", name,
       "new CBT generation " + origin->cbt().generation().to_string() + ": reset by request");
  return Status::ok();
}

Status Engine::checkpoint_delete(const std::string& name, const std::string& checkpoint) {
  MutexLock control(control_mutex_);
  {
    MutexLock lock(mutex_);
    // Being detached: its CBT is being saved. Being reset, or its snapshot taken: its CBT is another
    // call's until that call has returned.
    if (Status s = check_origin_unreserved_locked(name); !s) return s;
  }
  auto origin = find_origin(name);
  if (!origin) return unknown_origin(name);
  if (Status s = origin->cbt().delete_checkpoint(checkpoint); !s) {
    return {s.code(), "origin '" + name + "': " + s.message()};
  }
  return Status::ok();
}

// ---------------------------------------------------------------- snapshots

std::shared_ptr<Snapshot> Engine::find_snapshot_locked(const std::string& name) const {
  auto it = snapshots_.find(name);
  return it == snapshots_.end() ? nullptr : it->second;
}

std::string Engine::cbt_not_saved_on_detach(const Status& save) {
  return "its CBT state could not be saved (" + save.message() +
         "), so its next attach starts a new CBT generation: back it up fully then";
}

std::string Engine::snapshot_of_origin_locked(const std::string& origin) const {
  for (const auto* registry : {&snapshots_, &destroying_, &creating_}) {
    for (const auto& [name, snapshot] : *registry) {
      const auto members = snapshot->origins();
      if (std::find(members.begin(), members.end(), origin) != members.end()) return name;
    }
  }
  return "";
}

Status Engine::being_destroyed(const std::string& name) {
  return {Errc::busy, "snapshot '" + name +
                          "' is being destroyed: it waits for I/O in flight (a disk or its difference "
                          "storage may not be answering); try again once snapshot-destroy has returned"};
}

Status Engine::being_created(const std::string& name) {
  return {Errc::busy,
          "snapshot '" + name +
              "' is being created: its difference storage files are being created and sized (their "
              "file system may not be answering); try again once snapshot-create has returned"};
}

Status Engine::being_attached(const std::string& name) {
  return {Errc::busy, "origin '" + name +
                          "' is being attached: its CBT state is being loaded and saved (the state directory "
                          "or the origin's file system may not be answering); try again once origin-attach "
                          "has returned"};
}

Status Engine::being_detached(const std::string& name) {
  return {Errc::busy,
          "origin '" + name +
              "' is being detached: it waits for I/O in flight (its disk or a snapshot's difference "
              "storage may not be answering); try again once origin-detach has returned"};
}

Status Engine::being_taken(const std::string& name) {
  return {Errc::busy, "snapshot '" + name +
                          "' is being taken: it waits for its origins' writes in flight (a disk may not be "
                          "answering); try again once snapshot-take has returned"};
}

Status Engine::being_reset(const std::string& name) {
  return {Errc::busy, "origin '" + name +
                          "' is having its CBT reset: it waits for the origin's writes in flight (its disk "
                          "may not be answering); try again once cbt-reset has returned"};
}

Status Engine::check_origin_unreserved_locked(const std::string& name) const {
  if (detaching_.count(name)) return being_detached(name);
  if (resetting_.count(name)) return being_reset(name);
  for (const auto& [snapshot, members] : taking_) {
    if (std::find(members.begin(), members.end(), name) != members.end()) return being_taken(snapshot);
  }
  return Status::ok();
}

Status Engine::missing_snapshot_locked(const std::string& name) const {
  if (destroying_.count(name)) return being_destroyed(name);
  if (creating_.count(name)) return being_created(name);
  return unknown_snapshot(name);
}

Status Engine::check_member_of_locked(const std::string& member_of) const {
  if (destroying_.count(member_of)) return being_destroyed(member_of);
  if (creating_.count(member_of)) return being_created(member_of);
  if (taking_.count(member_of)) return being_taken(member_of);
  return Status::ok();
}

Status Engine::check_no_origin_detaching_locked(const std::string& name) const {
  for (const auto& [origin, member_of] : detaching_) {
    if (member_of == name) return being_detached(origin);
  }
  return Status::ok();
}

uint64_t Engine::largest_chunk_locked(const std::vector<std::string>& origins, std::string& reason) const {
  const SizingRules& rules = config_.sizing;
  uint64_t largest = uint64_t{1} << std::min(rules.chunk_minimum_shift, rules.chunk_maximum_shift);
  reason = "the smallest chunk";
  for (const std::string& name : origins) {
    auto it = origins_.find(name);
    if (it == origins_.end()) continue;
    const uint64_t chunk = chunk_size(it->second->size(), it->second->minimum_io_size(), rules);
    if (chunk > largest || reason == "the smallest chunk") {
      largest = std::max(largest, chunk);
      reason = "one chunk of origin '" + name + "'";
    }
  }
  return largest;
}

AreaRequirements Engine::area_requirements(const std::vector<std::string>& origins) const {
  AreaRequirements requirements;
  requirements.in_use = disks_in_use();
  requirements.open_elsewhere = [this](const std::string& identity) { return open_storage_device(identity); };
  MutexLock lock(mutex_);
  requirements.minimum_size = largest_chunk_locked(origins, requirements.minimum_reason);
  return requirements;
}

Status Engine::check_storage_holds_a_chunk(Snapshot& snapshot, const std::vector<std::string>& origins,
                                           Errc code) const {
  std::string reason;
  const uint64_t chunk = largest_chunk_locked(origins, reason);
  for (const StorageAreaInfo& area : snapshot.storage().areas()) {
    if (area.size < chunk) {
      return {code, "difference storage " + area.path + " of snapshot '" + snapshot.name() + "' holds " +
                        format_size(area.size) + ", less than " + reason + " (" + format_size(chunk) +
                        "): copy-on-write could store nothing in it"};
    }
  }
  if (const uint64_t limit = snapshot.storage().limit(); limit != 0 && limit < chunk) {
    return {code, "the limit of snapshot '" + snapshot.name() + "' (" + format_size(limit) +
                      ") is less than " + reason + " (" + format_size(chunk) + "): no chunk could be stored"};
  }
  return Status::ok();
}

namespace {

// One spelling per file for storage_paths_in_creation_: absolute, with symbolic links and "." resolved as far
// as the path exists (the file itself may not yet). It asks the file system (lstat, readlink): never with a
// lock held, so a stalled file system stalls only the call that names a path on it.
std::string storage_path_key(const std::string& path) {
  std::error_code error;
  const std::filesystem::path canonical =
      std::filesystem::weakly_canonical(std::filesystem::absolute(path), error);
  return error ? path : canonical.string();
}

std::vector<std::string> storage_path_keys(const std::vector<StorageSpec>& specs) {
  std::vector<std::string> keys;
  keys.reserve(specs.size());
  for (const StorageSpec& spec : specs) keys.push_back(storage_path_key(spec.path));
  return keys;
}

}  // namespace

Status Engine::reserve_storage_paths_locked(const std::vector<StorageSpec>& specs,
                                            const std::vector<std::string>& keys,
                                            const std::string& snapshot) {
  for (size_t i = 0; i < specs.size(); ++i) {
    if (auto it = storage_paths_in_creation_.find(keys[i]); it != storage_paths_in_creation_.end()) {
      return {Errc::busy,
              "storage " + specs[i].path + " is being created for snapshot '" + it->second +
                  "' (its file system may not be answering); try again once that call has returned"};
    }
  }
  size_t reserved = 0;
  try {
    for (; reserved < keys.size(); ++reserved) storage_paths_in_creation_.emplace(keys[reserved], snapshot);
  } catch (
      const std::bad_alloc&) {  // all or nothing: none of these paths was reserved before (checked above)
    for (size_t i = 0; i < reserved; ++i) storage_paths_in_creation_.erase(keys[i]);
    throw;
  }
  return Status::ok();
}

void Engine::release_storage_paths_locked(const std::vector<std::string>& keys) {
  for (const std::string& key : keys) storage_paths_in_creation_.erase(key);
}

Status Engine::check_new_snapshot_locked(const std::string& name,
                                         const std::vector<std::string>& origins) const {
  if (snapshots_.count(name)) return {Errc::already_exists, "snapshot '" + name + "' already exists"};
  if (destroying_.count(name) || creating_.count(name)) return missing_snapshot_locked(name);
  for (size_t i = 0; i < origins.size(); ++i) {
    const std::string& origin = origins[i];
    if (detaching_.count(origin)) return being_detached(origin);
    if (!origins_.count(origin)) return unknown_origin(origin);
    if (std::find(origins.begin(), origins.begin() + static_cast<ptrdiff_t>(i), origin) !=
        origins.begin() + static_cast<ptrdiff_t>(i)) {
      return {Errc::already_exists, "origin '" + origin + "' is named twice"};
    }
    if (auto other = snapshot_of_origin_locked(origin); !other.empty()) {
      if (Status s = check_member_of_locked(other); !s) return s;
      return {Errc::busy, "origin '" + origin + "' already belongs to snapshot '" + other + "'"};
    }
  }
  return Status::ok();
}

Status Engine::create_storage(Snapshot& snapshot, const SnapshotOptions& options,
                              const AreaRequirements& requirements) {
  for (const StorageSpec& spec : options.storage) {
    if (Status s = check_storage_not_served(spec); !s) return s;
    // Earlier entries are areas of this snapshot's storage by now: append() checks overlaps with them too.
    if (Status s = snapshot.storage().append(spec, requirements); !s) return s;
  }
  return Status::ok();
}

Status Engine::check_still_unused(const DiffStorage& storage) const {
  std::vector<DiskUse> releasing;
  {
    MutexLock lock(mutex_);
    for (const auto& [name, released] : releasing_) {
      releasing.insert(releasing.end(), released.uses.begin(), released.uses.end());
    }
  }
  const std::vector<DiskUse> in_use = disks_in_use();
  for (const StorageAreaInfo& area : storage.areas()) {
    for (const DiskUse& mine : storage.disk_uses("")) {
      if (mine.offset != area.offset || mine.length != area.size) continue;
      // A file a destroy is removing may have given its inode to this new one: busy, not a conflict for good.
      if (const DiskUse* other = find_overlap(releasing, mine)) {
        return {Errc::busy, "storage " + area.path + " overlaps " + other->user +
                                ": try again once snapshot-destroy has returned"};
      }
      if (const DiskUse* other = find_overlap(in_use, mine)) {
        return {Errc::already_exists, "storage " + area.path + " overlaps " + other->user + " (" +
                                          other->extent_text() +
                                          " it), which another call claimed while this "
                                          "one created the storage: copy-on-write would overwrite what it "
                                          "preserves"};
      }
    }
  }
  return Status::ok();
}

Status Engine::create_snapshot(const std::string& name, const SnapshotOptions& options,
                               SnapshotInfo* created) {
  if (Status s = check_object_name("snapshot", name); !s) return s;
  std::shared_ptr<Snapshot> snapshot;
  AreaRequirements requirements;
  // storage_paths_in_creation_'s keys for our storage, made before the locks (they ask the file system).
  const std::vector<std::string> path_keys = storage_path_keys(options.storage);
  // Given up (the files it made removed, the name and paths given back) unless registered.
  ScopeExit reserved(
      [&] {
        // Removes the files it created; without locks (it may wait for the file system).
        snapshot->shutdown();
        MutexLock lock(mutex_);
        creating_.erase(name);
        release_storage_paths_locked(path_keys);
      },
      ScopeExitArmed::later);
  {
    MutexLock control(control_mutex_);
    {
      MutexLock lock(mutex_);
      if (Status s = check_new_snapshot_locked(name, options.origins); !s) return s;
    }
    requirements = area_requirements(options.origins);
    if (options.limit != 0 && options.limit < requirements.minimum_size) {
      return {Errc::invalid_argument,
              "limit " + std::to_string(options.limit) + " (" + format_size(options.limit) +
                  ") is less than " + requirements.minimum_reason + " (" +
                  format_size(requirements.minimum_size) + "): no chunk could be stored"};
    }
    snapshot = std::make_shared<Snapshot>(name, options, config_, events_, budget_);
    MutexLock lock(mutex_);
    if (Status s = reserve_storage_paths_locked(options.storage, path_keys, name); !s) return s;
    reserved.arm();
    creating_[name] = snapshot;  // the name and the origins are ours until it is registered or given up
  }
  // Without control_mutex_ (design notes): creating and sizing the files may wait as long as their file
  // system stalls. Nothing sees the snapshot meanwhile but this call: no image, no copy-on-write.
  Status result = create_storage(*snapshot, options, requirements);
  if (result) {
    MutexLock control(control_mutex_);
    // Other creates and appends ran meanwhile: the bytes must still be free now, when they become ours.
    result = check_still_unused(snapshot->storage());
    if (result) {
      MutexLock lock(mutex_);
      snapshots_[name] = snapshot;  // first: it may throw, and then the snapshot is given up
      creating_.erase(name);
      release_storage_paths_locked(path_keys);
      reserved.dismiss();
    }
  }
  if (!result) return result;  // `reserved` gives it up
  // Without control_mutex_: the ledger is written to the state directory, which may stall.
  record_created_storage();
  if (created) *created = snapshot->info();
  std::string origins;
  for (const std::string& origin : options.origins) origins += (origins.empty() ? "" : ",") + origin;
  post(events_, EventType::snapshot_created, name, origins, "");
  return Status::ok();
}

Status Engine::add_origin_to_snapshot(const std::string& snapshot_name, const std::string& origin) {
  MutexLock control(control_mutex_);
  MutexLock lock(mutex_);
  auto snapshot = find_snapshot_locked(snapshot_name);
  if (!snapshot) return missing_snapshot_locked(snapshot_name);
  if (taking_.count(snapshot_name)) return being_taken(snapshot_name);  // its members are the take's
  if (detaching_.count(origin)) return being_detached(origin);
  // An append sizes its area for the chunks of the members it saw: a new member's larger chunks could
  // leave that area unable to hold one.
  if (auto it = appending_.find(snapshot_name); it != appending_.end()) {
    return {Errc::busy, "snapshot '" + snapshot_name + "' is being appended storage " + it->second +
                            " (its file system may not be answering); try again once "
                            "snapshot-append-storage has returned"};
  }
  if (!origins_.count(origin)) return unknown_origin(origin);
  if (auto other = snapshot_of_origin_locked(origin); !other.empty() && other != snapshot_name) {
    if (Status s = check_member_of_locked(other); !s) return s;
    return {Errc::busy, "origin '" + origin + "' already belongs to snapshot '" + other + "'"};
  }
  // The origin's chunks may be larger than the snapshot's storage areas were checked for.
  if (Status s = check_storage_holds_a_chunk(*snapshot, {origin}, Errc::bad_state); !s) return s;
  return snapshot->add_origin(origin);
}

Status Engine::remove_origin_from_snapshot(const std::string& snapshot_name, const std::string& origin) {
  MutexLock control(control_mutex_);
  MutexLock lock(mutex_);
  auto snapshot = find_snapshot_locked(snapshot_name);
  if (!snapshot) return missing_snapshot_locked(snapshot_name);
  if (taking_.count(snapshot_name)) return being_taken(snapshot_name);  // its members are the take's
  if (detaching_.count(origin)) return being_detached(origin);
  return snapshot->remove_origin(origin);
}

namespace {

// The chunk maps of a take, built before the snapshot changes; the caller adds the frozen CBTs (Origin keeps
// its CBT for the engine's members). May throw std::bad_alloc.
std::vector<Snapshot::Member> prepare_take(Snapshot& snapshot,
                                           const std::vector<std::shared_ptr<Origin>>& origins,
                                           const EngineConfig& config) {
  std::vector<Snapshot::Member> members;
  members.reserve(origins.size());
  for (const auto& origin : origins) {
    const uint64_t chunk = chunk_size(origin->size(), origin->minimum_io_size(), config.sizing);
    auto chunks = std::make_shared<ChunkMap>(
        snapshot, origin->name(), origin->shared_device(), origin->size(), chunk,
        copy_read_size(config.copy_io_size, origin->minimum_io_size(), chunk), origin->counters(),
        config.reflink, config.log_info, origin->file_identity());
    members.push_back({origin->name(), std::move(chunks), nullptr});
  }
  return members;
}

}  // namespace

Status Engine::check_takeable_locked(const std::string& name, std::shared_ptr<Snapshot>& snapshot,
                                     std::vector<std::shared_ptr<Origin>>& origins) const {
  snapshot = find_snapshot_locked(name);
  if (!snapshot) return missing_snapshot_locked(name);
  if (taking_.count(name)) return being_taken(name);
  // A detach closing an origin's gate (or, below, a reset draining it): a freeze would wait for the same I/O.
  if (Status s = check_no_origin_detaching_locked(name); !s) return s;
  if (snapshot->state() != SnapshotState::created) {
    return {Errc::bad_state, "snapshot '" + name + "' is already taken"};
  }
  for (const auto& origin : snapshot->origins()) {
    if (resetting_.count(origin)) return being_reset(origin);
    auto it = origins_.find(origin);
    if (it == origins_.end()) return unknown_origin(origin);
    origins.push_back(it->second);
  }
  if (origins.empty()) return {Errc::bad_state, "snapshot '" + name + "' has no origins"};
  if (snapshot->storage().total() == 0) {
    return {Errc::bad_state, "snapshot '" + name + "' has no difference storage"};
  }
  // Last: a call that conflicts for another reason says that reason.
  if (auto it = take_gave_up_at_.find(name); it != take_gave_up_at_.end()) {
    const auto since =
        std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - it->second);
    if (since < config_.take_drain_limit) {
      return {Errc::busy, "snapshot '" + name + "' gave up a take " + std::to_string(since.count()) +
                              " ms ago (writes in flight did not finish): the writes it held run first; try "
                              "again in " +
                              std::to_string((config_.take_drain_limit - since).count()) + " ms"};
    }
  }
  // Checked at create, append and add already; once more where every origin's chunk size is final.
  if (Status s = check_storage_holds_a_chunk(*snapshot, snapshot->origins(), Errc::bad_state); !s) return s;
  std::sort(origins.begin(), origins.end(),
            [](const auto& a, const auto& b) { return a->name() < b->name(); });
  return Status::ok();
}

Status Engine::take_snapshot(const std::string& name, SnapshotInfo* taken) {
  std::shared_ptr<Snapshot> snapshot;
  std::vector<std::shared_ptr<Origin>> origins;
  ScopeExit reserved(
      [&] {
        MutexLock lock(mutex_);
        taking_.erase(name);
      },
      ScopeExitArmed::later);
  {
    MutexLock control(control_mutex_);
    MutexLock lock(mutex_);
    if (Status s = check_takeable_locked(name, snapshot, origins); !s) return s;
    // From here until it ends the snapshot's members and storage, its origins' CBTs, gates and copy-on-write
    // targets are this take's: the calls that would change them get busy (taking_).
    reserved.arm();
    taking_[name] = snapshot->origins();
  }
  // Without control_mutex_ (design notes): the drain may wait as long as a stalled disk holds a write.
  Status result = freeze_and_take(*snapshot, origins);
  {
    MutexLock lock(mutex_);
    taking_.erase(name);
    reserved.dismiss();
    if (result.code() == Errc::busy) {
      take_gave_up_at_[name] = std::chrono::steady_clock::now();
    } else {
      take_gave_up_at_.erase(name);
    }
  }
  if (!result) return result;
  if (taken) *taken = snapshot->info();
  post(events_, EventType::snapshot_taken, name, "", "");
  return Status::ok();
}

namespace {

// busy: the writes in flight at `stuck` did not finish within the take's limit; nothing was taken.
Status take_drain_timed_out(const std::string& snapshot, const std::vector<std::string>& stuck,
                            std::chrono::milliseconds limit) {
  std::string names;
  for (const std::string& origin : stuck) names += (names.empty() ? "'" : ", '") + origin + "'";
  return {Errc::busy, "snapshot '" + snapshot + "' was not taken: writes in flight at origin" +
                          (stuck.size() > 1 ? "s " : " ") + names + " did not finish within " +
                          std::to_string(limit.count()) +
                          " ms (a disk may not be answering); its origins were let go and nothing was taken "
                          "(the snapshot stays created): try again"};
}

}  // namespace

Status Engine::freeze_and_take(Snapshot& snapshot, const std::vector<std::shared_ptr<Origin>>& origins) {
  const std::string& name = snapshot.name();
  std::chrono::steady_clock::time_point held_at, drained_at;
  try {
    // The chunk maps depend on nothing the writers change: they are built before any origin is held, so the
    // hold lasts for the drain and the switch only (on a loaded machine, every microsecond of work inside it
    // is a chance to be preempted while every writer of every origin waits; bench T8's take_hold_us).
    std::vector<Snapshot::Member> members = prepare_take(snapshot, origins, config_);
    std::vector<std::shared_ptr<ChunkMap>> targets;  // the trackers' copies
    targets.reserve(members.size());
    for (const auto& member : members) targets.push_back(member.chunks);
    // Every origin is frozen until the end of this block, however it is left: held first, all of them, then
    // drained (no write path enters a second origin's gate, so a drain never waits for another hold). The
    // drains share one deadline: a write stuck on a stalled disk holds every origin of the snapshot only
    // that long, then all are thawed and nothing is taken (nothing changed yet, so there is nothing to undo;
    // the writes still in flight land after the thaw, marked in the live CBT as any later write).
    std::vector<IoGate::Freeze> frozen;
    frozen.reserve(origins.size());
    held_at = std::chrono::steady_clock::now();
    for (const auto& origin : origins) {
      frozen.emplace_back(origin->tracker().gate(), IoGate::Freeze::Drain::later);
    }
    const auto deadline = held_at + config_.take_drain_limit;
    std::vector<std::string> stuck;
    for (size_t i = 0; i < frozen.size(); ++i) {
      const auto left =
          std::max(std::chrono::ceil<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now()),
                   std::chrono::milliseconds(0));
      if (!frozen[i].wait_until_empty_for(left)) stuck.push_back(origins[i]->name());
    }
    if (!stuck.empty()) return take_drain_timed_out(name, stuck, config_.take_drain_limit);
    drained_at = std::chrono::steady_clock::now();
    // One instant for the snapshot and its checkpoints: now, when the images hold every write that finished
    // (not when the hold began: a write stuck for most of take_drain_limit is in them).
    const int64_t taken_unix_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                                      std::chrono::system_clock::now().time_since_epoch())
                                      .count();
    // All or nothing: everything that may throw std::bad_alloc runs before any origin's CBT records the
    // checkpoint. A checkpoint is named after its snapshot and replaces an older one of that name, so a take
    // that failed after freezing some CBTs would leave, under a name an agent backed up from before, a change
    // number no backup was made at: "changed since" it would under-report (invariant 3).
    std::vector<Cbt::PreparedFreeze> freezes;
    freezes.reserve(origins.size());
    for (size_t i = 0; i < origins.size(); ++i) {
      freezes.push_back(origins[i]->cbt().prepare_freeze(name, taken_unix_ms));
      members[i].cbt = freezes.back().frozen;
    }
    snapshot.install_and_mark_taken(std::move(members), taken_unix_ms);  // all or nothing too
    // What cannot throw comes last.
    for (size_t i = 0; i < origins.size(); ++i) {
      origins[i]->cbt().commit_freeze(std::move(freezes[i]));
      origins[i]->tracker().set_cow_target(std::move(targets[i]));
    }
  } catch (const std::bad_alloc&) {
    return {Errc::no_memory, "out of memory while taking snapshot '" + name + "'; nothing was taken"};
  }
  const auto micros = [](std::chrono::steady_clock::duration d) {
    return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::microseconds>(d).count());
  };
  snapshot.record_take_hold(micros(std::chrono::steady_clock::now() - held_at), micros(drained_at - held_at));
  return Status::ok();
}

Status Engine::append_storage(const std::string& snapshot_name, const StorageSpec& spec,
                              SnapshotInfo* appended) {
  std::shared_ptr<Snapshot> snapshot;
  AreaRequirements requirements;
  // Asked before the locks: both look at the file system, which may stall (a hung NFS server).
  const std::vector<std::string> path_keys = storage_path_keys({spec});  // storage_paths_in_creation_'s
  Status not_served = check_storage_not_served(spec);
  ScopeExit reserved(
      [&] {
        MutexLock lock(mutex_);
        appending_.erase(snapshot_name);
        release_storage_paths_locked(path_keys);
      },
      ScopeExitArmed::later);
  {
    MutexLock control(control_mutex_);
    {
      MutexLock lock(mutex_);
      snapshot = find_snapshot_locked(snapshot_name);
      if (!snapshot) return missing_snapshot_locked(snapshot_name);
      if (taking_.count(snapshot_name)) return being_taken(snapshot_name);  // checked its storage already
      if (auto it = appending_.find(snapshot_name); it != appending_.end()) {
        return {Errc::busy,
                "snapshot '" + snapshot_name + "' is being appended storage " + it->second +
                    ": its file is being created and sized (its file system may not be answering); "
                    "try again once that snapshot-append-storage has returned"};
      }
    }
    if (!not_served) return not_served;
    requirements = area_requirements(snapshot->origins());
    MutexLock lock(mutex_);
    if (Status s = reserve_storage_paths_locked({spec}, path_keys, snapshot_name); !s) return s;
    reserved.arm();
    appending_[snapshot_name] = spec.to_string();  // keeps destroys (and other appends) off the snapshot
  }
  // Without control_mutex_ (design notes): the file is created and sized aside, in storage of its own that
  // nothing allocates from, and joins the snapshot only after the check under control_mutex_ below.
  DiffStorage staged(0, 0, {}, config_.wrap_storage_device, config_.storage_cache);
  Status result = staged.append(spec, requirements);
  if (result) {
    MutexLock control(control_mutex_);
    result = check_still_unused(staged);
    if (result) snapshot->adopt_storage(staged, spec);
  }
  if (result) {
    record_created_storage();  // without control_mutex_: the state directory may stall
    if (appended) *appended = snapshot->info();
  }
  staged.release();  // on failure: removes a file it created; without locks (it may wait for the file system)
  reserved.run_now();
  return result;
}

Status Engine::destroy_snapshot(const std::string& name) {
  std::shared_ptr<Snapshot> snapshot;
  std::vector<std::shared_ptr<Origin>> members;
  ScopeExit reserved(
      [&] {
        MutexLock lock(mutex_);
        destroying_.erase(name);
        releasing_.erase(name);
      },
      ScopeExitArmed::later);
  {
    MutexLock control(control_mutex_);
    MutexLock lock(mutex_);
    snapshot = find_snapshot_locked(name);
    if (!snapshot) return missing_snapshot_locked(name);
    if (auto it = appending_.find(name); it != appending_.end()) {
      return {Errc::busy, "snapshot '" + name + "' is being appended storage " + it->second +
                              " (its file system may not be answering); try again once "
                              "snapshot-append-storage has returned"};
    }
    // A take holding its origins frozen switches their copy-on-write targets to this snapshot's maps.
    if (taking_.count(name)) return being_taken(name);
    // A detach closing a member's gate: the freeze below would wait for it, and both would switch its
    // copy-on-write target.
    if (Status s = check_no_origin_detaching_locked(name); !s) return s;
    for (const auto& origin : snapshot->origins()) {
      if (auto it = origins_.find(origin); it != origins_.end()) members.push_back(it->second);
    }
    destroying_.emplace(name, snapshot);  // the last step that may throw std::bad_alloc: nothing changed yet
    reserved.arm();
    snapshots_.erase(name);  // from now on find_image cannot hand out new images of it
    take_gave_up_at_.erase(name);
  }
  // Without control_mutex_ from here (design notes): destroying_ keeps every other call off this snapshot's
  // origins, so the freezes below are the only ones there and the copy-on-write targets are ours to switch.
  // Image I/O must be drained before copy-on-write stops: a read in flight that found a chunk still on the
  // origin relies on writers copying that chunk before changing it. Later image calls fail cleanly.
  snapshot->image_gate().close();
  for (auto& origin : members) {
    // A member without a chunk map was never taken (a snapshot not yet taken, or whose take gave up beside a
    // stuck write): it was never the origin's copy-on-write target, and there are no writes to wait for. Only
    // a take installs maps, and destroying_ keeps takes off this snapshot.
    const std::shared_ptr<ChunkMap> chunks = snapshot->chunk_map(origin->name());
    if (!chunks) continue;
    IoGate::Freeze frozen(origin->tracker().gate());
    if (origin->tracker().cow_target() == chunks) origin->tracker().set_cow_target(nullptr);
  }
  snapshot->stop_writeback();  // may wait for a stalled storage write too
  // The release (closing the storage, removing the files it created) may wait for a stalled file system as
  // well, so it runs without control_mutex_. Its disk uses and files, listed before it begins, stay in use
  // (releasing_) until it has ended: a create that lists the disks in use meanwhile never claims those bytes,
  // and one whose new file got an inode of a removed one back is told busy, not a false conflict for good
  // (check_still_unused).
  // Without memory to list them, the destroy goes on: a create meanwhile may then be told of a conflict with
  // this storage rather than busy.
  try {
    ReleasedStorage released;
    released.uses = snapshot->storage().disk_uses("difference storage of snapshot '" + name +
                                                  "', which its destroy is still releasing");
    for (const auto& area : snapshot->storage().areas()) {
      if (area.created_by_engine) released.created_files.push_back(area.path);
    }
    MutexLock lock(mutex_);
    releasing_[name] = std::move(released);
  } catch (const std::bad_alloc&) {
  }
  snapshot->shutdown();
  reserved.run_now();
  record_created_storage();
  post(events_, EventType::snapshot_destroyed, name, "", "");
  give_back_memory();  // the buffers went in shutdown()
  return Status::ok();
}

Status Engine::snapshot_info(const std::string& name, SnapshotInfo& out) const {
  std::shared_ptr<Snapshot> snapshot;
  {
    MutexLock lock(mutex_);
    snapshot = find_snapshot_locked(name);
  }
  if (!snapshot) return unknown_snapshot(name);
  out = snapshot->info();
  return Status::ok();
}

std::vector<SnapshotInfo> Engine::snapshots() const {
  std::vector<std::shared_ptr<Snapshot>> all;
  {
    MutexLock lock(mutex_);
    for (const auto& [name, snapshot] : snapshots_) all.push_back(snapshot);
  }
  std::vector<SnapshotInfo> infos;
  for (const auto& snapshot : all) infos.push_back(snapshot->info());
  return infos;
}

// ---------------------------------------------------------------- metrics

EngineStats Engine::stats() const {
  std::vector<std::shared_ptr<Origin>> origins;
  std::vector<std::shared_ptr<Snapshot>> snapshots;
  {
    MutexLock lock(mutex_);
    for (const auto& [name, origin] : origins_) origins.push_back(origin);
    for (const auto& [name, snapshot] : snapshots_) snapshots.push_back(snapshot);
  }
  EngineStats out;
  for (const auto& origin : origins) out.origins.push_back({origin->name(), origin->counters()->values()});
  for (const auto& snapshot : snapshots)
    out.snapshots.push_back(snapshot->stats());  // takes the snapshot's lock
  return out;
}

// ---------------------------------------------------------------- images

Status Engine::find_image(const std::string& origin, const std::string& snapshot_name,
                          std::shared_ptr<Image>& out) const {
  std::shared_ptr<Snapshot> snapshot;
  {
    MutexLock lock(mutex_);
    snapshot = find_snapshot_locked(snapshot_name);
  }
  if (!snapshot) return unknown_snapshot(snapshot_name);
  if (snapshot->state() == SnapshotState::created) {
    return {Errc::not_found, "snapshot '" + snapshot_name + "' is not taken yet"};
  }
  auto chunks = snapshot->chunk_map(origin);
  auto cbt = snapshot->frozen_cbt(origin);
  if (!chunks || !cbt) {
    return {Errc::not_found, "origin '" + origin + "' has no image in snapshot '" + snapshot_name + "'"};
  }
  out = std::make_shared<Image>(snapshot, std::move(chunks), std::move(cbt), origin);
  return Status::ok();
}

std::vector<std::string> Engine::image_export_names() const {
  std::vector<std::shared_ptr<Snapshot>> all;
  {
    MutexLock lock(mutex_);
    for (const auto& [name, snapshot] : snapshots_) all.push_back(snapshot);
  }
  std::vector<std::string> names;
  for (const auto& snapshot : all) {
    if (snapshot->state() == SnapshotState::created) continue;
    for (const auto& origin : snapshot->origins()) {
      if (snapshot->chunk_map(origin)) names.push_back(format_export_name(origin, snapshot->name()));
    }
  }
  return names;
}

// ---------------------------------------------------------------- state

Status Engine::save_state() {
  if (!store_.enabled()) return Status::ok();
  std::vector<std::shared_ptr<Origin>> all;
  {
    MutexLock lock(mutex_);
    for (const auto& [name, origin] : origins_) all.push_back(origin);
  }
  Status result;
  for (const auto& origin : all) {
    if (Status s = save_clean(*origin); !s && result) result = s;
  }
  return result;
}

std::vector<DiskUse> Engine::disks_in_use() const {
  std::vector<std::shared_ptr<Snapshot>> snapshots;
  std::vector<DiskUse> out;
  {
    MutexLock lock(mutex_);
    for (const auto& [name, origin] : origins_) {
      if (!origin->file_identity().empty())
        out.push_back({origin->file_identity(), 0, 0, "origin '" + name + "'"});
    }
    for (const auto& [name, identity] : attaching_) {
      if (!identity.empty()) out.push_back({identity, 0, 0, "origin '" + name + "' (being attached)"});
    }
    for (const auto& [name, snapshot] : snapshots_) snapshots.push_back(snapshot);
    for (const auto& [name, snapshot] : destroying_) snapshots.push_back(snapshot);  // files still open
    for (const auto& [name, released] : releasing_)
      out.insert(out.end(), released.uses.begin(), released.uses.end());
  }
  for (const auto& snapshot : snapshots) {
    for (DiskUse& use :
         snapshot->storage().disk_uses("difference storage of snapshot '" + snapshot->name() + "'")) {
      out.push_back(std::move(use));
    }
  }
  return out;
}

std::shared_ptr<BlockDevice> Engine::open_storage_device(const std::string& identity) const {
  std::vector<std::shared_ptr<Snapshot>> snapshots;
  {
    MutexLock lock(mutex_);
    for (const auto& [name, snapshot] : snapshots_) snapshots.push_back(snapshot);
  }
  for (const auto& snapshot : snapshots) {
    if (auto device = snapshot->storage().open_device(identity)) return device;
  }
  return nullptr;
}

Status Engine::check_storage_not_served(const StorageSpec& spec) const {
  return config_.served_origin_files ? config_.served_origin_files->check_storage(spec.path) : Status::ok();
}

Status Engine::save_clean(Origin& origin) const {
  CbtState state = origin.cbt().state();
  state.device_fingerprint = origin.content_fingerprint();
  return store_.save(origin.name(), state, true);
}

uint64_t Engine::chunk_buffer_bytes() const {
  return budget_->used();
}

uint64_t Engine::memory_bytes() const {
  uint64_t total = 0;  // buffered chunks are counted by their snapshots
  std::vector<std::shared_ptr<Origin>> all;
  {
    MutexLock lock(mutex_);
    for (const auto& [name, origin] : origins_) all.push_back(origin);
  }
  for (const auto& origin : all) total += origin->cbt().memory_bytes();
  for (const auto& info : snapshots()) total += info.memory_bytes;
  return total;
}

}  // namespace nbdsnap
