// SPDX-License-Identifier: BSD-3-Clause
// file_digest_test.cpp — the chain files' checksums match what users' tools print (xxhsum -H2, sha256sum),
// over a file read in several blocks, and the manifest keys name their algorithms.
#include <doctest/doctest.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>

#include <sys/stat.h>
#include <unistd.h>

#include "exit_codes.h"
#include "file_digest.h"

using namespace nbdsnap::cli;

TEST_CASE("digests of texts are those of xxhsum -H2 and sha256sum") {
  CHECK(text_digest("", DigestAlgorithm::xxh3_128) == "99aa06d3014798d86001c324468d497f");
  CHECK(text_digest("abc", DigestAlgorithm::xxh3_128) == "06b05ab6733a618578af5f94892f3950");
  CHECK(text_digest("abc", DigestAlgorithm::sha256) ==
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

TEST_CASE("a file's digest equals the digest of its bytes, over many read blocks, and counts its progress") {
  char path[] = "/tmp/nbdsnap-digest-XXXXXX";
  const int fd = ::mkstemp(path);
  REQUIRE(fd >= 0);
  std::string bytes;
  for (int i = 0; bytes.size() < (1u << 20) + 4099; ++i) bytes += std::to_string(i * 7919) + ",";
  REQUIRE(::write(fd, bytes.data(), bytes.size()) == static_cast<ssize_t>(bytes.size()));
  ::close(fd);
  for (const DigestAlgorithm algorithm : {DigestAlgorithm::xxh3_128, DigestAlgorithm::sha256}) {
    uint64_t counted = 0;
    CHECK(file_digest(path, algorithm, [&](uint64_t n) { counted += n; }) == text_digest(bytes, algorithm));
    CHECK(counted == bytes.size());
  }
  ::unlink(path);
  CHECK_THROWS_AS(file_digest(path, kChainDigest), CliError);
}

TEST_CASE("a FIFO, a device or a directory in a file's place is refused at once, not read for ever") {
  char directory[] = "/tmp/nbdsnap-digest-XXXXXX";
  REQUIRE(::mkdtemp(directory) != nullptr);
  const std::string fifo = std::string(directory) + "/fifo";
  REQUIRE(::mkfifo(fifo.c_str(), 0600) == 0);
  CHECK_THROWS_WITH_AS(file_digest(fifo, kChainDigest), doctest::Contains("is not a regular file"), CliError);
  CHECK_THROWS_WITH_AS(file_digest("/dev/zero", kChainDigest), doctest::Contains("is not a regular file"),
                       CliError);
  CHECK_THROWS_AS(file_digest(directory, kChainDigest), CliError);
  ::unlink(fifo.c_str());
  ::rmdir(directory);
}

TEST_CASE("manifest keys name their algorithms, and new points use XXH3-128") {
  CHECK(digest_key(kChainDigest) == "file_xxh3_128");
  CHECK(digest_of_key("file_xxh3_128") == DigestAlgorithm::xxh3_128);
  CHECK(digest_of_key("file_sha256") == DigestAlgorithm::sha256);
  CHECK_FALSE(digest_of_key("file_md5").has_value());
  CHECK(digest_name(DigestAlgorithm::sha256) == "SHA-256");
}
