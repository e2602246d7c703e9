// SPDX-License-Identifier: BSD-3-Clause
// file_digest.h — the SHA-256 of a file, as a backup chain's manifest records it for each qcow2 file so
// that `nbdsnap backup verify` can name a file whose bytes changed since it was written (nettle's SHA-256,
// FIPS 180-4; compare with `sha256sum FILE`).
#pragma once

#include <cstdint>
#include <functional>
#include <string>

namespace nbdsnap::cli {

// Lowercase hex SHA-256 of the file's bytes. `progress` (if set) is told the bytes read as it goes.
// Throws CliError (io_error) naming the file when it cannot be read.
std::string file_sha256(const std::string& path, const std::function<void(uint64_t)>& progress = {});

// Lowercase hex SHA-256 of a buffer (for tests and small texts).
std::string text_sha256(const std::string& text);

}  // namespace nbdsnap::cli
