// SPDX-License-Identifier: BSD-3-Clause
// engine.h — the nbdsnap engine: origins, snapshots, images, CBT and events behind one thread-safe object.
//
// Front ends own an Engine, attach origins to it, route origin I/O through Origin and image I/O through
// Image, and serve Control (control.h) on top of it. The engine is synchronous: every call returns when done
// (invariant 5: a call waits only for I/O in flight, never for a client).
//
// Lifecycles (each call below says in which states it is valid, as libnbd's API does, and what it returns):
//   origin:   attached --detach_origin--> detached (its Origin object refuses all I/O, core/origin.h)
//   snapshot: created --take_snapshot--> taken --(a failed copy or storage I/O)--> corrupted
//             created | taken | corrupted --destroy_snapshot--> destroyed (gone from the engine)
//   image:    exists while its snapshot is taken (or corrupted: then every read fails with corrupted) and its
//             origin is in it; after destroy, or a forced detach of its origin, every call fails with
//             not_found.
// An origin belongs to at most one snapshot at a time. Every public method is thread-safe; control operations
// (attach, detach, create, add, remove, take, append, destroy, reset) run one at a time (lock order:
// core/lock_order.h), except for the waits a stalled disk can hold: a detach's, a destroy's, a take's and a
// CBT reset's waits for writes in flight, a create's or an append's creation of storage files, and an
// attach's CBT state I/O run beside other calls, which get busy if they need the same origin, snapshot or
// storage (see each).
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "block_device.h"
#include "cbt.h"
#include "cbt_store.h"
#include "disk_use.h"
#include "engine_stats.h"
#include "events.h"
#include "image.h"
#include "info.h"
#include "mutex.h"
#include "options.h"
#include "origin.h"
#include "status.h"
#include "storage_ledger.h"
#include "storage_spec.h"

namespace nbdsnap {

class Snapshot;
class BufferBudget;
class DiffStorage;
class ServedOriginFiles;
struct AreaRequirements;

class Engine {
 public:
  explicit Engine(EngineConfig config);
  // Stops background work. Does not save state: call save_state() for a clean stop.
  ~Engine();
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  const EngineConfig& config() const { return config_; }

  // --- origins ---
  // Attaches a tracker to a device under `name`. CBT resumes from a clean saved state of the same size, else
  // starts a new generation (posting generation_renewed with the reason). device may be null when the front
  // end always passes a source for I/O (then size must be given); otherwise size 0 means device->size().
  // minimum_io_size 0 means device->minimum_io_size() (1 without a device); sizing.h keeps chunks and
  // tracking blocks at least that large. Valid: `name` not attached. Errors: invalid_argument (bad name, no
  // size), already_exists (name attached, or the device is already an origin or storage), busy (the name
  // is being attached or detached), I/O errors of the CBT state file. The CBT state I/O waits as long as the
  // state directory stalls; meanwhile only calls that need this name or disk are refused (busy, "being
  // attached"), and all others go on. file_identity: for a null device, the identity
  // (FileDevice::identity_of) of the file the front end's source reads and writes, when it knows one (the
  // filter: ServedOriginFiles::identity_of_export), checked and counted as the origin's disk as a device's
  // is; empty: unknown. attached, when given, receives the new origin as origin_info() describes it at the
  // moment it is attached (a later call may have detached it again by the time this returns). file_path:
  // for a null device, a path of that file, where its content fingerprint is read at attach and at every
  // clean save, as a FileDevice's (so a file replaced or written while nothing tracked it gets a new
  // generation); empty: the fingerprint is unknown and not checked.
  Status attach_origin(const std::string& name, std::shared_ptr<BlockDevice> device, bool read_only,
                       uint64_t size = 0, uint64_t minimum_io_size = 0, const std::string& file_identity = {},
                       OriginInfo* attached = nullptr, const std::string& file_path = {});
  // What attach_origin refuses before it looks at a device: already_exists when `name` is attached or the
  // disk of that identity (FileDevice::identity_of; empty: unknown) is an origin's or storage's already. A
  // front end asks before it opens (and locks) the file, so the refusal names the origin or snapshot.
  Status check_origin_unused(const std::string& name, const std::string& identity) const
      EXCLUDES(control_mutex_, mutex_);
  // Detaches an origin: closes its gates (in-flight I/O finishes, later I/O of anyone holding the Origin
  // fails), saves its CBT state cleanly and lets go of its device. Valid: attached. Errors: not_found; busy
  // while it is in a snapshot unless force, which drops it from the snapshot (the image disappears), and
  // busy while it is being detached or its CBT reset, or its snapshot created, taken or destroyed; the CBT
  // save's error (the origin
  // is detached all the same). Its wait for I/O in flight lasts as long as a stalled disk stalls, so it holds
  // no other control call: until it returns, calls that need this origin (or take or destroy its snapshot)
  // fail with busy ("being detached"); all others go on. detached, when given, tells whether this call
  // detached the origin: also true with the CBT save's error, false with a refusal.
  Status detach_origin(const std::string& name, bool force, bool* detached = nullptr);
  // What a front end tells the agent when detach_origin() detached the origin but could not save its CBT
  // state (`save`, its error): "its CBT state could not be saved (...), so its next attach starts a new CBT
  // generation: back it up fully then", to follow "origin 'NAME' is detached, but ". One wording for
  // nbdsnapd's origin-detach and the filter's.
  static std::string cbt_not_saved_on_detach(const Status& save);
  // The attached origin of that name, or null.
  std::shared_ptr<Origin> find_origin(const std::string& name) const;
  std::vector<OriginInfo> origins() const;
  // Valid: attached. Errors: not_found.
  Status origin_info(const std::string& name, OriginInfo& out) const;

  // --- CBT --- (valid: the origin attached)
  // Reads of a map: the live one (not_found for an unknown origin) or a snapshot's frozen one (not_found for
  // an unknown snapshot, one not taken yet, or one without this origin). A `since` checkpoint that was
  // dropped gives checkpoint_gone, an unknown one not_found; an offset beyond the device out_of_range.
  // Each read is consistent: no write, take or compaction of the live map happens during it (pages of the
  // live map read one after another are not one picture; a snapshot's frozen map is).
  Status cbt_info(const std::string& origin, CbtInfo& out) const { return cbt_info(origin, "", out); }
  Status cbt_info(const std::string& origin, const std::string& snapshot, CbtInfo& out) const;
  // Changed ranges of the live map, whole device, no page limit; with a checkpoint, only blocks changed after
  // it.
  Status cbt_map(const std::string& origin, const std::string& since_checkpoint,
                 std::vector<Range>& out) const;
  // One page of changed ranges (CbtView::changed_ranges), and the map's info.
  Status cbt_map(const CbtMapQuery& query, CbtInfo& info, CbtRangesPage& page) const;
  // One page of raw change numbers (blksnap's CBT map; CbtView::number_runs), and the map's info.
  Status cbt_raw_map(const CbtMapQuery& query, CbtInfo& info, CbtRunsPage& page) const;
  // Errors: not_found; out_of_range for a range beyond the origin (then nothing is marked).
  Status cbt_mark_dirty(const std::string& origin, const std::vector<Range>& ranges);
  // Starts a new generation (posts generation_renewed). It first waits for the origin's writes in flight
  // (holding new ones), so that each is wholly in the old generation or the new one: for at most
  // EngineConfig::cbt_reset_drain_limit, then it fails with busy and resets nothing. It waits without holding
  // other control calls: until it returns, a detach, a CBT reset or checkpoint-delete of this origin and a
  // take of its snapshot fail with busy ("being reset"). Errors: not_found; busy (that wait, or the origin
  // being detached or its snapshot being taken).
  Status cbt_reset(const std::string& origin) EXCLUDES(control_mutex_, mutex_);
  // Deletes a checkpoint of the live CBT (images keep theirs): later queries for it get checkpoint_gone.
  // Errors: not_found; busy while the origin is being detached or reset, or its snapshot taken.
  Status checkpoint_delete(const std::string& origin, const std::string& checkpoint);

  // --- snapshots ---
  // Creates a snapshot (state created) of attached origins that are in no other snapshot, with its difference
  // storage. Storage (storage_spec.h: a whole file or device, or a range of one) that overlaps an origin's
  // file, another snapshot's storage or another area of this one, or that is a served origin file (or lies in
  // a served directory, EngineConfig::served_origin_files), is refused before it is opened; so is an area
  // smaller than one chunk. Several ranges of one file, in one snapshot or in several, share one open of it.
  // Errors: invalid_argument (bad name or storage), already_exists (name, or storage in use), not_found
  // (origin), busy (origin in another snapshot), the storage's I/O errors (no_space, name_too_long...).
  // Nothing is left behind on failure. The storage files are created and sized (which a stalled file system
  // can hold up) without holding other control calls: meanwhile the name and the origins are reserved, and
  // calls that need them fail with busy ("being created"). `created`, when given, receives the snapshot's
  // info as this call left it (a concurrent destroy may remove it before the caller reads it again).
  Status create_snapshot(const std::string& name, const SnapshotOptions& options,
                         SnapshotInfo* created = nullptr);
  // Valid: snapshot created (not taken). Errors: not_found, bad_state, already_exists, busy (also while the
  // snapshot is being taken).
  Status add_origin_to_snapshot(const std::string& snapshot, const std::string& origin);
  Status remove_origin_from_snapshot(const std::string& snapshot, const std::string& origin);
  // Freezes all origins of the snapshot at once: new writes wait, in-flight writes finish, then every
  // origin switches to copy-on-write for this snapshot and its CBT is frozen under the snapshot's name.
  // The wait for writes in flight lasts at most EngineConfig::take_drain_limit: then every origin is thawed,
  // nothing is taken (the snapshot stays created) and the take fails with busy naming the origins whose
  // writes did not finish. That wait holds no other control call: until the take returns, calls that need
  // the snapshot (take, add, remove, append, destroy) or its origins (detach, CBT reset, checkpoint-delete,
  // a create or add with them) fail with busy ("being taken"); all others go on.
  // Valid: created, with origins and storage. Errors: not_found, bad_state, no_memory (nothing was taken),
  // busy (that wait; the snapshot being created, taken or destroyed; one of its origins being detached or
  // reset). `taken`: as create_snapshot's `created`.
  Status take_snapshot(const std::string& name, SnapshotInfo* taken = nullptr)
      EXCLUDES(control_mutex_, mutex_);
  // Adds storage to a snapshot, checked as create_snapshot checks it. Valid: created or taken (also
  // corrupted: it does not heal). Errors as create_snapshot's storage; busy while another append to it runs
  // or it is being created, taken or destroyed. The file is created and sized without holding other control
  // calls (as create_snapshot's), and joins the snapshot only once checked again under the control lock.
  // `appended`: as create_snapshot's `created`.
  Status append_storage(const std::string& snapshot, const StorageSpec& spec,
                        SnapshotInfo* appended = nullptr);
  // Waits for in-flight image I/O, stops copy-on-write, frees difference storage (removing files it created)
  // and the chunks held in memory. Valid: any state. Errors: not_found, busy (already being destroyed, being
  // created or taken, storage being appended, an origin of it being detached).
  // Its waits (image reads and origin writes in flight, the writeback, closing and removing the storage
  // files) last as long as a stalled disk stalls, so they hold no other control call: until it returns the
  // snapshot's name, origins and storage stay in use, and calls that need them fail with busy ("being
  // destroyed"); all others go on.
  Status destroy_snapshot(const std::string& name);
  // Errors: not_found.
  Status snapshot_info(const std::string& name, SnapshotInfo& out) const;
  std::vector<SnapshotInfo> snapshots() const;

  // --- images ---
  // The image of `origin` in a taken snapshot. Errors: not_found (unknown names, an untaken snapshot, an
  // origin not in it).
  Status find_image(const std::string& origin, const std::string& snapshot,
                    std::shared_ptr<Image>& out) const;
  // Export names of every image of taken snapshots ("ORIGIN@SNAPSHOT").
  std::vector<std::string> image_export_names() const;

  // --- metrics ---
  // Every origin's and image's counters and every snapshot's storage space, read without waiting for I/O
  // (each counter on its own: not one atomic picture). Valid: any state. Never fails.
  EngineStats stats() const;

  // --- events, state, accounting ---
  EventLog& events() { return events_; }
  // Saves every origin's CBT as cleanly stopped. Call once at shutdown, after I/O has stopped. Returns the
  // first save's error (it tries them all).
  Status save_state();
  // Bytes the engine holds for chunk maps, buffers and CBT maps.
  uint64_t memory_bytes() const;
  // Bytes of old chunks held in memory awaiting writeback, all snapshots together (at most
  // EngineConfig::chunk_buffer_budget; 0 once every snapshot is destroyed).
  uint64_t chunk_buffer_bytes() const;

 private:
  std::shared_ptr<Snapshot> find_snapshot_locked(const std::string& name) const REQUIRES(mutex_);
  // The snapshot the origin belongs to, one being destroyed included ("" if none).
  // origin_info()'s description of `origin`, registered (or about to be) under `name`.
  OriginInfo info_of_locked(const std::string& name, Origin& origin) const REQUIRES(mutex_);
  std::string snapshot_of_origin_locked(const std::string& origin) const REQUIRES(mutex_);
  // busy: snapshot `name` is being destroyed (its destroy still waits for I/O in flight).
  static Status being_destroyed(const std::string& name);
  // busy: snapshot `name` is being created (its storage files are still being created and sized).
  static Status being_created(const std::string& name);
  // busy: origin `name` is being attached (its CBT state is still being loaded and saved).
  static Status being_attached(const std::string& name);
  // busy: origin `name` is being detached (its detach still waits for I/O in flight).
  static Status being_detached(const std::string& name);
  // busy: snapshot `name` is being taken (its take still waits for its origins' writes in flight).
  static Status being_taken(const std::string& name);
  // busy: origin `name`'s CBT is being reset (the reset still waits for its writes in flight).
  static Status being_reset(const std::string& name);
  // busy when origin `name` is being detached or reset, or its snapshot taken (its CBT and gates are
  // another call's meanwhile), else ok.
  Status check_origin_unreserved_locked(const std::string& name) const REQUIRES(mutex_);
  // What a take of `name` needs, checked: the snapshot created, with storage holding a chunk of each of
  // its origins, none of them being detached or reset, and no other take of it. Fills in the snapshot and
  // its origins (sorted by name).
  Status check_takeable_locked(const std::string& name, std::shared_ptr<Snapshot>& snapshot,
                               std::vector<std::shared_ptr<Origin>>& origins) const REQUIRES(mutex_);
  // The take itself, without control_mutex_ (registered in taking_): holds, drains (bounded), switches.
  Status freeze_and_take(Snapshot& snapshot, const std::vector<std::shared_ptr<Origin>>& origins)
      EXCLUDES(control_mutex_, mutex_);
  // Reserves the paths of `specs` for `snapshot` in storage_paths_in_creation_ under `keys`, which the
  // caller made with storage_path_keys(specs) before it took any lock (resolving a path asks its file
  // system, which may stall), or says which another call reserved (busy; nothing reserved then). All or
  // nothing on std::bad_alloc too. release_storage_paths_locked gives them back, allocating nothing (it runs
  // from the caller's ScopeExit, also while an exception unwinds).
  Status reserve_storage_paths_locked(const std::vector<StorageSpec>& specs,
                                      const std::vector<std::string>& keys, const std::string& snapshot)
      REQUIRES(mutex_);
  void release_storage_paths_locked(const std::vector<std::string>& keys) REQUIRES(mutex_);
  // busy when snapshot `name` is not registered but being created or destroyed; else not_found.
  Status missing_snapshot_locked(const std::string& name) const REQUIRES(mutex_);
  // busy when the snapshot is being created, taken or destroyed (an origin's `member_of`), else ok.
  Status check_member_of_locked(const std::string& member_of) const REQUIRES(mutex_);
  // busy when an origin of snapshot `name` is being detached, else ok.
  Status check_no_origin_detaching_locked(const std::string& name) const REQUIRES(mutex_);
  // Records the storage files the engine created for live snapshots and those being destroyed. Serialised
  // by ledger_mutex_, so the last list written is the newest.
  void record_created_storage() EXCLUDES(ledger_mutex_, mutex_);
  // After storage files were created without control_mutex_: every area of `storage` is checked once more
  // against the disks in use now (another create or append may have claimed the same bytes meanwhile).
  // Errors: already_exists, or busy when the bytes belong to storage a destroy is still releasing.
  Status check_still_unused(const DiffStorage& storage) const REQUIRES(control_mutex_) EXCLUDES(mutex_);
  // Checks what a create of `name` over `origins` needs: the name free, the origins attached, named once and
  // in no other snapshot.
  Status check_new_snapshot_locked(const std::string& name, const std::vector<std::string>& origins) const
      REQUIRES(mutex_);
  // Creates (and sizes) the storage of a snapshot being created, without control_mutex_.
  Status create_storage(Snapshot& snapshot, const SnapshotOptions& options,
                        const AreaRequirements& requirements) EXCLUDES(control_mutex_, mutex_);
  // A snapshot's chunk buffers were freed (destroy, forced detach): unmaps the pool's free buffers
  // (chunk_buffer.h) and calls EngineConfig::memory_released.
  void give_back_memory() EXCLUDES(mutex_);
  // check_origin_unused, with control_mutex_ held.
  Status check_origin_unused_locked(const std::string& name, const std::string& identity) const
      REQUIRES(control_mutex_) EXCLUDES(mutex_);
  // What every origin's device and every snapshot's storage uses of its file or disk.
  std::vector<DiskUse> disks_in_use() const REQUIRES(control_mutex_) EXCLUDES(mutex_);
  // A device some snapshot's storage has open with this file identity (null: none), to share it.
  std::shared_ptr<BlockDevice> open_storage_device(const std::string& identity) const EXCLUDES(mutex_);
  // Refuses difference storage among the files the front end serves (EngineConfig::served_origin_files).
  Status check_storage_not_served(const StorageSpec& spec) const;
  // The largest chunk of the named origins (unknown ones skipped), or, without any, the smallest chunk an
  // origin can have: every storage area and the limit must hold one. `reason` names it for messages.
  uint64_t largest_chunk_locked(const std::vector<std::string>& origins, std::string& reason) const
      REQUIRES(mutex_);
  // What a new storage area of a snapshot of `origins` must satisfy (DiffStorage::append).
  AreaRequirements area_requirements(const std::vector<std::string>& origins) const REQUIRES(control_mutex_)
      EXCLUDES(mutex_);
  // Every area of the snapshot and its limit hold one chunk of `origins` (else `code`, naming the area).
  Status check_storage_holds_a_chunk(Snapshot& snapshot, const std::vector<std::string>& origins,
                                     Errc code) const REQUIRES(mutex_);
  // Saves an origin's CBT as cleanly stopped, with its device's content fingerprint.
  Status save_clean(Origin& origin) const;
  // Calls read with a view of the map `snapshot` froze for `origin` ("" = the live map, under its lock).
  Status read_cbt(const std::string& origin, const std::string& snapshot,
                  const std::function<Status(const CbtView&)>& read) const EXCLUDES(mutex_);

  const EngineConfig config_;
  CbtStore store_;
  StorageLedger storage_ledger_;
  EventLog events_;
  std::shared_ptr<BufferBudget> budget_;
  // Serialises control operations (create/take/destroy/attach...) so they never interleave half-done. The
  // first lock in core/lock_order.h: taken before every other, never across I/O a stalled disk or state
  // directory can hold (an attach's CBT load and save, a destroy's drain and release, a detach's, a take's
  // or a CBT reset's drain, a create's or append's files and the storage ledger's write): the registries
  // attaching_, destroying_, releasing_, detaching_, taking_, resetting_, creating_ and appending_ reserve
  // what those use.
  mutable Mutex control_mutex_;
  // Serialises writes of the storage ledger (record_created_storage); held across that write, which is I/O
  // of the state directory.
  mutable Mutex ledger_mutex_ ACQUIRED_AFTER(control_mutex_);
  // Guards the registries below; held briefly, never across I/O or a freeze.
  mutable Mutex mutex_ ACQUIRED_AFTER(control_mutex_, ledger_mutex_);
  std::map<std::string, std::shared_ptr<Origin>> origins_ GUARDED_BY(mutex_);
  std::map<std::string, std::shared_ptr<Snapshot>> snapshots_ GUARDED_BY(mutex_);
  // Snapshots a destroy_snapshot() has taken out of snapshots_ and still drains without control_mutex_.
  // Their names, origins and storage stay in use: no other call may switch those origins' copy-on-write
  // targets (the destroy's freeze is the only one there) or reuse the names and files meanwhile.
  std::map<std::string, std::shared_ptr<Snapshot>> destroying_ GUARDED_BY(mutex_);
  // Storage a destroy is releasing (closing, removing the files it created) without control_mutex_, by
  // snapshot: the disk uses and created files as they were before the release began, listed as in use (and
  // in the ledger) until it has ended, so that no create claims those bytes or inodes meanwhile.
  struct ReleasedStorage {
    std::vector<DiskUse> uses;
    std::vector<std::string> created_files;
  };
  std::map<std::string, ReleasedStorage> releasing_ GUARDED_BY(mutex_);
  // Origins a detach_origin() closes without control_mutex_ (their I/O in flight may wait for a stalled
  // disk), with the snapshot each belonged to ("" none): no other call may use, reattach or snapshot them,
  // nor take or destroy that snapshot, meanwhile. They stay in origins_ until the detach has let go of them.
  std::map<std::string, std::string> detaching_ GUARDED_BY(mutex_);
  // Origins an attach_origin() loads and saves the CBT state of without control_mutex_ (not yet in
  // origins_), with their disks' identities ("" unknown): the names and disks are reserved (disks_in_use).
  std::map<std::string, std::string> attaching_ GUARDED_BY(mutex_);
  // Snapshots a take_snapshot() holds frozen and drains without control_mutex_ (they stay in snapshots_,
  // created), with their origins' names: until the take has switched them or given up, nothing may change
  // the snapshot's members or storage, destroy it or take it again, nor detach, reset the CBT of or delete a
  // checkpoint of those origins (the take freezes their CBTs and switches their copy-on-write targets).
  std::map<std::string, std::vector<std::string>> taking_ GUARDED_BY(mutex_);
  // Snapshots whose last take gave up (a write in flight outlived take_drain_limit), and when: for one more
  // take_drain_limit their take answers busy at once, so that the writes the attempt held (and those queued
  // behind them) run before the same origins are held again (a tester's agent retrying at once held a
  // healthy origin's writes 8.8 times the limit). Cleared by a take that succeeds and by destroy.
  std::map<std::string, std::chrono::steady_clock::time_point> take_gave_up_at_ GUARDED_BY(mutex_);
  // Origins a cbt_reset() drains without control_mutex_: no detach (its CBT save would miss the reset), take,
  // checkpoint-delete or second reset of them meanwhile.
  std::set<std::string> resetting_ GUARDED_BY(mutex_);
  // Snapshots a create_snapshot() is making storage for without control_mutex_ (not yet in snapshots_):
  // their names and origins are reserved.
  std::map<std::string, std::shared_ptr<Snapshot>> creating_ GUARDED_BY(mutex_);
  // Snapshots an append_storage() adds a file to without control_mutex_, with the storage asked for.
  std::map<std::string, std::string> appending_ GUARDED_BY(mutex_);
  // The storage paths (made absolute and canonical) that a create or an append is creating without
  // control_mutex_, with the snapshot each is for: a second call naming one is busy at once. Two calls
  // creating one new file would otherwise race for its lock, and the loser's clean-up could remove it.
  std::map<std::string, std::string> storage_paths_in_creation_ GUARDED_BY(mutex_);
};

}  // namespace nbdsnap
