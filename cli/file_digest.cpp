// SPDX-License-Identifier: BSD-3-Clause
// file_digest.cpp — SHA-256 over a file read in large blocks (file_digest.h).
#include "file_digest.h"

#include <cerrno>
#include <cstring>
#include <memory>

#include <fcntl.h>
#include <nettle/sha2.h>
#include <unistd.h>

#include "exit_codes.h"

namespace nbdsnap::cli {

namespace {

constexpr size_t kReadSize = 4u << 20;

std::string hex_digest(sha256_ctx& context) {
  uint8_t digest[SHA256_DIGEST_SIZE];
  sha256_digest(&context, sizeof(digest), digest);
  static const char* const kHex = "0123456789abcdef";
  std::string text;
  for (uint8_t byte : digest) {
    text.push_back(kHex[byte >> 4]);
    text.push_back(kHex[byte & 15]);
  }
  return text;
}

}  // namespace

std::string file_sha256(const std::string& path, const std::function<void(uint64_t)>& progress) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw CliError(ExitCode::io_error, path + ": " + std::strerror(errno));
  ::posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
  sha256_ctx context;
  sha256_init(&context);
  auto buffer = std::make_unique<uint8_t[]>(kReadSize);
  for (;;) {
    const ssize_t n = ::read(fd, buffer.get(), kReadSize);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      const int err = errno;
      ::close(fd);
      throw CliError(ExitCode::io_error, path + ": cannot read: " + std::strerror(err));
    }
    if (n == 0) break;
    sha256_update(&context, static_cast<size_t>(n), buffer.get());
    if (progress) progress(static_cast<uint64_t>(n));
  }
  ::close(fd);
  return hex_digest(context);
}

std::string text_sha256(const std::string& text) {
  sha256_ctx context;
  sha256_init(&context);
  sha256_update(&context, text.size(), reinterpret_cast<const uint8_t*>(text.data()));
  return hex_digest(context);
}

}  // namespace nbdsnap::cli
