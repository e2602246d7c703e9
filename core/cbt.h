// cbt.h — change block tracking for one origin: a change number per tracking block and a generation id.
//
// Design notes. Writes mark their blocks with the current change number (numbers start at 1; 0 = unchanged
// since the generation began). Taking a snapshot freezes a copy of the map (CbtFrozen) and then advances the
// number, so the frozen map of snapshot S holds numbers <= S's number, and "changed since checkpoint C" is
// simply frozen[b] > C. When the number would wrap past 255, or on reset, or when state is lost, a new
// generation starts: new UUID, zeroed map, checkpoints dropped. Agents seeing a new generation do a full
// backup, which keeps the invariant that CBT never under-reports.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
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

// The CBT map as it was at one take: immutable, shared by the snapshot image and whoever reads it.
struct CbtFrozen {
  Uuid generation;
  uint8_t number = 0;  // change number the snapshot closed
  uint64_t block_size = 0;
  uint64_t device_size = 0;
  std::vector<uint8_t> map;
  // Checkpoints of this generation recorded up to and including this take (name -> number closed).
  std::map<std::string, uint8_t> checkpoints;
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
  std::map<std::string, uint8_t> checkpoints;
  // The device's content_fingerprint() when the state was saved cleanly (the engine fills it in).
  std::string device_fingerprint;
};

class Cbt {
 public:
  // A fresh generation for a device.
  Cbt(uint64_t device_size, uint64_t block_size);
  // Resumes a saved state (caller checked it is clean and matches the device).
  explicit Cbt(CbtState state);

  Uuid generation() const;
  uint8_t current_number() const;
  uint64_t block_size() const { return block_size_; }
  uint64_t device_size() const { return device_size_; }

  // Marks every block touching [offset, offset+length) as changed in the current number.
  void mark_dirty(uint64_t offset, uint64_t length);
  // Freezes the map for a snapshot named `checkpoint`, records the checkpoint, and advances the number
  // (starting a new generation when the number would wrap). REQUIRES: no concurrent writes (take holds them).
  // On std::bad_alloc nothing has changed.
  std::shared_ptr<const CbtFrozen> freeze(const std::string& checkpoint);
  // Starts a new generation: new UUID, zeroed map, no checkpoints.
  void reset();

  // The live map (a copy) for reads by control.
  std::shared_ptr<const CbtFrozen> snapshot_of_live_map() const;
  // Checkpoint name -> change number it closed, in this generation.
  std::map<std::string, uint8_t> checkpoints() const;
  // The change number of a checkpoint, or not_found.
  Status checkpoint_number(const std::string& name, uint8_t& number) const;

  CbtState state() const;
  // Bytes held by the live map.
  uint64_t memory_bytes() const;

 private:
  void start_generation() REQUIRES(mutex_);
  mutable Mutex mutex_;  // a leaf lock (core/lock_order.h)
  const uint64_t device_size_;
  const uint64_t block_size_;
  Uuid generation_ GUARDED_BY(mutex_);
  uint8_t number_ GUARDED_BY(mutex_) = 1;
  std::vector<uint8_t> map_ GUARDED_BY(mutex_);
  std::map<std::string, uint8_t> checkpoints_ GUARDED_BY(mutex_);
};

}  // namespace nbdsnap
