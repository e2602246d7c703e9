// tracker.h — the write hook of one origin: CBT marking and copy-on-write for the snapshot it belongs to.
//
// Writes enter the tracker's gate for their whole duration (begin_write .. end_write). A take or destroy
// freezes the gate, which waits for in-flight writes and holds new ones, then switches the copy-on-write
// target; so every write lies entirely before or entirely after the switch.
#pragma once

#include <memory>

#include "block_device.h"
#include "cbt.h"
#include "chunk_map.h"
#include "io_gate.h"

namespace nbdsnap {

class Tracker {
 public:
  explicit Tracker(std::unique_ptr<Cbt> cbt) : cbt_(std::move(cbt)) {}

  // Enters the gate, marks CBT, copies old chunks for the live snapshot. Pair with end_write().
  void begin_write(uint64_t len, uint64_t offset, BlockDevice* source);
  void end_write() { gate_.leave(); }

  // Freeze/thaw around set_cow_target (the engine's take, destroy and detach).
  void freeze() { gate_.freeze(); }
  void thaw() { gate_.thaw(); }
  // REQUIRES: frozen by the caller.
  void set_cow_target(std::shared_ptr<ChunkMap> target) { cow_target_ = std::move(target); }
  // REQUIRES: frozen by the caller.
  const std::shared_ptr<ChunkMap>& cow_target() const { return cow_target_; }

  Cbt& cbt() { return *cbt_; }

 private:
  const std::unique_ptr<Cbt> cbt_;
  IoGate gate_;
  // Changed only while the gate is frozen, read only by writers inside it: the gate orders the accesses.
  std::shared_ptr<ChunkMap> cow_target_;
};

}  // namespace nbdsnap
