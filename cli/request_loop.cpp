// SPDX-License-Identifier: BSD-3-Clause
// request_loop.cpp — the slots of one connection: issuing reads and writes, their completions, the bounded
// wait for replies (request_loop.h).
#include "request_loop.h"

#include <algorithm>
#include <cerrno>
#include <cstring>

#include <fcntl.h>
#include <libnbd.h>
#include <unistd.h>

#include "checksum.h"
#include "nbd_connect_errors.h"
#include "nbd_image.h"

namespace nbdsnap::cli {

namespace {

std::string at(const CopyPiece& piece) {
  return " at offset " + std::to_string(piece.offset) + " (" + std::to_string(piece.length) + " bytes)";
}

// libnbd's error for a failed call on `image`; once its connection is over, that the server closed it
// (libnbd's own words are then about its state machine, and left out).
std::string request_error(NbdImage& image) {
  const std::string libnbd = NbdImage::last_error();
  const std::string lost = lost_connection_message(image.handle(), image.uri());
  return lost.empty() ? libnbd : lost;
}

}  // namespace

RequestLoop::RequestLoop(NbdImage& image, NbdImage* target, SharedWork& work, unsigned slot_count,
                         uint64_t buffer_size)
    : image_(image),
      target_(target),
      work_(work),
      slots_(std::max(1u, slot_count)),
      silence_(image.timeout()) {
  // Not zero-filled: a read fills what a slot sends or compares. Zeroing touched every page of 16 slots of up
  // to a request's size up front (32 MiB at 2 MiB requests), page faults for buffers a small copy never uses.
  for (Slot& slot : slots_) {
    slot.loop = this;
    slot.buffer = std::make_unique_for_overwrite<char[]>(buffer_size);
    if (work.mode == CopyMode::verify)
      slot.target_buffer = std::make_unique_for_overwrite<char[]>(buffer_size);
  }
}

void RequestLoop::run() {
  bool more = true;
  for (;;) {
    bool writes_waiting = false;
    for (Slot& slot : slots_) {
      if (slot.state != SlotState::to_write) continue;
      if (stopping()) {
        slot.state = SlotState::idle;
      } else {
        issue_write(slot);
      }
    }
    for (Slot& slot : slots_) {
      if (slot.state != SlotState::idle || !more || stopping()) continue;
      const size_t index = work_.next.fetch_add(1);
      if (index >= work_.pieces.size()) {
        more = false;
        break;
      }
      issue(slot, index);
      writes_waiting |= slot.state == SlotState::to_write;
    }
    if (in_flight_ == 0 && !writes_waiting && (!more || stopping())) break;
    if (in_flight_ > 0 && !wait_for_replies()) break;
  }
  if (!failure_ && target_ != nullptr && work_.mode == CopyMode::copy) {
    try {
      target_->flush();
    } catch (const CliError& error) {
      fail(error.what());
    }
  }
  if (failure_) throw *failure_;
}

// Lets libnbd send requests and receive replies until something happens. False when the loop must end with
// requests in flight: a connection died (libnbd has failed what was in flight on it), or no reply came for
// the timeout (a stopped server must not hang the copy). Both connections are then given up, so nothing
// reads into our buffers or calls back into this loop any more, not even while they are closed.
bool RequestLoop::wait_for_replies() {
  const auto wait = silence_.remaining();
  const int polled = target_ != nullptr ? NbdImage::poll_both(image_, *target_, wait) : image_.poll(wait);
  if (polled == -1) {
    image_.give_up();
    if (target_ != nullptr) target_->give_up();
    const std::string libnbd = NbdImage::last_error();
    std::string lost = lost_connection_message(image_.handle(), image_.uri());
    if (lost.empty() && target_ != nullptr) lost = lost_connection_message(target_->handle(), target_->uri());
    fail(lost.empty() ? "NBD connection failed: " + libnbd : lost);
    return false;
  }
  if (in_flight_ > 0 && silence_.expired()) {
    image_.give_up();
    if (target_ != nullptr) target_->give_up();
    fail(silence_message(), no_reply_detail());
    return false;
  }
  return true;
}

std::string RequestLoop::silence_message() const {
  const bool copy = work_.mode == CopyMode::copy;
  const std::string target_request = copy ? "writing the target" : "reading the target back";
  if (target_ == nullptr || target_in_flight_ == 0)
    return image_.no_reply_message(copy ? "reading the image" : "verifying");
  // Only the target's requests wait: the image answered, and it is the target that stopped answering.
  if (target_in_flight_ == in_flight_) return target_->no_reply_message(target_request);
  return image_.no_reply_message(copy ? "reading the image" : "verifying") + "; nor did " + target_->uri() +
         " (" + target_request + ")";
}

int RequestLoop::on_read(void* user_data, int* error) {
  auto* slot = static_cast<Slot*>(user_data);
  slot->loop->read_done(*slot, *error);
  return 1;  // retire the command
}

int RequestLoop::on_read_back(void* user_data, int* error) {
  auto* slot = static_cast<Slot*>(user_data);
  --slot->loop->target_in_flight_;
  slot->loop->read_done(*slot, *error);
  return 1;
}

int RequestLoop::on_write(void* user_data, int* error) {
  auto* slot = static_cast<Slot*>(user_data);
  slot->loop->write_done(*slot, *error);
  return 1;
}

void RequestLoop::issue(Slot& slot, size_t piece_index) {
  CopyPiece& piece = work_.pieces[piece_index];
  slot.piece = piece_index;
  if (piece.zero) {  // nothing to read
    if (work_.mode == CopyMode::verify || work_.options.skip_zero_writes) {
      finish(slot);
    } else if (target_ != nullptr) {
      slot.write_zeroes = true;
      slot.state = SlotState::to_write;
    } else {
      if (zero_file(piece.length, piece.offset)) {
        bytes_zeroed_ += piece.length;
      } else {
        const int err = errno;
        fail("writing zeroes to " + work_.target.name + at(piece) + ": " + std::strerror(err), {"", err, ""});
      }
      finish(slot);
    }
    return;
  }
  slot.state = SlotState::reading;
  slot.pending = 0;
  if (in_flight_ == 0) silence_.restart();  // the silence starts now
  nbd_completion_callback callback{on_read, &slot, nullptr};
  if (nbd_aio_pread(image_.handle(), slot.buffer.get(), piece.length, piece.offset, callback, 0) == -1) {
    // Not thrown here: requests in flight still point at our slots, so run() drains them first.
    slot.state = SlotState::idle;
    fail("NBD read" + at(piece) + ": " + request_error(image_));
    return;
  }
  ++in_flight_;
  ++slot.pending;
  if (work_.mode == CopyMode::verify && target_ != nullptr) {
    nbd_completion_callback read_back{on_read_back, &slot, nullptr};
    if (nbd_aio_pread(target_->handle(), slot.target_buffer.get(), piece.length, piece.offset, read_back,
                      0) == -1) {
      fail("reading " + work_.target.name + " back" + at(piece) + ": " + request_error(*target_));
      return;
    }
    ++in_flight_;
    ++target_in_flight_;
    ++slot.pending;
  }
}

void RequestLoop::issue_write(Slot& slot) {
  const CopyPiece& piece = work_.pieces[slot.piece];
  slot.state = SlotState::writing;
  if (in_flight_ == 0) silence_.restart();
  nbd_completion_callback callback{on_write, &slot, nullptr};
  int64_t cookie = 0;
  if (slot.write_zeroes && target_->can_zero()) {
    cookie = nbd_aio_zero(target_->handle(), piece.length, piece.offset, callback, 0);
  } else {
    if (slot.write_zeroes) std::memset(slot.buffer.get(), 0, piece.length);
    cookie = nbd_aio_pwrite(target_->handle(), slot.buffer.get(), piece.length, piece.offset, callback, 0);
  }
  if (cookie == -1) {
    slot.state = SlotState::idle;
    fail("writing " + work_.target.name + at(piece) + ": " + request_error(*target_));
    return;
  }
  ++in_flight_;
  ++target_in_flight_;
  slot.pending = 1;
}

void RequestLoop::read_done(Slot& slot, int error) {
  --in_flight_;
  --slot.pending;
  silence_.restart();
  CopyPiece& piece = work_.pieces[slot.piece];
  if (error != 0) fail("NBD read" + at(piece) + " failed: " + std::strerror(error), {"", error, ""});
  if (slot.pending > 0) return;  // verify: the other side's read is still in flight
  if (failure_) {
    slot.state = SlotState::idle;
    return;
  }
  bytes_read_ += piece.length;
  if (work_.mode == CopyMode::verify) {
    compare(slot, piece);
    finish(slot);
    return;
  }
  if (work_.options.checksums) piece.checksum = checksum64(slot.buffer.get(), piece.length);
  if (target_ == nullptr) {
    store(slot, piece);
    finish(slot);
    return;
  }
  slot.write_zeroes = is_all_zero(slot.buffer.get(), piece.length);
  if (slot.write_zeroes && work_.options.skip_zero_writes) {
    finish(slot);
  } else {
    slot.state = SlotState::to_write;  // issued by run(): this callback runs inside the poll
  }
}

void RequestLoop::write_done(Slot& slot, int error) {
  --in_flight_;
  --target_in_flight_;
  slot.pending = 0;
  silence_.restart();
  const CopyPiece& piece = work_.pieces[slot.piece];
  if (error != 0) {
    fail("writing " + work_.target.name + at(piece) + " failed: " + std::strerror(error), {"", error, ""});
  } else if (slot.write_zeroes) {
    bytes_zeroed_ += piece.length;
  } else {
    bytes_written_ += piece.length;
  }
  finish(slot);
}

void RequestLoop::finish(Slot& slot) {
  slot.state = SlotState::idle;
  slot.write_zeroes = false;
  work_.bytes_done.fetch_add(work_.pieces[slot.piece].length, std::memory_order_relaxed);
}

void RequestLoop::store(Slot& slot, CopyPiece& piece) {
  if (work_.options.skip_zero_writes && is_all_zero(slot.buffer.get(), piece.length)) return;
  if (!write_file(slot.buffer.get(), piece.length, piece.offset)) {
    const int err = errno;
    fail("writing " + work_.target.name + at(piece) + ": " + std::strerror(err), {"", err, ""});
    return;
  }
  bytes_written_ += piece.length;
  if (work_.options.write_behind) {
    // Only a hint: where it is not supported (a pipe, some file systems) the final fdatasync does it all.
    ::sync_file_range(work_.target.fd, static_cast<off_t>(piece.offset), static_cast<off_t>(piece.length),
                      SYNC_FILE_RANGE_WRITE);
  }
}

void RequestLoop::compare(Slot& slot, const CopyPiece& piece) {
  if (target_ == nullptr) {
    ssize_t n =
        ::pread(work_.target.fd, slot.target_buffer.get(), piece.length, static_cast<off_t>(piece.offset));
    if (n != static_cast<ssize_t>(piece.length)) {
      const int err = n < 0 ? errno : EIO;
      fail("reading " + work_.target.name + " back" + at(piece) + ": " +
               (n < 0 ? std::strerror(err) : "short read"),
           {"", err, ""});
      return;
    }
  }
  if (checksum64(slot.buffer.get(), piece.length) != piece.checksum) {
    fail("verify failed: the image changed since it was copied" + at(piece));
  } else if (checksum64(slot.target_buffer.get(), piece.length) != piece.checksum) {
    fail("verify failed: " + work_.target.name + " differs from what was copied" + at(piece));
  }
}

bool RequestLoop::write_file(const char* data, uint64_t length, uint64_t offset) {
  while (length > 0) {
    ssize_t n = ::pwrite(work_.target.fd, data, length, static_cast<off_t>(offset));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    data += n;
    length -= static_cast<uint64_t>(n);
    offset += static_cast<uint64_t>(n);
  }
  return true;
}

bool RequestLoop::zero_file(uint64_t length, uint64_t offset) {
  static const std::vector<char> zeroes(1 << 20, 0);
  while (length > 0) {
    const uint64_t step = std::min<uint64_t>(length, zeroes.size());
    if (!write_file(zeroes.data(), step, offset)) return false;
    length -= step;
    offset += step;
  }
  return true;
}

void RequestLoop::fail(const std::string& message, ErrorDetail detail) {
  if (!failure_) failure_.emplace(ExitCode::io_error, message, std::move(detail));
  work_.failed = true;
}

}  // namespace nbdsnap::cli
