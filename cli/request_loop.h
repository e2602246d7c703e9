// SPDX-License-Identifier: BSD-3-Clause
// request_loop.h — one connection's share of a copy or verification (image_copier.h): a thread keeps its
// request slots busy with pieces claimed from a shared index, reading the image and writing the target.
//
// A slot goes idle -> reading -> idle for a file target (the completion callback writes with pwrite), and
// idle -> reading -> to_write -> writing -> idle for an NBD target, whose connection is this loop's own: the
// write is issued from the loop (not from the read's callback) and both connections are driven by one poll.
// Verifying an NBD target reads both sides at once (two requests for the slot). Every completion callback
// runs on the loop's thread, inside the poll.
#pragma once

#include <atomic>
#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "exit_codes.h"
#include "image_copier.h"
#include "stop_aware_deadline.h"

namespace nbdsnap::cli {

enum class CopyMode { copy, verify };

// What all connections share: the pieces, the next one to claim, the bytes done, and a stop flag.
struct SharedWork {
  std::vector<CopyPiece>& pieces;
  CopyTarget target;  // target.nbd is unused here: each loop has its own connection
  CopyOptions options;
  CopyMode mode;
  std::atomic<size_t> next{0};
  std::atomic<uint64_t> bytes_done{0};
  std::atomic<bool> failed{false};
};

class RequestLoop {
 public:
  // `target` is this loop's connection to an NBD target (null for a file target).
  RequestLoop(NbdImage& image, NbdImage* target, SharedWork& work, unsigned slot_count, uint64_t buffer_size);
  RequestLoop(const RequestLoop&) = delete;
  RequestLoop& operator=(const RequestLoop&) = delete;

  // Runs until every piece is claimed and done (then flushes an NBD target), or a failure anywhere. Throws
  // this loop's failure.
  void run();

  uint64_t bytes_read() const { return bytes_read_; }
  uint64_t bytes_written() const { return bytes_written_; }
  uint64_t bytes_zeroed() const { return bytes_zeroed_; }

 private:
  enum class SlotState { idle, reading, to_write, writing };
  struct Slot {
    RequestLoop* loop = nullptr;
    std::unique_ptr<char[]> buffer;
    std::unique_ptr<char[]> target_buffer;  // verify: the target's bytes
    size_t piece = 0;
    SlotState state = SlotState::idle;
    unsigned pending = 0;  // requests of this slot in flight
    bool write_zeroes = false;
  };

  bool stopping() const { return work_.failed.load(std::memory_order_relaxed); }
  bool wait_for_replies();
  // The message for a silence that outlasted the timeout, naming the connection(s) that did not answer.
  std::string silence_message() const;
  static int on_read(void* user_data, int* error);
  static int on_read_back(void* user_data, int* error);  // verify: the target's read
  static int on_write(void* user_data, int* error);
  void issue(Slot& slot, size_t piece_index);
  void issue_write(Slot& slot);
  void issue_zeroes(Slot& slot);
  void read_done(Slot& slot, int error);
  void write_done(Slot& slot, int error);
  void finish(Slot& slot);
  void store(Slot& slot, CopyPiece& piece);
  void compare(Slot& slot, const CopyPiece& piece);
  bool write_file(const char* data, uint64_t length, uint64_t offset);
  bool zero_file(uint64_t length, uint64_t offset);
  void fail(const std::string& message, ErrorDetail detail = {});

  NbdImage& image_;
  NbdImage* target_;
  SharedWork& work_;
  std::vector<Slot> slots_;
  unsigned in_flight_ = 0;         // requests on either connection
  unsigned target_in_flight_ = 0;  // of these, on the target's (writes, and the reads back of verify)
  // Silence of the server(s): restarted by any reply, or when a request is issued with none in flight; a
  // stop of nbdsnap itself (SIGSTOP/SIGCONT) restarts it too (stop_aware_deadline.h).
  StopAwareDeadline silence_;
  uint64_t bytes_read_ = 0;
  uint64_t bytes_written_ = 0;
  uint64_t bytes_zeroed_ = 0;
  std::optional<CliError> failure_;
};

}  // namespace nbdsnap::cli
