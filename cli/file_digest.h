// SPDX-License-Identifier: BSD-3-Clause
// file_digest.h — the checksum of a file, as a backup chain's manifest records it for each qcow2 file so that
// `nbdsnap backup verify` can name a file whose bytes changed since it was written.
//
// New points get XXH3-128 (libxxhash; compare with `xxhsum -H2 FILE`): the checksum is there to find damage
// (bit rot, a truncated or overwritten file), not to resist someone who can rewrite the files, since the
// manifest beside them could be rewritten too; btrfs and zstd use the same family for the same job. It costs
// 0.16 CPU s per GiB here (page-cache reads included) against 0.9 for SHA-256 (nettle, with the CPU's SHA
// instructions), which was half the time of a full qcow2 backup after the copy (bench/backup B1). Manifests
// written before keep their SHA-256 (FIPS 180-4; `sha256sum FILE`), and verify checks those as they are.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>

namespace nbdsnap::cli {

// In order of preference: verify checks the first one a manifest records.
enum class DigestAlgorithm { xxh3_128, sha256 };

// What new chain points record.
inline constexpr DigestAlgorithm kChainDigest = DigestAlgorithm::xxh3_128;

// The manifest's key under "checksums" ("file_xxh3_128", "file_sha256"), and the name for people
// ("XXH3-128", "SHA-256").
std::string digest_key(DigestAlgorithm algorithm);
std::string digest_name(DigestAlgorithm algorithm);
// The algorithm of a manifest key; nullopt for a key this version does not know.
std::optional<DigestAlgorithm> digest_of_key(const std::string& key);

// Lowercase hex digest of the file's bytes (XXH3-128 in its canonical big-endian form, as xxhsum prints it).
// `progress` (if set) is told the bytes read as it goes. Throws CliError (io_error) naming the file when it
// cannot be read or is not a regular file (a FIFO would block, a device such as /dev/zero never end).
std::string file_digest(const std::string& path, DigestAlgorithm algorithm,
                        const std::function<void(uint64_t)>& progress = {});

// Lowercase hex digest of a buffer (for tests and small texts).
std::string text_digest(const std::string& text, DigestAlgorithm algorithm);

}  // namespace nbdsnap::cli
