// image_copier.cpp — the aio request loop shared by copying and verifying.
#include "image_copier.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <memory>
#include <optional>

#include <libnbd.h>
#include <unistd.h>

#include "checksum.h"
#include "exit_codes.h"
#include "nbd_image.h"
#include "progress_bar.h"

namespace nbdsnap::cli {

namespace {

enum class Mode { copy, verify };

class RequestLoop;

struct Slot {
  RequestLoop* loop = nullptr;
  std::unique_ptr<char[]> buffer;
  std::unique_ptr<char[]> file_buffer;  // verify: the backup file's bytes
  size_t piece = 0;
  bool busy = false;
};

class RequestLoop {
 public:
  RequestLoop(NbdImage& image, std::vector<CopyPiece>& pieces, int fd, const CopyOptions& options, Mode mode,
              ProgressBar* progress)
      : image_(image), pieces_(pieces), fd_(fd), options_(options), mode_(mode), progress_(progress) {
    size_t slot_count = std::max(1u, options.requests_in_flight);
    uint64_t buffer_size = 0;
    for (const CopyPiece& piece : pieces) buffer_size = std::max(buffer_size, piece.length);
    slots_.resize(std::min<size_t>(slot_count, std::max<size_t>(pieces.size(), 1)));
    for (Slot& slot : slots_) {
      slot.loop = this;
      slot.buffer = std::make_unique<char[]>(buffer_size);
      if (mode == Mode::verify) slot.file_buffer = std::make_unique<char[]>(buffer_size);
    }
  }

  void run() {
    size_t next = 0;
    while ((next < pieces_.size() && !failure_) || in_flight_ > 0) {
      for (Slot& slot : slots_) {
        if (slot.busy || next >= pieces_.size() || failure_) continue;
        issue(slot, next++);
      }
      if (in_flight_ > 0 && nbd_poll(image_.handle(), -1) == -1) {
        throw CliError(ExitCode::io_error, "NBD connection failed: " + NbdImage::last_error());
      }
    }
    if (failure_) throw *failure_;
  }

  uint64_t bytes_read() const { return bytes_read_; }
  uint64_t bytes_written() const { return bytes_written_; }

 private:
  static int on_complete(void* user_data, int* error) {
    auto* slot = static_cast<Slot*>(user_data);
    slot->loop->complete(*slot, *error);
    return 1;  // retire the command
  }

  void issue(Slot& slot, size_t piece_index) {
    const CopyPiece& piece = pieces_[piece_index];
    slot.piece = piece_index;
    slot.busy = true;
    nbd_completion_callback callback{on_complete, &slot, nullptr};
    if (nbd_aio_pread(image_.handle(), slot.buffer.get(), piece.length, piece.offset, callback, 0) == -1) {
      // Not thrown here: requests in flight still point at our slots, so run() drains them first.
      slot.busy = false;
      fail(ExitCode::io_error, "NBD read at offset " + std::to_string(piece.offset) + ": " + NbdImage::last_error());
      return;
    }
    ++in_flight_;
  }

  void complete(Slot& slot, int error) {
    slot.busy = false;
    --in_flight_;
    CopyPiece& piece = pieces_[slot.piece];
    if (failure_) return;
    if (error != 0) {
      fail(ExitCode::io_error, "NBD read of " + std::to_string(piece.length) + " bytes at offset " +
                                   std::to_string(piece.offset) + " failed: " + std::strerror(error));
      return;
    }
    bytes_read_ += piece.length;
    if (mode_ == Mode::copy) {
      store(slot, piece);
    } else {
      compare(slot, piece);
    }
    if (progress_ != nullptr) progress_->add(piece.length);
  }

  void store(Slot& slot, CopyPiece& piece) {
    piece.checksum = checksum64(slot.buffer.get(), piece.length);
    if (options_.skip_zero_writes && is_all_zero(slot.buffer.get(), piece.length)) return;
    if (!write_all(slot.buffer.get(), piece.length, piece.offset)) {
      fail(ExitCode::io_error, "writing the backup at offset " + std::to_string(piece.offset) + ": " +
                                   std::strerror(errno));
      return;
    }
    bytes_written_ += piece.length;
  }

  void compare(Slot& slot, const CopyPiece& piece) {
    ssize_t n = ::pread(fd_, slot.file_buffer.get(), piece.length, static_cast<off_t>(piece.offset));
    if (n != static_cast<ssize_t>(piece.length)) {
      fail(ExitCode::io_error, "reading the backup back at offset " + std::to_string(piece.offset) + ": " +
                                   (n < 0 ? std::strerror(errno) : "short read"));
      return;
    }
    std::string where = " at offset " + std::to_string(piece.offset) + " (" + std::to_string(piece.length) + " bytes)";
    if (checksum64(slot.buffer.get(), piece.length) != piece.checksum) {
      fail(ExitCode::io_error, "verify failed: the image changed since it was copied" + where);
    } else if (checksum64(slot.file_buffer.get(), piece.length) != piece.checksum) {
      fail(ExitCode::io_error, "verify failed: the backup file differs from what was copied" + where);
    }
  }

  bool write_all(const char* data, uint64_t length, uint64_t offset) {
    while (length > 0) {
      ssize_t n = ::pwrite(fd_, data, length, static_cast<off_t>(offset));
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return false;
      data += n;
      length -= static_cast<uint64_t>(n);
      offset += static_cast<uint64_t>(n);
    }
    return true;
  }

  void fail(ExitCode code, const std::string& message) {
    if (!failure_) failure_.emplace(code, message);
  }

  NbdImage& image_;
  std::vector<CopyPiece>& pieces_;
  int fd_;
  CopyOptions options_;
  Mode mode_;
  ProgressBar* progress_;
  std::vector<Slot> slots_;
  unsigned in_flight_ = 0;
  uint64_t bytes_read_ = 0;
  uint64_t bytes_written_ = 0;
  std::optional<CliError> failure_;
};

uint64_t effective_request_size(NbdImage& image, const CopyOptions& options) {
  uint64_t size = std::max<uint64_t>(options.request_size, 4096);
  uint64_t maximum = image.maximum_request_size();
  return maximum > 0 ? std::min(size, maximum) : size;
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

CopyResult copy_ranges(NbdImage& image, const std::vector<ByteRange>& ranges, int fd, const CopyOptions& options,
                       ProgressBar* progress) {
  CopyResult result;
  result.pieces = split_into_pieces(ranges, effective_request_size(image, options));
  RequestLoop loop(image, result.pieces, fd, options, Mode::copy, progress);
  loop.run();
  result.bytes_read = loop.bytes_read();
  result.bytes_written = loop.bytes_written();
  return result;
}

uint64_t verify_pieces(NbdImage& image, const std::vector<CopyPiece>& pieces, int fd, const CopyOptions& options,
                       ProgressBar* progress) {
  std::vector<CopyPiece> copy = pieces;
  RequestLoop loop(image, copy, fd, options, Mode::verify, progress);
  loop.run();
  return loop.bytes_read();
}

}  // namespace nbdsnap::cli
