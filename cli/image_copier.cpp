// image_copier.cpp — the aio request loops (one per connection and thread) shared by copying and verifying.
#include "image_copier.h"

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <exception>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>

#include <libnbd.h>
#include <unistd.h>

#include "checksum.h"
#include "exit_codes.h"
#include "nbd_image.h"
#include "progress_bar.h"

namespace nbdsnap::cli {

namespace {

enum class Mode { copy, verify };

// What all connections share: the pieces, the next one to claim, the bytes done, and a stop flag.
struct SharedWork {
  std::vector<CopyPiece>& pieces;
  int fd;
  CopyOptions options;
  Mode mode;
  std::atomic<size_t> next{0};
  std::atomic<uint64_t> bytes_done{0};
  std::atomic<bool> failed{false};
};

class RequestLoop;

struct Slot {
  RequestLoop* loop = nullptr;
  std::unique_ptr<char[]> buffer;
  std::unique_ptr<char[]> file_buffer;  // verify: the backup file's bytes
  size_t piece = 0;
  bool busy = false;
};

// One connection's loop: keeps its slots busy with pieces claimed from the shared index.
class RequestLoop {
 public:
  RequestLoop(NbdImage& image, SharedWork& work, unsigned slot_count, uint64_t buffer_size)
      : image_(image), work_(work), slots_(std::max(1u, slot_count)) {
    for (Slot& slot : slots_) {
      slot.loop = this;
      slot.buffer = std::make_unique<char[]>(buffer_size);
      if (work.mode == Mode::verify) slot.file_buffer = std::make_unique<char[]>(buffer_size);
    }
  }

  // Runs until every piece is claimed and done, or a failure anywhere. Throws this loop's failure.
  void run() {
    bool more = true;
    while ((more && !stopping()) || in_flight_ > 0) {
      for (Slot& slot : slots_) {
        if (slot.busy || !more || stopping()) continue;
        size_t index = work_.next.fetch_add(1);
        if (index >= work_.pieces.size()) {
          more = false;
          break;
        }
        issue(slot, index);
      }
      if (in_flight_ > 0 && !wait_for_replies()) break;
    }
    if (failure_) throw *failure_;
  }

  uint64_t bytes_read() const { return bytes_read_; }
  uint64_t bytes_written() const { return bytes_written_; }

 private:
  bool stopping() const { return work_.failed.load(std::memory_order_relaxed); }

  // Lets libnbd send requests and receive replies until something happens. False when the loop must end
  // with requests in flight: the connection died (libnbd has failed what was in flight), or no reply came
  // for the timeout (a stopped server must not hang the backup; the connection is given up, so nothing
  // reads into our buffers any more).
  bool wait_for_replies() {
    const auto silent_until = last_reply_ + image_.timeout();
    const auto left = std::chrono::ceil<std::chrono::milliseconds>(silent_until - std::chrono::steady_clock::now());
    if (image_.poll(std::max(left, std::chrono::milliseconds(0))) == -1) {
      fail("NBD connection failed: " + NbdImage::last_error());
      return false;
    }
    if (in_flight_ > 0 && std::chrono::steady_clock::now() >= silent_until) {
      image_.give_up();
      fail(image_.no_reply_message("reading the image"));
      return false;
    }
    return true;
  }

  static int on_complete(void* user_data, int* error) {
    auto* slot = static_cast<Slot*>(user_data);
    slot->loop->complete(*slot, *error);
    return 1;  // retire the command
  }

  void issue(Slot& slot, size_t piece_index) {
    const CopyPiece& piece = work_.pieces[piece_index];
    slot.piece = piece_index;
    slot.busy = true;
    nbd_completion_callback callback{on_complete, &slot, nullptr};
    if (in_flight_ == 0) last_reply_ = std::chrono::steady_clock::now();  // the silence starts now
    if (nbd_aio_pread(image_.handle(), slot.buffer.get(), piece.length, piece.offset, callback, 0) == -1) {
      // Not thrown here: requests in flight still point at our slots, so run() drains them first.
      slot.busy = false;
      fail("NBD read at offset " + std::to_string(piece.offset) + ": " + NbdImage::last_error());
      return;
    }
    ++in_flight_;
  }

  void complete(Slot& slot, int error) {
    slot.busy = false;
    --in_flight_;
    last_reply_ = std::chrono::steady_clock::now();
    CopyPiece& piece = work_.pieces[slot.piece];
    if (failure_) return;
    if (error != 0) {
      fail("NBD read of " + std::to_string(piece.length) + " bytes at offset " + std::to_string(piece.offset) +
           " failed: " + std::strerror(error));
      return;
    }
    bytes_read_ += piece.length;
    if (work_.mode == Mode::copy) {
      store(slot, piece);
    } else {
      compare(slot, piece);
    }
    work_.bytes_done.fetch_add(piece.length, std::memory_order_relaxed);
  }

  void store(Slot& slot, CopyPiece& piece) {
    if (work_.options.checksums) piece.checksum = checksum64(slot.buffer.get(), piece.length);
    if (work_.options.skip_zero_writes && is_all_zero(slot.buffer.get(), piece.length)) return;
    if (!write_all(slot.buffer.get(), piece.length, piece.offset)) {
      fail("writing the backup at offset " + std::to_string(piece.offset) + ": " + std::strerror(errno));
      return;
    }
    bytes_written_ += piece.length;
  }

  void compare(Slot& slot, const CopyPiece& piece) {
    ssize_t n = ::pread(work_.fd, slot.file_buffer.get(), piece.length, static_cast<off_t>(piece.offset));
    if (n != static_cast<ssize_t>(piece.length)) {
      fail("reading the backup back at offset " + std::to_string(piece.offset) + ": " +
           (n < 0 ? std::strerror(errno) : "short read"));
      return;
    }
    std::string where = " at offset " + std::to_string(piece.offset) + " (" + std::to_string(piece.length) + " bytes)";
    if (checksum64(slot.buffer.get(), piece.length) != piece.checksum) {
      fail("verify failed: the image changed since it was copied" + where);
    } else if (checksum64(slot.file_buffer.get(), piece.length) != piece.checksum) {
      fail("verify failed: the backup file differs from what was copied" + where);
    }
  }

  bool write_all(const char* data, uint64_t length, uint64_t offset) {
    while (length > 0) {
      ssize_t n = ::pwrite(work_.fd, data, length, static_cast<off_t>(offset));
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return false;
      data += n;
      length -= static_cast<uint64_t>(n);
      offset += static_cast<uint64_t>(n);
    }
    return true;
  }

  void fail(const std::string& message) {
    if (!failure_) failure_.emplace(ExitCode::io_error, message);
    work_.failed = true;
  }

  NbdImage& image_;
  SharedWork& work_;
  std::vector<Slot> slots_;
  unsigned in_flight_ = 0;
  std::chrono::steady_clock::time_point last_reply_{};  // of any request, or when the first one was issued
  uint64_t bytes_read_ = 0;
  uint64_t bytes_written_ = 0;
  std::optional<CliError> failure_;
};

uint64_t effective_request_size(NbdImage& image, const CopyOptions& options) {
  uint64_t size = std::max<uint64_t>(options.request_size, 4096);
  uint64_t maximum = image.maximum_request_size();
  return maximum > 0 ? std::min(size, maximum) : size;
}

struct LoopTotals {
  uint64_t bytes_read = 0;
  uint64_t bytes_written = 0;
};

// Opens the extra connections, runs one loop per connection on its own thread, draws progress meanwhile.
LoopTotals run_loops(NbdImage& image, const std::string& uri, SharedWork& work, ProgressBar* progress) {
  if (work.pieces.empty()) return {};
  uint64_t buffer_size = 0;
  for (const CopyPiece& piece : work.pieces) buffer_size = std::max(buffer_size, piece.length);
  unsigned wanted = std::clamp<unsigned>(work.options.connections, 1, 16);
  wanted = static_cast<unsigned>(std::min<size_t>(wanted, work.pieces.size()));
  std::vector<std::unique_ptr<NbdImage>> extra;
  for (unsigned i = 1; i < wanted; ++i) {
    try {
      extra.push_back(std::make_unique<NbdImage>(uri, std::vector<std::string>{}, image.timeout(), NbdImage::Probe::none));
    } catch (const CliError&) {
      break;  // the server limits connections: do with fewer
    }
  }
  std::vector<NbdImage*> connections = {&image};
  for (auto& connection : extra) connections.push_back(connection.get());
  unsigned per_connection = std::max<unsigned>(1, work.options.requests_in_flight / connections.size());

  std::vector<std::unique_ptr<RequestLoop>> loops;
  for (NbdImage* connection : connections) {
    loops.push_back(std::make_unique<RequestLoop>(*connection, work, per_connection, buffer_size));
  }
  std::vector<std::exception_ptr> errors(loops.size());
  // The progress bar is redrawn every 50 ms; the last loop to finish wakes this thread at once, so a small
  // copy does not wait out a whole period.
  std::mutex running_mutex;
  std::condition_variable finished;
  size_t running = loops.size();
  std::vector<std::thread> threads;
  for (size_t i = 0; i < loops.size(); ++i) {
    threads.emplace_back([&, i] {
      try {
        loops[i]->run();
      } catch (...) {
        errors[i] = std::current_exception();
      }
      std::scoped_lock lock(running_mutex);
      if (--running == 0) finished.notify_one();
    });
  }
  uint64_t shown = 0;
  for (std::unique_lock lock(running_mutex); running > 0;) {
    finished.wait_for(lock, std::chrono::milliseconds(50), [&] { return running == 0; });
    uint64_t done = work.bytes_done.load();
    if (progress != nullptr) progress->add(done - shown);
    shown = done;
  }
  for (std::thread& thread : threads) thread.join();
  if (progress != nullptr) progress->add(work.bytes_done.load() - shown);
  for (const std::exception_ptr& error : errors) {
    if (error) std::rethrow_exception(error);
  }
  LoopTotals totals;
  for (const auto& loop : loops) {
    totals.bytes_read += loop->bytes_read();
    totals.bytes_written += loop->bytes_written();
  }
  return totals;
}

}  // namespace

std::vector<CopyPiece> split_into_pieces(const std::vector<ByteRange>& ranges, uint64_t piece_size) {
  std::vector<CopyPiece> pieces;
  for (const ByteRange& range : ranges) {
    for (uint64_t offset = range.offset; offset < range.end(); offset += piece_size) {
      pieces.push_back({offset, std::min(piece_size, range.end() - offset), 0});
    }
  }
  return pieces;
}

CopyResult copy_ranges(NbdImage& image, const std::string& uri, const std::vector<ByteRange>& ranges, int fd,
                       const CopyOptions& options, ProgressBar* progress) {
  CopyResult result;
  result.pieces = split_into_pieces(ranges, effective_request_size(image, options));
  SharedWork work{result.pieces, fd, options, Mode::copy};
  LoopTotals totals = run_loops(image, uri, work, progress);
  result.bytes_read = totals.bytes_read;
  result.bytes_written = totals.bytes_written;
  return result;
}

uint64_t verify_pieces(NbdImage& image, const std::string& uri, const std::vector<CopyPiece>& pieces, int fd,
                       const CopyOptions& options, ProgressBar* progress) {
  std::vector<CopyPiece> copy = pieces;
  SharedWork work{copy, fd, options, Mode::verify};
  return run_loops(image, uri, work, progress).bytes_read;
}

}  // namespace nbdsnap::cli
