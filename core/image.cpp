// SPDX-License-Identifier: BSD-3-Clause
// image.cpp — image calls enter the snapshot's gate, then read or write through the origin's chunk map.
#include "image.h"

#include <algorithm>

#include "chunk_map.h"
#include "snapshot.h"

namespace nbdsnap {

namespace {
Status destroyed(const std::string& snapshot) {
  return {Errc::not_found, "snapshot '" + snapshot + "' was destroyed"};
}
}  // namespace

Image::Image(std::shared_ptr<Snapshot> snapshot, std::shared_ptr<ChunkMap> chunks,
             std::shared_ptr<const CbtFrozen> cbt, std::string origin_name)
    : snapshot_(std::move(snapshot)),
      chunks_(std::move(chunks)),
      cbt_(std::move(cbt)),
      origin_name_(std::move(origin_name)) {}

const std::string& Image::snapshot_name() const {
  return snapshot_->name();
}
uint64_t Image::size() const {
  return chunks_->origin_size();
}
bool Image::writable() const {
  return snapshot_->writable();
}

Status Image::read(void* buf, uint64_t len, uint64_t offset, BlockDevice* source) {
  IoGate::Pass pass(snapshot_->image_gate());
  if (!pass.entered()) return destroyed(snapshot_->name());
  return chunks_->read(buf, len, offset, source);
}

Status Image::write(const void* buf, uint64_t len, uint64_t offset, BlockDevice* source) {
  if (!writable()) return {Errc::read_only, "snapshot '" + snapshot_->name() + "' is read-only"};
  IoGate::Pass pass(snapshot_->image_gate());
  if (!pass.entered()) return destroyed(snapshot_->name());
  return chunks_->write(buf, len, offset, source);
}

Status Image::zero(uint64_t offset, uint64_t len, BlockDevice* source) {
  return write(nullptr, len, offset, source);
}

Status Image::extents(uint64_t offset, uint64_t len, std::vector<Extent>& out, BlockDevice* source) {
  IoGate::Pass pass(snapshot_->image_gate());
  if (!pass.entered()) return destroyed(snapshot_->name());
  return chunks_->extents(offset, len, out, source);
}

Status Image::changed_since(const std::string& checkpoint, uint64_t offset, uint64_t len,
                            std::vector<Range>& out) const {
  if (Status s = check_range(cbt_->device_size, offset, len); !s) return s;
  Checkpoint since;
  if (Status s = cbt_->view().find_checkpoint(checkpoint, since); !s)
    return s;  // checkpoint_gone or not_found
  if (since.number >= cbt_->number) {
    return {Errc::not_found, "checkpoint '" + checkpoint +
                                 "' is not an earlier checkpoint of CBT generation " +
                                 cbt_->generation.to_string()};
  }
  out = cbt_->changed_ranges(since.number, offset, len);
  return Status::ok();
}

std::vector<std::string> Image::usable_checkpoints() const {
  std::vector<std::pair<uint8_t, std::string>> found;
  for (const auto& [name, checkpoint] : cbt_->checkpoints) {
    if (checkpoint.number < cbt_->number) found.emplace_back(checkpoint.number, name);
  }
  std::sort(found.begin(), found.end());
  std::vector<std::string> names;
  for (auto& [number, name] : found) names.push_back(std::move(name));
  return names;
}

}  // namespace nbdsnap
