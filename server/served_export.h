// SPDX-License-Identifier: BSD-3-Clause
// served_export.h — what the NBD code sees of an export: its size, features and I/O, as engine calls.
//
// Implemented over the engine by OriginExport and ImageExport (engine_exports.h); the wire code (handshake,
// request_executor) depends only on this interface and ExportCatalog, so tests and fuzzers can fake them.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "block_device.h"
#include "cbt.h"
#include "status.h"

namespace nbdsnap {

// What an export can do; the handshake turns it into NBD transmission flags.
struct ExportFeatures {
  bool read_only = true;
  bool can_flush = false;  // FLUSH and FUA
  bool can_trim = false;
  bool can_zero = false;       // WRITE_ZEROES
  bool can_fast_zero = false;  // FAST_ZERO may succeed (it is advertised with WRITE_ZEROES anyway)
  bool can_multi_conn = true;
  bool can_cache = true;
};

class ServedExport {
 public:
  virtual ~ServedExport() = default;
  virtual const std::string& name() const = 0;
  virtual std::string description() const = 0;
  virtual uint64_t size() const = 0;
  virtual ExportFeatures features() const = 0;
  // Checkpoints a qemu:dirty-bitmap:CHECKPOINT context can be served for (images only), oldest first.
  virtual std::vector<std::string> dirty_bitmap_checkpoints() const { return {}; }

  virtual Status read(void* buf, uint64_t len, uint64_t offset) = 0;
  virtual Status write(const void* buf, uint64_t len, uint64_t offset, bool fua) = 0;
  virtual Status trim(uint64_t offset, uint64_t len, bool fua) = 0;
  // may_trim: the zeroed range may be deallocated (no NO_HOLE flag).
  virtual Status zero(uint64_t offset, uint64_t len, bool may_trim, bool fua) = 0;
  virtual Status flush() = 0;
  // Allocation extents covering [offset, offset+len).
  virtual Status allocation(uint64_t offset, uint64_t len, std::vector<Extent>& out) = 0;
  // Ranges changed between the checkpoint and this export's take, clipped to [offset, offset+len).
  virtual Status changed_since(const std::string& checkpoint, uint64_t offset, uint64_t len,
                               std::vector<Range>& out) {
    return {Errc::not_supported, "export '" + name() + "' has no dirty bitmaps"};
  }
};

// The set of exports a server offers at this moment.
class ExportCatalog {
 public:
  virtual ~ExportCatalog() = default;
  // Export names in the order OPT_LIST shows them (origins, then their images).
  virtual std::vector<std::string> export_names() const = 0;
  // Opens an export by name (empty: the default export, if there is one). not_found when it does not exist.
  virtual Status open(const std::string& name, std::shared_ptr<ServedExport>& out) const = 0;
};

}  // namespace nbdsnap
