// image_copier.h — copies ranges of an NBD image into a local file with many reads in flight, and verifies
// the copy afterwards by re-reading both sides and comparing checksums.
//
// Design notes: one libnbd handle, up to `requests_in_flight` nbd_aio_pread requests of at most
// `request_size` bytes each, one buffer per request slot. The completion callback (run inside nbd_poll on
// this thread) checksums the buffer and pwrite()s it at the same offset, then frees its slot; the loop
// refills free slots and polls. No threads, no locks: the parallelism is on the wire, as in nbdcopy.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "byte_ranges.h"

namespace nbdsnap::cli {

class NbdImage;
class ProgressBar;

struct CopyOptions {
  unsigned requests_in_flight = 16;
  uint64_t request_size = 4ull << 20;
  bool skip_zero_writes = false;  // a fresh sparse file: leave all-zero pieces as holes
};

struct CopyPiece {
  uint64_t offset = 0;
  uint64_t length = 0;
  uint64_t checksum = 0;  // of the bytes read (filled in by copy_ranges)
};

struct CopyResult {
  uint64_t bytes_read = 0;
  uint64_t bytes_written = 0;
  std::vector<CopyPiece> pieces;  // what was copied, with checksums, for verification
};

// Splits ranges into pieces of at most piece_size bytes (pure, unit-tested).
std::vector<CopyPiece> split_into_pieces(const std::vector<ByteRange>& ranges, uint64_t piece_size);

// Reads `ranges` of the image and writes them at the same offsets of fd. Throws CliError (io_error).
CopyResult copy_ranges(NbdImage& image, const std::vector<ByteRange>& ranges, int fd, const CopyOptions& options,
                       ProgressBar* progress);

// Re-reads every piece from the image and from fd and compares both with the recorded checksum. Throws
// CliError (io_error) naming the first piece that differs. Returns the bytes re-read from the image.
uint64_t verify_pieces(NbdImage& image, const std::vector<CopyPiece>& pieces, int fd, const CopyOptions& options,
                       ProgressBar* progress);

}  // namespace nbdsnap::cli
