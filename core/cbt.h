// SPDX-License-Identifier: BSD-3-Clause
// cbt.h — change block tracking for one origin: a change number per tracking block, a generation id, and
// the checkpoints backups start from.
//
// Design notes. Writes mark their blocks with the current change number (numbers start at 1; 0 = unchanged
// since the generation began). Taking a snapshot freezes a copy of the map (CbtFrozen), records a checkpoint
// with the number it closed, and then advances the number; so "changed since checkpoint C" is simply
// map[b] > C.number, in the live map as in every frozen one.
//
// Incremental forever. At most `checkpoints_kept` checkpoints are kept (the oldest are dropped at take). When
// the 8-bit number would wrap after 255, the live map is compacted instead of starting over: numbers are
// renumbered so that only the distinctions the kept checkpoints need survive. With kept checkpoints
// c1 < c2 < ... < cK, a number v becomes 0 if v == 0, else 1 + (count of ci < v); checkpoint ci becomes i and
// the next number K + 1. Then v > ci exactly when the new v > i, so every kept checkpoint keeps its meaning,
// and 0 still means "unchanged in this generation". Frozen maps are copies and keep their own numbering.
//
// The generation changes only when history is truly lost (reset, crash, resize, writes nobody tracked):
// agents then do a full backup, which keeps the invariant that CBT never under-reports. A checkpoint that was
// dropped (by count, by request, or with its generation) is remembered by name for a while, so an agent
// asking for it gets checkpoint_gone ("do a full backup") rather than a bare not_found.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "mutex.h"
#include "status.h"
#include "uuid.h"

namespace nbdsnap {

// A byte range, used for change maps.
struct Range {
  uint64_t offset = 0;
  uint64_t length = 0;
  bool operator==(const Range&) const = default;
};

// A checkpoint: the change number a take closed, and when it was taken.
struct Checkpoint {
  uint8_t number = 0;
  int64_t taken_unix_ms = 0;  // 0: unknown (state saved before take times were kept)
  bool operator==(const Checkpoint&) const = default;
};
using Checkpoints = std::map<std::string, Checkpoint>;  // by name

// A checkpoint this CBT no longer has, and why.
struct DroppedCheckpoint {
  std::string name;
  std::string reason;  // completes "checkpoint 'NAME' is gone: ..."
  bool operator==(const DroppedCheckpoint&) const = default;
};

// How many checkpoints an origin keeps (EngineConfig::checkpoints_kept; option `checkpoints-kept` in both
// front ends). At least 2, so an incremental backup from the previous take always works; at most 128, so a
// compaction leaves at least 126 takes before the next one.
inline constexpr unsigned kDefaultCheckpointsKept = 16;
inline constexpr unsigned kMinCheckpointsKept = 2;
inline constexpr unsigned kMaxCheckpointsKept = 128;
// invalid_argument naming the bounds when `kept` is outside them (the caller prefixes its option name).
Status check_checkpoints_kept(uint64_t kept);

// Dropped checkpoints remembered per origin (the newest; older names get not_found).
inline constexpr size_t kDroppedCheckpointsRemembered = 64;

// One page of changed ranges: merged, clipped to the request; `more` when max_ranges cut it short, and then
// the next page starts at next_offset (always the end of what this page covered).
struct CbtRangesPage {
  std::vector<Range> ranges;
  uint64_t next_offset = 0;
  bool more = false;
};

// One page of raw change numbers: runs of equal numbers over whole blocks. [offset, offset+length) is the
// block-aligned span covered (the last block of the device may be partial).
struct CbtRunsPage {
  uint64_t offset = 0;
  uint64_t length = 0;
  std::vector<std::pair<uint8_t, uint64_t>> runs;  // (change number, blocks)
  uint64_t next_offset = 0;
  bool more = false;
};

// A read-only view of a CBT map and its checkpoints: the live map under its lock (Cbt::visit_live) or a
// frozen one. Valid only while what it refers to is.
struct CbtView {
  const Uuid& generation;
  uint8_t number;  // live: the number writes get now; frozen: the number the take closed
  uint64_t block_size;
  uint64_t device_size;
  const std::vector<uint8_t>& map;
  const Checkpoints& checkpoints;
  const std::vector<DroppedCheckpoint>& dropped;

  // ok; checkpoint_gone if it was dropped (the message says why and to do a full backup); not_found if
  // unknown.
  Status find_checkpoint(const std::string& name, Checkpoint& out) const;
  // Byte ranges of blocks with number > since, merged, clipped to [offset, offset+length) and the device, at
  // most max_ranges of them. since = 0 gives every block changed in this generation.
  CbtRangesPage changed_ranges(uint8_t since, uint64_t offset, uint64_t length, size_t max_ranges) const;
  // Change numbers of the blocks touching [offset, offset+length) (widened to whole blocks, clipped to the
  // device) as at most max_runs runs. Nothing (an empty page at offset) for length 0 or offset at the end.
  CbtRunsPage number_runs(uint64_t offset, uint64_t length, size_t max_runs) const;
};

// The CBT map as it was at one take: immutable, shared by the snapshot image and whoever reads it.
struct CbtFrozen {
  Uuid generation;
  uint8_t number = 0;  // change number the snapshot closed
  uint64_t block_size = 0;
  uint64_t device_size = 0;
  std::vector<uint8_t> map;
  // Checkpoints of this generation kept up to and including this take.
  Checkpoints checkpoints;
  std::vector<DroppedCheckpoint> dropped;

  CbtView view() const { return {generation, number, block_size, device_size, map, checkpoints, dropped}; }
  // Byte ranges whose blocks changed after change number `since` (i.e. map[b] > since), merged and clipped
  // to [offset, offset+length). since = 0 gives every block changed in this generation.
  std::vector<Range> changed_ranges(uint8_t since, uint64_t offset, uint64_t length) const;
};

// The persistent form of a CBT, as saved in the state directory.
struct CbtState {
  Uuid generation;
  uint8_t number = 1;
  uint64_t block_size = 0;
  uint64_t device_size = 0;
  std::vector<uint8_t> map;
  Checkpoints checkpoints;
  std::vector<DroppedCheckpoint> dropped;
  // The device's content_fingerprint() when the state was saved cleanly (the engine fills it in).
  std::string device_fingerprint;
};

// Thread-safety: every method may be called from any thread; mutex_ is a leaf lock (core/lock_order.h).
class Cbt {
 public:
  // A fresh generation for a device. REQUIRES: check_checkpoints_kept(checkpoints_kept) is ok.
  Cbt(uint64_t device_size, uint64_t block_size, unsigned checkpoints_kept = kDefaultCheckpointsKept);
  // Resumes a saved state (caller checked it is clean and matches the device). Checkpoints beyond
  // checkpoints_kept are dropped, oldest first.
  explicit Cbt(CbtState state, unsigned checkpoints_kept = kDefaultCheckpointsKept);
  // A fresh generation in place of a saved state that cannot be resumed (`ended`: not saved cleanly, of
  // another size or tracking block size, or of a disk changed while nothing tracked it; `why` says which).
  // The ended state's checkpoints, and those it remembered as dropped, are remembered as gone, so an agent
  // asking for one after a crash is told to back up fully (checkpoint_gone), as after a reset, rather than
  // that the name is unknown (nbdsnap(1), backup --since).
  Cbt(uint64_t device_size, uint64_t block_size, unsigned checkpoints_kept, const CbtState& ended,
      const std::string& why);
  // The checkpoints of the saved state that the constructor dropped, oldest first (checkpoints_kept was
  // lowered since the save). Set once by the constructor, then constant.
  const std::vector<std::string>& checkpoints_dropped_at_resume() const { return dropped_at_resume_; }

  Uuid generation() const;
  uint8_t current_number() const;
  uint64_t block_size() const { return block_size_; }
  uint64_t device_size() const { return device_size_; }
  unsigned checkpoints_kept() const { return checkpoints_kept_; }

  // Marks every block touching [offset, offset+length) as changed in the current number. Returns how many
  // blocks that was (for the origin's counters, io_counters.h).
  uint64_t mark_dirty(uint64_t offset, uint64_t length);
  // A take's freeze in two steps, so that a take of several origins changes every origin's CBT or none:
  // prepare_freeze() makes everything that needs memory and may throw std::bad_alloc, changing nothing;
  // commit_freeze() cannot fail. Between the two nothing may change this CBT: no write (the take holds
  // them), no other freeze, reset or checkpoint delete (the engine's taking_ keeps those off).
  struct PreparedFreeze {
    std::shared_ptr<const CbtFrozen> frozen;  // what the snapshot keeps
    Checkpoints checkpoints;                  // the live state once committed
    std::vector<DroppedCheckpoint> dropped;
  };
  // The freeze for a snapshot named `checkpoint` taken at taken_unix_ms: the map as it is, the checkpoint
  // recorded (a name used before is replaced: the older checkpoint of that name is gone once committed),
  // the oldest checkpoints beyond checkpoints_kept() dropped. May throw std::bad_alloc; changes nothing.
  PreparedFreeze prepare_freeze(const std::string& checkpoint, int64_t taken_unix_ms) const;
  // Records a prepared freeze and advances the number (compacting the live map when it would wrap). The
  // generation stays. REQUIRES: `prepared` came from this CBT's prepare_freeze() with nothing in between.
  void commit_freeze(PreparedFreeze&& prepared) noexcept;
  // prepare_freeze() and commit_freeze() in one (one origin). On std::bad_alloc nothing has changed.
  std::shared_ptr<const CbtFrozen> freeze(const std::string& checkpoint, int64_t taken_unix_ms = 0);
  // Starts a new generation: new UUID, zeroed map, no checkpoints (the old ones are remembered as gone).
  void reset();
  // Deletes a checkpoint (libvirt's checkpoint-delete): later queries for it get checkpoint_gone. The blocks
  // it told apart merge into the next checkpoint's at the next compaction. not_found / checkpoint_gone if it
  // is not there.
  Status delete_checkpoint(const std::string& name);

  // Calls visit(const CbtView&) with the live map, under the lock: the view is consistent (no write, take or
  // compaction in between) and valid only during the call. visit must not block or take other locks.
  template <typename Visit>
  auto visit_live(Visit&& visit) const {
    MutexLock lock(mutex_);
    return visit(CbtView{generation_, number_, block_size_, device_size_, map_, checkpoints_, dropped_});
  }

  // The live map (a copy) for reads by control.
  std::shared_ptr<const CbtFrozen> snapshot_of_live_map() const;
  // Checkpoint name -> number closed and take time, in this generation.
  Checkpoints checkpoints() const;
  // The change number of a checkpoint, or checkpoint_gone / not_found (CbtView::find_checkpoint).
  Status checkpoint_number(const std::string& name, uint8_t& number) const;

  CbtState state() const;
  // Bytes held by the live map.
  uint64_t memory_bytes() const;

 private:
  void start_generation() REQUIRES(mutex_);
  // Renumbers the live map and the checkpoints as the design notes say. Cannot fail.
  void compact() REQUIRES(mutex_);
  mutable Mutex mutex_;  // a leaf lock (core/lock_order.h)
  const uint64_t device_size_;
  const uint64_t block_size_;
  const unsigned checkpoints_kept_;
  Uuid generation_ GUARDED_BY(mutex_);
  uint8_t number_ GUARDED_BY(mutex_) = 1;
  std::vector<uint8_t> map_ GUARDED_BY(mutex_);
  Checkpoints checkpoints_ GUARDED_BY(mutex_);
  std::vector<DroppedCheckpoint> dropped_
      GUARDED_BY(mutex_);                       // oldest first, at most kDroppedCheckpointsRemembered
  std::vector<std::string> dropped_at_resume_;  // written by the constructor only
};

}  // namespace nbdsnap
