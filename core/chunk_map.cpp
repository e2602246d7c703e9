// SPDX-License-Identifier: BSD-3-Clause
// chunk_map.cpp — copy-on-write of chunks and reads of the frozen view (see the design notes in the header).
#include "chunk_map.h"

#include <algorithm>
#include <chrono>
#include <cstring>
#include <new>

#include "buffer_budget.h"
#include "chunk_buffer.h"
#include "snapshot.h"

namespace nbdsnap {

namespace {

// 1 when a chunk in this state holds the origin's old data (what chunks_copied() counts).
uint64_t holds_old_data(ChunkState state) {
  return state == ChunkState::in_memory || state == ChunkState::storing || state == ChunkState::stored;
}

}  // namespace

// A chunk this thread inserted as `copying`. finish() or fail() settle it; if neither ran because an
// exception unwound the copy, the destructor fails it, so no waiter of the chunk waits for ever.
class ChunkMap::CopyClaim {
 public:
  CopyClaim(ChunkMap& map, uint64_t index) : map_(map), index_(index) {}
  ~CopyClaim() {
    if (!settled_)
      map_.fail_chunk(index_, Errc::no_memory, "copy-on-write of a chunk was interrupted (out of memory)");
  }
  CopyClaim(const CopyClaim&) = delete;
  CopyClaim& operator=(const CopyClaim&) = delete;

  void finish(ChunkState state, std::shared_ptr<const uint8_t[]> buffer, StorageLocation location,
              bool cloned = false) noexcept {
    map_.finish_chunk(index_, state, std::move(buffer), location, cloned);
    settled_ = true;
  }
  void fail(const Status& cause) noexcept {
    map_.fail_chunk(index_, cause.code(), cause.message());
    settled_ = true;
  }

 private:
  ChunkMap& map_;
  const uint64_t index_;
  bool settled_ = false;
};

ChunkMap::ChunkMap(Snapshot& snapshot, std::string origin_name, std::shared_ptr<BlockDevice> origin_device,
                   uint64_t origin_size, uint64_t chunk_size, uint64_t copy_read_size,
                   std::shared_ptr<OriginCounters> counters, ReflinkMode reflink,
                   std::function<void(const std::string&)> log_info, const std::string& origin_file_identity)
    : snapshot_(snapshot),
      origin_name_(std::move(origin_name)),
      origin_device_(std::move(origin_device)),
      origin_size_(origin_size),
      chunk_size_(chunk_size),
      copy_read_size_(copy_read_size),
      sharing_(reflink, snapshot.name(), origin_name_, std::move(log_info)),
      slot_alignment_(
          sharing_.slot_alignment(origin_device_ ? origin_device_->sharable_file() : nullptr, chunk_size_)),
      origin_file_system_(OriginFileSystem::of(origin_device_.get(), origin_file_identity)),
      counters_(counters ? std::move(counters) : std::make_shared<OriginCounters>()) {}

ChunkMap::~ChunkMap() {
  // Buffers still queued when the snapshot goes away give their budget back.
  MutexLock lock(mutex_);
  snapshot_.budget().release(buffered_bytes_);
}

uint64_t ChunkMap::chunk_length(uint64_t index) const {
  return std::min(chunk_size_, origin_size_ - index * chunk_size_);
}

uint64_t ChunkMap::slot_length(uint64_t index) const {
  const uint64_t length = chunk_length(index);
  return (length + slot_alignment_ - 1) / slot_alignment_ * slot_alignment_;
}

BlockDevice* ChunkMap::origin_reader(BlockDevice* source) const {
  return source ? source : origin_device_.get();
}

Status ChunkMap::snapshot_health() const {
  if (dropped()) return {Errc::not_found, "origin '" + origin_name_ + "' was detached from the snapshot"};
  if (snapshot_.is_corrupted()) {
    return {Errc::corrupted,
            "snapshot '" + snapshot_.name() + "' is corrupted: " + snapshot_.corruption_reason()};
  }
  return Status::ok();
}

Status ChunkMap::failed_chunk_status() const {
  Status health = snapshot_health();
  if (!health.is_ok()) return health;
  return {Errc::corrupted,
          "a chunk of origin '" + origin_name_ + "' was lost"};  // not expected: fail_chunk corrupts
}

void ChunkMap::copy_before_write(uint64_t offset, uint64_t len, BlockDevice* source) noexcept {
  if (len == 0 || offset >= origin_size_) return;
  const uint64_t last_byte = std::min(origin_size_, offset + len) - 1;
  try {
    for (uint64_t index = offset / chunk_size_; index <= last_byte / chunk_size_; ++index) {
      // Once corrupted, the snapshot needs no more copies; readers check the flag after reading the origin.
      if (snapshot_.is_corrupted()) return;
      ensure_copied(index, source);
    }
  } catch (...) {
    // Nothing of this chunk was claimed (a claimed one is failed by its CopyClaim), but its old data may be
    // overwritten now: the snapshot cannot be trusted any more.
    snapshot_.corrupt(origin_name_, Errc::no_memory, "copy-on-write failed: out of memory");
  }
}

void ChunkMap::ensure_copied(uint64_t index, BlockDevice* source) {
  {
    MutexLock lock(mutex_);
    for (auto it = chunks_.find(index); it != chunks_.end(); it = chunks_.find(index)) {
      if (it->second.state != ChunkState::copying) return;
      waiters_of(index).wait(mutex_);
    }
    chunks_.emplace(index, Chunk{});  // we copy it; others wait for us. May throw: then nothing is inserted.
  }
  CopyClaim claim(*this, index);
  // Timed here only: a chunk copy does I/O anyway, so two clock reads cost nothing next to it.
  const auto started = std::chrono::steady_clock::now();
  copy_chunk(index, source, claim);
  const auto spent =
      std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now() - started);
  count(counters_->copy_on_write_ns, static_cast<uint64_t>(spent.count()));
}

void ChunkMap::count_stored(uint64_t index) noexcept {
  count(counters_->chunks_copied);
  count(counters_->bytes_copied, chunk_length(index));
}

void ChunkMap::copy_chunk(uint64_t index, BlockDevice* source, CopyClaim& claim) {
  if (share_chunk(index, source, claim)) return;
  const uint64_t length = chunk_length(index);
  // Not zero-filled: the read overwrites every byte, and zeroing a chunk per first write was measurable.
  std::shared_ptr<uint8_t[]> buffer = allocate_chunk_buffer(length);
  if (Status s = read_piece(buffer.get(), length, index * chunk_size_, source); !s) {
    claim.fail({s.code(), "copy-on-write read of the origin failed: " + s.message()});
    return;
  }
  if (snapshot_.budget().try_reserve(length)) {
    {
      MutexLock lock(mutex_);
      buffered_bytes_ += length;
    }
    claim.finish(ChunkState::in_memory, std::move(buffer), {});
    try {
      snapshot_.queue_writeback(shared_from_this(), index);
    } catch (...) {
      store_chunk(index);  // no room in the queue: write it back ourselves
    }
    return;
  }
  StorageLocation location;  // memory is full: store it ourselves, the write waits (back-pressure)
  if (Status s = store_buffer(index, buffer.get(), location); !s) {
    claim.fail(s);
    return;
  }
  count_stored(index);
  claim.finish(ChunkState::stored, nullptr, location);
}

bool ChunkMap::share_chunk(uint64_t index, BlockDevice* source, CopyClaim& claim) {
  BlockDevice* origin = origin_reader(source);
  const SharableFile* from = origin ? origin->sharable_file() : nullptr;
  DiffStorage& storage = snapshot_.storage();
  if (!sharing_.may_clone(from, storage.filling_area())) return false;
  StorageLocation location;
  if (Status s = storage.allocate(slot_length(index), location); !s) {
    claim.fail(s);
    return true;
  }
  uint64_t file_offset = 0;
  const std::shared_ptr<BlockDevice> device = storage.piece_device(location, file_offset);
  const SharableFile* to = device ? device->sharable_file() : nullptr;
  Status failure;
  bool cloned = false;
  switch (sharing_.preserve(*from, index * chunk_size_, to, location.area, file_offset, chunk_length(index),
                            failure)) {
    case ExtentSharing::Outcome::cloned:
      cloned = true;
      break;
    case ExtentSharing::Outcome::failed:
      // The file system may have shared part of the range before it failed (XFS remaps extent by extent):
      // give the slot back first, so that the origin write after this copy does not need blocks the slot
      // still shares (invariant 2: on a full file system it would fail with ENOSPC, and unshare_for_write
      // does not know a failed chunk's slot).
      if (punch_file_range(to->fd, file_offset, slot_length(index)) != 0) {
        snapshot_.corrupt(origin_name_, failure.code(), failure.message());  // first: readers see it
        snapshot_.storage().empty_created_files();                           // as in unshare_for_write()
      }
      claim.fail(failure);
      return true;
    case ExtentSharing::Outcome::copy:  // the slot is ours already: fill it here rather than queue the chunk
      failure = copy_into_slot(index, source, location);
      if (!failure) {
        claim.fail(failure);
        return true;
      }
      break;
  }
  count_stored(index);
  claim.finish(ChunkState::stored, nullptr, location, cloned);
  return true;
}

bool ChunkMap::unshare_for_write(uint64_t offset, uint64_t len) noexcept {
  if (len == 0 || offset >= origin_size_) return false;
  const uint64_t last_byte = std::min(origin_size_, offset + len) - 1;
  // Held to the end: a writer of the same chunks that met ENOSPC meanwhile finds them punched once we are
  // done, and writes again then, not before.
  MutexLock unsharing(unshare_mutex_);
  bool cloned = false;
  std::vector<std::pair<uint64_t, StorageLocation>> slots;  // marked punched, to punch below
  try {
    MutexLock lock(mutex_);
    for (uint64_t index = offset / chunk_size_; index <= last_byte / chunk_size_; ++index) {
      const auto it = chunks_.find(index);
      if (it == chunks_.end() || !it->second.cloned) continue;
      cloned = true;
      if (it->second.punched) continue;  // given back by an earlier writer
      slots.emplace_back(index, it->second.location);
      it->second.punched = true;
    }
  } catch (const std::bad_alloc&) {
    // Out of memory: what was marked is punched below; the write may fail with ENOSPC once more.
  }
  if (slots.empty()) return cloned;
  std::string reason;
  try {
    reason =
        "the file system of origin '" + origin_name_ +
        "' is full: an origin write needed the blocks its chunks share with difference storage (reflink), "
        "so the snapshot gave them up";
  } catch (const std::bad_alloc&) {
    // The flag is what keeps images safe; the reason stays empty.
  }
  // Corrupted before a byte is punched: an image read that reads a punched slot checks the snapshot's health
  // after its reads and fails (invariant 1).
  snapshot_.corrupt(origin_name_, Errc::no_space, reason);
  bool all_punched = true;
  for (const auto& [index, location] : slots) {
    uint64_t file_offset = 0;
    const std::shared_ptr<BlockDevice> device = snapshot_.storage().piece_device(location, file_offset);
    const SharableFile* file = device ? device->sharable_file() : nullptr;
    if (file == nullptr || punch_file_range(file->fd, file_offset, slot_length(index)) != 0)
      all_punched = false;
  }
  // A punch needs blocks reserved for the file's mapping and fails with ENOSPC on a file system full to the
  // last block (seen on XFS); emptying the files the snapshot created needs none.
  if (!all_punched) snapshot_.storage().empty_created_files();
  return true;
}

bool ChunkMap::give_up_storage_for_write() noexcept {
  return snapshot_.give_up_storage(origin_name_, origin_file_system_);
}

Status ChunkMap::copy_into_slot(uint64_t index, BlockDevice* source, const StorageLocation& location) {
  const uint64_t length = chunk_length(index);
  std::shared_ptr<uint8_t[]> buffer = allocate_chunk_buffer(length);
  if (Status s = read_piece(buffer.get(), length, index * chunk_size_, source); !s) {
    return {s.code(), "copy-on-write read of the origin failed: " + s.message()};
  }
  return snapshot_.storage().write(location, buffer.get(), length, 0);
}

Status ChunkMap::read_piece(uint8_t* buf, uint64_t len, uint64_t offset, BlockDevice* source) {
  BlockDevice* origin = origin_reader(source);
  if (!origin) return {Errc::io_error, "no device to read origin '" + origin_name_ + "' from"};
  while (len > 0) {
    const uint64_t n = std::min(len, copy_read_size_);
    if (Status s = origin->pread(buf, n, offset); !s) return s;
    buf += n;
    offset += n;
    len -= n;
  }
  return Status::ok();
}

Status ChunkMap::store_buffer(uint64_t index, const uint8_t* buffer, StorageLocation& location) {
  const uint64_t length = chunk_length(index);
  if (Status s = snapshot_.storage().allocate(slot_length(index), location); !s) return s;
  return snapshot_.storage().write(location, buffer, length, 0);
}

void ChunkMap::finish_chunk(uint64_t index, ChunkState state, std::shared_ptr<const uint8_t[]> buffer,
                            StorageLocation location, bool cloned) noexcept {
  MutexLock lock(mutex_);
  const auto it = chunks_.find(index);
  if (it == chunks_.end()) return;  // not reached: chunks are never erased
  copied_chunks_ += holds_old_data(state);
  copied_chunks_ -= holds_old_data(it->second.state);
  it->second.state = state;
  it->second.buffer = std::move(buffer);
  it->second.location = location;
  it->second.cloned = cloned;
  waiters_of(index).notify_all();
}

void ChunkMap::fail_chunk(uint64_t index, Errc code, std::string_view reason) noexcept {
  snapshot_.corrupt(origin_name_, code, reason);
  finish_chunk(index, ChunkState::failed, nullptr, {});
}

void ChunkMap::store_chunk(uint64_t index) noexcept {
  std::shared_ptr<const uint8_t[]> buffer;
  {
    MutexLock lock(mutex_);
    auto it = chunks_.find(index);
    if (it == chunks_.end() || it->second.state != ChunkState::in_memory) return;  // taken over by a writer
    it->second.state = ChunkState::storing;  // from here on the chunk is settled below, whatever happens
    buffer = it->second.buffer;
  }
  const uint64_t length = chunk_length(index);
  StorageLocation location;
  bool stored = false;
  Status failure;
  try {
    if (!snapshot_.is_corrupted()) {  // a corrupted snapshot needs no more copies
      failure = store_buffer(index, buffer.get(), location);
      stored = failure.is_ok();
    }
  } catch (...) {
    stored = false;
  }
  {
    MutexLock lock(mutex_);
    buffered_bytes_ -= length;
  }
  snapshot_.budget().release(length);
  if (stored) {
    count_stored(index);
    finish_chunk(index, ChunkState::stored, nullptr, location);
  } else {
    // Not stored without a failure: the snapshot was corrupted already, or an allocation failed on the way.
    const bool known = !failure.is_ok();
    fail_chunk(index, known ? failure.code() : Errc::io_error,
               known ? std::string_view(failure.message()) : std::string_view("writeback of a chunk failed"));
  }
}

Status ChunkMap::ensure_stored(uint64_t index, StorageLocation& location) {
  for (;;) {
    MutexLock lock(mutex_);
    const Chunk& chunk = chunks_.at(index);
    switch (chunk.state) {
      case ChunkState::stored:
        location = chunk.location;
        return Status::ok();
      case ChunkState::failed:
        lock.unlock();
        return failed_chunk_status();
      case ChunkState::copying:
      case ChunkState::storing:
        waiters_of(index).wait(mutex_);
        break;
      case ChunkState::in_memory:
        lock.unlock();
        store_chunk(index);  // take the writeback over; the queued entry becomes a no-op
        break;
    }
  }
}

void ChunkMap::drop() {
  dropped_.store(true, std::memory_order_release);
  image_io_.close();
  origin_device_.reset();
  release_buffers();
}

void ChunkMap::release_buffers() noexcept {
  uint64_t released = 0;
  {
    MutexLock lock(mutex_);
    for (auto& [index, chunk] : chunks_) {
      if (chunk.state != ChunkState::in_memory) continue;  // a chunk being stored gives its bytes back itself
      chunk.state = ChunkState::failed;  // never read again; a queued writeback finds nothing to do
      --copied_chunks_;
      chunk.buffer.reset();
      released += chunk_length(index);
    }
    buffered_bytes_ -= released;
  }
  snapshot_.budget().release(released);
}

ChunkMap::Piece ChunkMap::next_piece(uint64_t offset, uint64_t len) const {
  const uint64_t index = offset / chunk_size_;
  uint64_t untouched;
  {
    MutexLock lock(mutex_);
    untouched = untouched_chunks(index, (offset + len - 1) / chunk_size_);
  }
  if (untouched > 0) return {std::min(len, (index + untouched) * chunk_size_ - offset), true};
  return {std::min(len, chunk_size_ - offset % chunk_size_), false};
}

uint64_t ChunkMap::untouched_chunks(uint64_t first, uint64_t last) const {
  const uint64_t limit = std::min(last - first + 1, kMaxChunksPerScan);
  if (chunks_.empty()) return limit;  // nothing touched yet: the image of an unchanged origin
  uint64_t count = 0;
  while (count < limit && chunks_.count(first + count) == 0) ++count;
  return count;
}

uint64_t ChunkMap::first_touched(uint64_t first, uint64_t last) const {
  if (chunks_.empty()) return last + 1;
  for (uint64_t index = first; index <= last; ++index) {
    if (chunks_.count(index) != 0) return index;
  }
  return last + 1;
}

Status ChunkMap::read_touched(uint64_t index, uint8_t* out, uint64_t len, uint64_t in_chunk) {
  MutexLock lock(mutex_);
  auto it = chunks_.find(index);  // present: chunks are never erased
  while (it->second.state == ChunkState::copying) {
    waiters_of(index).wait(mutex_);
    it = chunks_.find(index);
  }
  const Chunk chunk = it->second;  // a copy: the buffer stays alive without the lock
  lock.unlock();
  if (chunk.state == ChunkState::failed) return failed_chunk_status();
  if (chunk.buffer) {
    std::memcpy(out, chunk.buffer.get() + in_chunk, len);
  } else if (Status s = snapshot_.storage().read(chunk.location, out, len, in_chunk); !s) {
    snapshot_.corrupt(origin_name_, s.code(), "read of difference storage failed: " + s.message());
    return snapshot_health();
  }
  return Status::ok();
}

Status ChunkMap::read_untouched(uint8_t* out, uint64_t len, uint64_t offset, BlockDevice* source) {
  BlockDevice* origin = origin_reader(source);
  if (!origin) return {Errc::io_error, "no device to read origin '" + origin_name_ + "' from"};
  if (Status read = origin->pread(out, len, offset); !read) return read;
  // Chunks still absent now were not written during the read (writers insert first); the others are read
  // again from their copies.
  const uint64_t last = (offset + len - 1) / chunk_size_;
  for (uint64_t index = offset / chunk_size_;; ++index) {
    {
      MutexLock lock(mutex_);
      index = first_touched(index, last);
    }
    if (index > last) return Status::ok();
    const uint64_t from = std::max(offset, index * chunk_size_);
    const uint64_t to = std::min(offset + len, (index + 1) * chunk_size_);
    if (Status s = read_touched(index, out + (from - offset), to - from, from - index * chunk_size_); !s) {
      return s;
    }
  }
}

Status ChunkMap::read(void* buf, uint64_t len, uint64_t offset, BlockDevice* source) {
  if (Status s = check_range(origin_size_, offset, len); !s) return s;
  IoGate::Pass pass(image_io_);
  if (!pass.entered()) return snapshot_health();
  if (Status s = snapshot_health(); !s) return s;
  const uint64_t requested = len;
  auto* out = static_cast<uint8_t*>(buf);
  while (len > 0) {
    const Piece piece = next_piece(offset, len);
    Status s = piece.untouched ? read_untouched(out, piece.length, offset, source)
                               : read_touched(offset / chunk_size_, out, piece.length, offset % chunk_size_);
    if (!s) return s;
    out += piece.length;
    offset += piece.length;
    len -= piece.length;
  }
  // A corruption during the read may have let writers change the origin without copying first.
  if (Status s = snapshot_health(); !s) return s;
  count(image_counters_.reads);
  count(image_counters_.bytes_read, requested);
  return Status::ok();
}

Status ChunkMap::write(const void* buf, uint64_t len, uint64_t offset, BlockDevice* source) {
  if (Status s = check_range(origin_size_, offset, len); !s) return s;
  IoGate::Pass pass(image_io_);
  if (!pass.entered()) return snapshot_health();
  if (Status s = snapshot_health(); !s) return s;
  const auto* in = static_cast<const uint8_t*>(buf);
  std::vector<uint8_t> zeroes;
  while (len > 0) {
    const uint64_t index = offset / chunk_size_, in_chunk = offset % chunk_size_;
    const uint64_t n = std::min(len, chunk_size_ - in_chunk);
    try {
      ensure_copied(index, source);
    } catch (const std::bad_alloc&) {  // a claimed chunk was failed (corrupting the snapshot) on the way out
      Status health = snapshot_health();
      return health.is_ok() ? Status{Errc::no_memory, "out of memory writing the image"} : health;
    }
    StorageLocation location;
    if (Status s = ensure_stored(index, location); !s) return s;
    const void* data = in;
    if (!in) {
      zeroes.assign(n, 0);
      data = zeroes.data();
    }
    if (Status s = snapshot_.storage().write(location, data, n, in_chunk); !s) {
      snapshot_.corrupt(origin_name_, s.code(), "write to difference storage failed: " + s.message());
      return snapshot_health();
    }
    if (in) in += n;
    offset += n;
    len -= n;
  }
  return snapshot_health();
}

template <typename Add>
void ChunkMap::untouched_extents(uint64_t offset, uint64_t len, BlockDevice* origin, Add&& add) {
  std::vector<Extent> found;
  if (!origin || !origin->extents(offset, len, found).is_ok()) {
    add(offset, len, false);  // unknown: data is always a safe answer
    return;
  }
  // Chunks touched during the query: the origin's answer there may describe new data.
  const uint64_t first = offset / chunk_size_, last = (offset + len - 1) / chunk_size_;
  std::vector<uint64_t> touched;
  {
    MutexLock lock(mutex_);
    for (uint64_t index = first_touched(first, last); index <= last; index = first_touched(index + 1, last))
      touched.push_back(index);
  }
  uint64_t at = offset;                 // everything before it is added
  auto add_found = [&](uint64_t end) {  // the origin's extents over [at, end)
    for (const Extent& e : found) {
      const uint64_t from = std::max(e.offset, at), to = std::min(e.offset + e.length, end);
      if (from < to) add(from, to - from, e.hole && e.zero);
    }
    at = end;
  };
  for (uint64_t index : touched) {
    const uint64_t from = std::max(offset, index * chunk_size_);
    const uint64_t to = std::min(offset + len, (index + 1) * chunk_size_);
    add_found(from);
    add(from, to - from, false);
    at = to;
  }
  add_found(offset + len);
}

Status ChunkMap::extents(uint64_t offset, uint64_t len, std::vector<Extent>& out, BlockDevice* source) {
  if (Status s = check_range(origin_size_, offset, len); !s) return s;
  IoGate::Pass pass(image_io_);
  if (!pass.entered()) return snapshot_health();
  if (Status s = snapshot_health(); !s) return s;
  BlockDevice* origin = origin_reader(source);
  auto add = [&out](uint64_t at, uint64_t n, bool hole) {
    if (!out.empty() && out.back().offset + out.back().length == at && out.back().hole == hole) {
      out.back().length += n;
    } else {
      out.push_back({at, n, hole, hole});
    }
  };
  while (len > 0) {
    const Piece piece = next_piece(offset, len);
    if (piece.untouched) {
      untouched_extents(offset, piece.length, origin, add);
    } else {
      add(offset, piece.length, false);  // copied: its old data is in memory or difference storage
    }
    offset += piece.length;
    len -= piece.length;
  }
  return Status::ok();
}

uint64_t ChunkMap::chunks_copied() const {
  MutexLock lock(mutex_);
  return copied_chunks_;
}

uint64_t ChunkMap::memory_bytes() const {
  MutexLock lock(mutex_);
  // Per entry: the node, its key and state, and a bucket pointer (an estimate of unordered_map's cost).
  return chunks_.size() * (sizeof(Chunk) + sizeof(uint64_t) + 3 * sizeof(void*)) + buffered_bytes_;
}

}  // namespace nbdsnap
