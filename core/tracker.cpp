// SPDX-License-Identifier: BSD-3-Clause
// tracker.cpp — the write hook.
#include "tracker.h"

namespace nbdsnap {

bool Tracker::begin_write(uint64_t offset, uint64_t len, BlockDevice* source, IoGate::Pass& pass) {
  pass = IoGate::Pass(gate_);
  if (!pass.entered()) return false;
  count(counters_->writes);
  count(counters_->bytes_written, len);
  count(counters_->cbt_blocks_marked, cbt_->mark_dirty(offset, len));
  if (cow_target_) cow_target_->copy_before_write(offset, len, source);  // never throws, never fails
  return true;
}

bool Tracker::make_room_for_write(uint64_t offset, uint64_t len) {
  if (!cow_target_) return false;
  // Shared extents first: punching the chunks this write covers may be enough, and keeps the storage of
  // chunks it does not cover until a write there needs it too.
  return cow_target_->unshare_for_write(offset, len) || cow_target_->give_up_storage_for_write();
}

}  // namespace nbdsnap
