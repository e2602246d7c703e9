// SPDX-License-Identifier: BSD-3-Clause
// tracker.h — the write hook of one origin: CBT marking and copy-on-write for the snapshot it belongs to,
// behind the origin's I/O gate.
//
// Every write holds the gate for its whole duration (from begin_write until the origin write returned). A
// take or destroy freezes the gate, which waits for in-flight writes and holds new ones, then switches the
// copy-on-write target; so every write lies entirely before or entirely after the switch. Detaching the
// origin closes the gate for good: a connection still holding the origin gets errors, never an untracked
// write.
#pragma once

#include <memory>

#include "block_device.h"
#include "cbt.h"
#include "chunk_map.h"
#include "io_counters.h"
#include "io_gate.h"

namespace nbdsnap {

class Tracker {
 public:
  explicit Tracker(std::unique_ptr<Cbt> cbt)
      : cbt_(std::move(cbt)), counters_(std::make_shared<OriginCounters>()) {}

  // Admits one write of [offset, offset+len): enters the gate (into `pass`), marks CBT and copies the old
  // chunks for the live snapshot (reading them through `source`, or the origin's device when null). The
  // write to the origin must happen while `pass` is held. Never fails because of a snapshot: a failed copy
  // corrupts the snapshot and the write goes on (invariant 2). Waits while a take holds the gate; false (not
  // entered) once the origin was detached.
  bool begin_write(uint64_t offset, uint64_t len, BlockDevice* source, IoGate::Pass& pass);

  IoGate& gate() { return gate_; }
  // REQUIRES: the gate frozen or closed by the caller (the engine's take, destroy and detach).
  void set_cow_target(std::shared_ptr<ChunkMap> target) { cow_target_ = std::move(target); }
  // REQUIRES: the gate frozen or closed by the caller.
  const std::shared_ptr<ChunkMap>& cow_target() const { return cow_target_; }

  // An admitted write of [offset, offset+len) failed with ENOSPC (invariant 2: the snapshot gives way, not
  // the write). The one place for that rule, for both front ends: first the snapshot gives up extents it
  // shares with the origin there (ChunkMap::unshare_for_write); if it shares none, it gives up the storage
  // files it created on the origin's file system (ChunkMap::give_up_storage_for_write), corrupting itself
  // first. True: write once more (once: a second ENOSPC is the caller's error). False when there is no live
  // snapshot or the space was not the snapshot's to give. REQUIRES: the caller holds the Pass of that write
  // and no lock.
  bool make_room_for_write(uint64_t offset, uint64_t len);

  Cbt& cbt() { return *cbt_; }
  // The origin's counters (io_counters.h): admitted writes and CBT marks here, reads by the Origin, chunk
  // copies by the snapshots' chunk maps (which share them).
  const std::shared_ptr<OriginCounters>& counters() const { return counters_; }

 private:
  const std::unique_ptr<Cbt> cbt_;
  const std::shared_ptr<OriginCounters> counters_;
  IoGate gate_;
  // Changed only while the gate is frozen or closed, read only by writers inside it: the gate orders the
  // accesses (its atomic count is the happens-before edge), so no lock guards it.
  std::shared_ptr<ChunkMap> cow_target_;
};

}  // namespace nbdsnap
