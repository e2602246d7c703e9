// SPDX-License-Identifier: BSD-3-Clause
// image_copier.h — copies ranges of an NBD image into a local file or into another NBD export with many
// requests in flight, and verifies the copy afterwards by re-reading both sides and comparing checksums.
//
// Design notes: like nbdcopy, several NBD connections (`connections`), each driven by its own thread with
// a share of `requests_in_flight` request slots of at most `request_size` bytes, one buffer per slot.
// Threads claim the next piece from one atomic index, so a slow connection never holds up the others. A
// file target is written with pwrite() from the read's completion callback (pieces never overlap); an NBD
// target (a qcow2 overlay served by qemu-nbd, an origin of another server) gets a connection per thread,
// and the slot's buffer is written there once its read completed, both connections driven by one poll
// (request_loop.h). The calling thread only draws progress from an atomic byte count. A connection whose
// server sends no reply for the image's timeout (nbdsnap --timeout) fails the copy instead of waiting.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "byte_ranges.h"

namespace nbdsnap::cli {

class NbdImage;
class ProgressBar;

struct CopyOptions {
  unsigned connections = 1;            // NBD connections (more are opened to the same URI as the first)
  unsigned requests_in_flight = 16;    // over all connections
  uint64_t request_size = 2ull << 20;  // qemu-img convert's size
  // A file target: start writing each piece back to the disk as soon as it is written (sync_file_range), so
  // the caller's final fdatasync() finds little left to do and the disk works while the copy goes on.
  bool write_behind = false;
  bool skip_zero_writes = false;  // a fresh target: leave all-zero pieces as holes
  bool checksums = false;         // record checksums for verify_pieces()
  // --connections, --requests or --request-size was given: the user asked for this copier's requests (a full
  // qcow2 point then goes through it and qemu-nbd rather than qemu-img convert, chain_backup.cpp).
  bool tuned = false;
};

// Where a copy writes: a local file or device, or an NBD export (more connections are opened to its URI).
struct CopyTarget {
  int fd = -1;
  NbdImage* nbd = nullptr;
  std::string name;  // the file or URI, for messages
};

struct CopyPiece {
  uint64_t offset = 0;
  uint64_t length = 0;
  uint64_t checksum = 0;  // of the bytes read (filled in by copy_ranges when options.checksums)
  bool zero = false;      // known to read as zeroes: written as zeroes without reading the image
};

struct CopyResult {
  uint64_t bytes_read = 0;
  uint64_t bytes_written = 0;     // data written to the target
  uint64_t bytes_zeroed = 0;      // zeroes written to the target (write-zeroes requests or zero buffers)
  std::vector<CopyPiece> pieces;  // what was copied, with checksums, for verification
};

// Splits ranges into pieces of at most piece_size bytes (pure, unit-tested).
std::vector<CopyPiece> split_into_pieces(const std::vector<ByteRange>& ranges, uint64_t piece_size,
                                         bool zero = false);

// Reads `ranges` of the image (open at `uri`) and writes them at the same offsets of the target; writes
// zeroes over `zero_ranges` (unless options.skip_zero_writes). Extra connections that cannot be opened
// are done without. Throws CliError (io_error).
CopyResult copy_ranges(NbdImage& image, const std::string& uri, const std::vector<ByteRange>& ranges,
                       const CopyTarget& target, const CopyOptions& options, ProgressBar* progress,
                       const std::vector<ByteRange>& zero_ranges = {});

// Re-reads every piece (but the zero ones) from the image and from the target and compares both with the
// recorded checksum. Throws CliError (io_error) naming the first piece that differs. Returns the bytes
// re-read from the image.
uint64_t verify_pieces(NbdImage& image, const std::string& uri, const std::vector<CopyPiece>& pieces,
                       const CopyTarget& target, const CopyOptions& options, ProgressBar* progress);

}  // namespace nbdsnap::cli
