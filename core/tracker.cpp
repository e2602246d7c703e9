// tracker.cpp — the write hook.
#include "tracker.h"

namespace nbdsnap {

void Tracker::begin_write(uint64_t len, uint64_t offset, BlockDevice* source) {
  gate_.enter();  // a tracker's gate is frozen, never closed
  cbt_->mark_dirty(offset, len);
  if (cow_target_) cow_target_->copy_before_write(len, offset, source);
}

}  // namespace nbdsnap
