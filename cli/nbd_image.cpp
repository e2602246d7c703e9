// nbd_image.cpp — libnbd connection and block status walking.
#include "nbd_image.h"

#include <algorithm>
#include <cerrno>
#include <cstdlib>

#include <libnbd.h>

#include "exit_codes.h"

namespace nbdsnap::cli {

namespace {

constexpr uint64_t kBlockStatusWindow = 1ull << 30;  // below 4 GiB: every server accepts it

struct ExtentWalk {
  const std::string* context;
  uint64_t request_offset;
  uint64_t request_end;
  uint32_t mask;
  uint32_t want;
  uint64_t covered;  // end of the last extent seen, clamped to request_end
  std::vector<ByteRange>* out;
};

int collect_extents(void* user_data, const char* metacontext, uint64_t offset, uint32_t* entries, size_t count,
                    int* error) {
  auto* walk = static_cast<ExtentWalk*>(user_data);
  if (*walk->context != metacontext) return 0;
  uint64_t position = offset;
  for (size_t i = 0; i + 1 < count && position < walk->request_end; i += 2) {
    uint64_t length = std::min<uint64_t>(entries[i], walk->request_end - position);
    if ((entries[i + 1] & walk->mask) == walk->want && length > 0) walk->out->push_back({position, length});
    position += length;
  }
  walk->covered = std::max(walk->covered, position);
  return 0;
}

}  // namespace

std::string dirty_bitmap_context(const std::string& checkpoint) { return "qemu:dirty-bitmap:" + checkpoint; }

NbdImage::NbdImage(const std::string& uri, const std::vector<std::string>& meta_contexts) {
  handle_ = nbd_create();
  if (handle_ == nullptr) throw CliError(ExitCode::io_error, "libnbd: " + last_error());
  for (const std::string& context : meta_contexts) {
    if (nbd_add_meta_context(handle_, context.c_str()) == -1) {
      std::string message = "libnbd: " + last_error();
      nbd_close(handle_);
      handle_ = nullptr;
      throw CliError(ExitCode::io_error, message);
    }
  }
  if (nbd_connect_uri(handle_, uri.c_str()) == -1) {
    int err = nbd_get_errno();
    std::string message = "cannot open " + uri + ": " + last_error();
    nbd_close(handle_);
    handle_ = nullptr;
    throw CliError(err == ENOENT ? ExitCode::not_found : ExitCode::io_error, message);
  }
  int64_t size = nbd_get_size(handle_);
  if (size < 0) {
    std::string message = uri + ": cannot get the size: " + last_error();
    nbd_close(handle_);
    handle_ = nullptr;
    throw CliError(ExitCode::io_error, message);
  }
  size_ = static_cast<uint64_t>(size);
}

NbdImage::~NbdImage() {
  if (handle_ != nullptr) {
    nbd_shutdown(handle_, 0);
    nbd_close(handle_);
  }
}

std::string NbdImage::export_name() const {
  char* name = nbd_get_export_name(handle_);
  if (name == nullptr) return {};
  std::string out = name;
  std::free(name);
  return out;
}

bool NbdImage::has_meta_context(const std::string& context) const {
  return nbd_can_meta_context(handle_, context.c_str()) == 1;
}

uint64_t NbdImage::maximum_request_size() const {
  int64_t maximum = nbd_get_block_size(handle_, LIBNBD_SIZE_MAXIMUM);
  return maximum > 0 ? static_cast<uint64_t>(maximum) : 0;
}

std::vector<ByteRange> NbdImage::ranges_where(const std::string& context, uint32_t mask, uint32_t want) {
  std::vector<ByteRange> out;
  uint64_t offset = 0;
  while (offset < size_) {
    uint64_t count = std::min(kBlockStatusWindow, size_ - offset);
    ExtentWalk walk{&context, offset, offset + count, mask, want, offset, &out};
    nbd_extent_callback callback{collect_extents, &walk, nullptr};
    if (nbd_block_status(handle_, count, offset, callback, 0) == -1) {
      throw CliError(ExitCode::io_error, "block status (" + context + ") at offset " + std::to_string(offset) + ": " +
                                             last_error());
    }
    if (walk.covered <= offset) {
      throw CliError(ExitCode::io_error, "the server sent no " + context + " extents at offset " + std::to_string(offset));
    }
    offset = walk.covered;
  }
  return merge_byte_ranges(std::move(out));
}

std::string NbdImage::last_error() {
  const char* message = nbd_get_error();
  return message != nullptr ? message : "unknown error";
}

}  // namespace nbdsnap::cli
