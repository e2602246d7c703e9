// nbd_image.h — an NBD export opened with libnbd for reading: size, export name, and extents from the
// block status meta contexts (base:allocation for holes and zeroes, qemu:dirty-bitmap:NAME for changes).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "byte_ranges.h"

struct nbd_handle;

namespace nbdsnap::cli {

inline constexpr const char* kBaseAllocation = "base:allocation";
inline constexpr uint32_t kStateHole = 1;   // base:allocation: not allocated
inline constexpr uint32_t kStateZero = 2;   // base:allocation: reads as zeroes
inline constexpr uint32_t kStateDirty = 1;  // qemu:dirty-bitmap:NAME: changed

std::string dirty_bitmap_context(const std::string& checkpoint);

class NbdImage {
 public:
  // Connects to uri asking for the given meta contexts. Throws CliError (io_error, or not_found when the
  // server does not know the export).
  NbdImage(const std::string& uri, const std::vector<std::string>& meta_contexts);
  ~NbdImage();
  NbdImage(const NbdImage&) = delete;
  NbdImage& operator=(const NbdImage&) = delete;

  nbd_handle* handle() { return handle_; }
  uint64_t size() const { return size_; }
  std::string export_name() const;
  // Whether the server agreed to serve this meta context.
  bool has_meta_context(const std::string& context) const;
  // Largest request the server accepts (0: unknown).
  uint64_t maximum_request_size() const;
  // Ranges of [0, size) whose flags in `context` satisfy (flags & mask) == want, merged.
  std::vector<ByteRange> ranges_where(const std::string& context, uint32_t mask, uint32_t want);
  // The last libnbd error as text.
  static std::string last_error();

 private:
  nbd_handle* handle_ = nullptr;
  uint64_t size_ = 0;
};

}  // namespace nbdsnap::cli
