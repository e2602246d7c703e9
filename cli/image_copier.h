// image_copier.h — copies ranges of an NBD image into a local file with many reads in flight, and verifies
// the copy afterwards by re-reading both sides and comparing checksums.
//
// Design notes: like nbdcopy, several NBD connections (`connections`), each driven by its own thread with
// a share of `requests_in_flight` nbd_aio_pread requests of at most `request_size` bytes, one buffer per
// request slot. Threads claim the next piece from one atomic index, so a slow connection never holds up the
// others. The completion callback (run inside nbd_poll on the connection's thread) checksums the buffer
// when verification is wanted and pwrite()s it at the same offset (pieces never overlap), then frees its
// slot. The calling thread only draws the progress bar from an atomic byte count. A connection whose server
// sends no reply for the image's timeout (nbdsnap --timeout) fails the copy instead of waiting for ever.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "byte_ranges.h"

namespace nbdsnap::cli {

class NbdImage;
class ProgressBar;

struct CopyOptions {
  unsigned connections = 4;         // NBD connections (more are opened to the same URI as the first)
  unsigned requests_in_flight = 16;  // over all connections
  uint64_t request_size = 1ull << 20;
  bool skip_zero_writes = false;  // a fresh sparse file: leave all-zero pieces as holes
  bool checksums = false;         // record checksums for verify_pieces()
};

struct CopyPiece {
  uint64_t offset = 0;
  uint64_t length = 0;
  uint64_t checksum = 0;  // of the bytes read (filled in by copy_ranges when options.checksums)
};

struct CopyResult {
  uint64_t bytes_read = 0;
  uint64_t bytes_written = 0;
  std::vector<CopyPiece> pieces;  // what was copied, with checksums, for verification
};

// Splits ranges into pieces of at most piece_size bytes (pure, unit-tested).
std::vector<CopyPiece> split_into_pieces(const std::vector<ByteRange>& ranges, uint64_t piece_size);

// Reads `ranges` of the image (open at `uri`) and writes them at the same offsets of fd. Extra connections
// that cannot be opened are done without. Throws CliError (io_error).
CopyResult copy_ranges(NbdImage& image, const std::string& uri, const std::vector<ByteRange>& ranges, int fd,
                       const CopyOptions& options, ProgressBar* progress);

// Re-reads every piece from the image and from fd and compares both with the recorded checksum. Throws
// CliError (io_error) naming the first piece that differs. Returns the bytes re-read from the image.
uint64_t verify_pieces(NbdImage& image, const std::string& uri, const std::vector<CopyPiece>& pieces, int fd,
                       const CopyOptions& options, ProgressBar* progress);

}  // namespace nbdsnap::cli
