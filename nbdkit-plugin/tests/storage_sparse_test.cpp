// SPDX-License-Identifier: BSD-3-Clause
// storage_sparse_test.cpp — nbdsnap-storage-sparse: a boolean, only with a default storage created at a size,
// and carried into the storage of every snapshot created without its own.
#include <doctest/doctest.h>

#include <unistd.h>

#include <filesystem>
#include <string>

#include "filter_config.h"

using nbdsnap::Errc;
using nbdsnap::FilterConfig;

namespace {
std::string storage_dir() {
  char pattern[] = "/tmp/nbdsnap-filter-sparse-XXXXXX";
  REQUIRE(mkdtemp(pattern) != nullptr);
  return pattern;
}
}  // namespace

TEST_CASE("storage_sparse_makes_every_default_storage_file_sparse") {
  const std::string dir = storage_dir();
  FilterConfig config;
  REQUIRE(config.apply("nbdsnap-storage", dir + ":8G"));
  REQUIRE(config.apply("nbdsnap-storage-sparse", "true"));
  REQUIRE(config.complete());
  CHECK(config.default_storage_for("s1").sparse);
  CHECK(config.default_storage_for("s1").size == (8ull << 30));
  std::filesystem::remove_all(dir);
}

TEST_CASE("default_storage_is_allocated_unless_sparse_is_asked_for") {
  const std::string dir = storage_dir();
  FilterConfig config;
  REQUIRE(config.apply("nbdsnap-storage", dir + ":8G"));
  REQUIRE(config.apply("nbdsnap-storage-sparse", "off"));
  REQUIRE(config.complete());
  CHECK_FALSE(config.default_storage_for("s1").sparse);
  std::filesystem::remove_all(dir);
}

TEST_CASE("storage_sparse_takes_a_boolean_and_needs_storage_created_at_a_size") {
  FilterConfig config;
  const auto bad = config.apply("nbdsnap-storage-sparse", "maybe");
  CHECK(bad.code() == Errc::invalid_argument);
  CHECK(bad.message().find("nbdsnap-storage-sparse=maybe") != std::string::npos);
  FilterConfig without_storage;
  REQUIRE(without_storage.apply("nbdsnap-storage-sparse", "1"));
  const auto refused = without_storage.complete();
  CHECK(refused.code() == Errc::invalid_argument);
  CHECK(refused.message().find("DIR:SIZE") != std::string::npos);
}
