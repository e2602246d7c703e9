// SPDX-License-Identifier: BSD-3-Clause
// image_copier.cpp — connections and threads of a copy or verification; the request loops themselves are in
// request_loop.cpp.
#include "image_copier.h"

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <exception>
#include <memory>
#include <mutex>
#include <thread>

#include "nbd_image.h"
#include "progress_bar.h"
#include "request_loop.h"

namespace nbdsnap::cli {

namespace {

constexpr uint64_t kZeroPieceSize = 256ull << 20;

uint64_t effective_request_size(NbdImage& image, const CopyTarget& target, const CopyOptions& options) {
  uint64_t size = std::max<uint64_t>(options.request_size, 4096);
  for (NbdImage* connection : {&image, target.nbd}) {
    const uint64_t maximum = connection != nullptr ? connection->maximum_request_size() : 0;
    if (maximum > 0) size = std::min(size, maximum);
  }
  return size;
}

struct LoopTotals {
  uint64_t bytes_read = 0;
  uint64_t bytes_written = 0;
  uint64_t bytes_zeroed = 0;
};

// The connections of a copy: the image's and the target's given, and as many more pairs as wanted and the
// servers allow (a server that limits connections is done with fewer).
struct Connections {
  std::vector<std::unique_ptr<NbdImage>> extra;
  std::vector<NbdImage*> sources;
  std::vector<NbdImage*> targets;  // null for a file target
};

Connections open_connections(NbdImage& image, const std::string& uri, const CopyTarget& target,
                             unsigned wanted) {
  Connections connections;
  connections.sources.push_back(&image);
  connections.targets.push_back(target.nbd);
  for (unsigned i = 1; i < wanted; ++i) {
    try {
      auto source =
          std::make_unique<NbdImage>(uri, std::vector<std::string>{}, image.timeout(), NbdImage::Probe::none);
      std::unique_ptr<NbdImage> writer;
      if (target.nbd != nullptr) {
        writer = std::make_unique<NbdImage>(target.nbd->uri(), std::vector<std::string>{},
                                            target.nbd->timeout(), NbdImage::Probe::none);
      }
      connections.sources.push_back(source.get());
      connections.targets.push_back(writer.get());
      connections.extra.push_back(std::move(source));
      if (writer) connections.extra.push_back(std::move(writer));
    } catch (const CliError&) {
      break;
    }
  }
  return connections;
}

// Runs one loop per connection on its own thread, draws progress meanwhile.
LoopTotals run_loops(NbdImage& image, const std::string& uri, SharedWork& work, NbdImage* target,
                     ProgressBar* progress) {
  if (work.pieces.empty()) return {};
  uint64_t buffer_size = 4096;  // zero pieces need none, unless the target has no write-zeroes
  const bool target_zeroes = target != nullptr && target->can_zero();
  for (const CopyPiece& piece : work.pieces) {
    if (!piece.zero || (target != nullptr && !target_zeroes))
      buffer_size = std::max(buffer_size, piece.length);
  }
  unsigned wanted = std::clamp<unsigned>(work.options.connections, 1, 16);
  wanted = static_cast<unsigned>(std::min<size_t>(wanted, work.pieces.size()));
  CopyTarget given = work.target;
  given.nbd = target;
  Connections connections = open_connections(image, uri, given, wanted);
  const auto count = static_cast<unsigned>(connections.sources.size());
  unsigned per_connection = std::max<unsigned>(1, work.options.requests_in_flight / count);

  std::vector<std::unique_ptr<RequestLoop>> loops;
  for (unsigned i = 0; i < count; ++i) {
    loops.push_back(std::make_unique<RequestLoop>(*connections.sources[i], connections.targets[i], work,
                                                  per_connection, buffer_size));
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
    totals.bytes_zeroed += loop->bytes_zeroed();
  }
  return totals;
}

}  // namespace

std::vector<CopyPiece> split_into_pieces(const std::vector<ByteRange>& ranges, uint64_t piece_size,
                                         bool zero) {
  std::vector<CopyPiece> pieces;
  for (const ByteRange& range : ranges) {
    for (uint64_t offset = range.offset; offset < range.end(); offset += piece_size) {
      pieces.push_back({offset, std::min(piece_size, range.end() - offset), 0, zero});
    }
  }
  return pieces;
}

CopyResult copy_ranges(NbdImage& image, const std::string& uri, const std::vector<ByteRange>& ranges,
                       const CopyTarget& target, const CopyOptions& options, ProgressBar* progress,
                       const std::vector<ByteRange>& zero_ranges) {
  CopyResult result;
  const uint64_t piece_size = effective_request_size(image, target, options);
  result.pieces = split_into_pieces(ranges, piece_size);
  if (!options.skip_zero_writes) {
    // Zeroes carry no data: larger pieces where the target takes write-zeroes requests or is a file.
    const bool cheap = target.nbd == nullptr || target.nbd->can_zero();
    const uint64_t zero_piece_size = cheap ? std::max<uint64_t>(piece_size, kZeroPieceSize) : piece_size;
    std::vector<CopyPiece> zeroes = split_into_pieces(zero_ranges, zero_piece_size, /*zero=*/true);
    result.pieces.insert(result.pieces.end(), zeroes.begin(), zeroes.end());
  }
  SharedWork work{result.pieces, target, options, CopyMode::copy};
  LoopTotals totals = run_loops(image, uri, work, target.nbd, progress);
  result.bytes_read = totals.bytes_read;
  result.bytes_written = totals.bytes_written;
  result.bytes_zeroed = totals.bytes_zeroed;
  return result;
}

uint64_t verify_pieces(NbdImage& image, const std::string& uri, const std::vector<CopyPiece>& pieces,
                       const CopyTarget& target, const CopyOptions& options, ProgressBar* progress) {
  std::vector<CopyPiece> copy = pieces;
  SharedWork work{copy, target, options, CopyMode::verify};
  return run_loops(image, uri, work, target.nbd, progress).bytes_read;
}

}  // namespace nbdsnap::cli
