// SPDX-License-Identifier: BSD-3-Clause
// storage_allocation_test.cpp — difference-storage files are allocated at create (or sparse when asked), and
// a filesystem too small fails the create with a message naming the file, the size and the free space,
// leaving no file behind (a small tmpfs mounted for the test; skipped where mounting is not allowed).
#include "storage_allocation.h"

#include <doctest/doctest.h>
#include <sys/mount.h>
#include <sys/stat.h>

#include <filesystem>
#include <fstream>

#include "diff_storage.h"
#include "storage_spec.h"
#include "test_support.h"

using namespace nbdsnap;
using namespace nbdsnap::test;

namespace {

uint64_t allocated_bytes(const std::string& path) {
  struct stat st {};
  REQUIRE(::stat(path.c_str(), &st) == 0);
  return static_cast<uint64_t>(st.st_blocks) * 512;
}

StorageSpec file_spec(const std::string& path, uint64_t size, bool sparse) {
  StorageSpec spec;
  spec.path = path;
  spec.size = size;
  spec.sparse = sparse;
  return spec;
}

// A tmpfs of `size` bytes mounted on a directory of its own for the test's lifetime (root only).
class SmallFilesystem {
 public:
  explicit SmallFilesystem(uint64_t size) {
    const std::string options = "size=" + std::to_string(size) + ",mode=0700";
    mounted_ = ::mount("tmpfs", dir_.path().c_str(), "tmpfs", 0, options.c_str()) == 0;
  }
  ~SmallFilesystem() {
    if (mounted_) ::umount2(dir_.path().c_str(), MNT_DETACH);
  }
  bool mounted() const { return mounted_; }
  std::string file(const std::string& name) const { return dir_.file(name); }

 private:
  TempDir dir_;
  bool mounted_ = false;
};

}  // namespace

TEST_CASE("a created storage file is fully allocated") {
  TempDir dir;
  DiffStorage storage(0, 0, nullptr);
  REQUIRE_OK(storage.append(file_spec(dir.file("diff"), 4 * MiB, false)));
  CHECK(allocated_bytes(dir.file("diff")) >= 4 * MiB);
  REQUIRE(storage.areas().size() == 1);
  CHECK_FALSE(storage.areas()[0].sparse);
}

TEST_CASE("a storage file grown to a size is allocated up to that size") {
  TempDir dir;
  { std::ofstream(dir.file("diff")) << "old"; }
  DiffStorage storage(0, 0, nullptr);
  REQUIRE_OK(storage.append(file_spec(dir.file("diff"), 2 * MiB, false)));
  CHECK(allocated_bytes(dir.file("diff")) >= 2 * MiB);
}

TEST_CASE("a sparse storage file has its size but takes almost no space") {
  TempDir dir;
  DiffStorage storage(0, 0, nullptr);
  REQUIRE_OK(storage.append(file_spec(dir.file("diff"), 64 * MiB, true)));
  CHECK(std::filesystem::file_size(dir.file("diff")) == 64 * MiB);
  CHECK(allocated_bytes(dir.file("diff")) < MiB);
  REQUIRE(storage.areas().size() == 1);
  CHECK(storage.areas()[0].sparse);
}

TEST_CASE("sparse is refused for a range or an existing file used at its size") {
  StorageSpec range;
  range.path = "/dev/sdz";
  range.offset = 0;
  range.length = MiB;
  range.sparse = true;
  CHECK_ERRC(check_storage_spec(range), Errc::invalid_argument);
  StorageSpec whole;
  whole.path = "/dev/sdz";
  whole.sparse = true;
  const Status status = check_storage_spec(whole);
  CHECK(status.code() == Errc::invalid_argument);
  CHECK(status.message().find("sparse") != std::string::npos);
}

TEST_CASE("no space at create names the file, the size and the free space and leaves no file") {
  SmallFilesystem small(8 * MiB);
  if (!small.mounted()) {
    MESSAGE("skipped: mounting a tmpfs needs root");
    return;
  }
  const std::string path = small.file("diff");
  DiffStorage storage(0, 0, nullptr);
  const Status status = storage.append(file_spec(path, 16 * MiB, false));
  CHECK(status.code() == Errc::no_space);
  CHECK(status.message().find(path) != std::string::npos);
  CHECK(status.message().find("16.0 MiB") != std::string::npos);
  CHECK(status.message().find("free") != std::string::npos);
  CHECK_FALSE(std::filesystem::exists(path));
  CHECK(storage.areas().empty());
  // The same file sparse is made at once: the risk moves to copy-on-write.
  REQUIRE_OK(storage.append(file_spec(path, 16 * MiB, true)));
  CHECK(std::filesystem::file_size(path) == 16 * MiB);
}

TEST_CASE("no space growing an existing storage file gives the file its old size back") {
  SmallFilesystem small(8 * MiB);
  if (!small.mounted()) {
    MESSAGE("skipped: mounting a tmpfs needs root");
    return;
  }
  const std::string path = small.file("diff");
  { std::ofstream(path) << std::string(4096, 'x'); }
  DiffStorage storage(0, 0, nullptr);
  CHECK_ERRC(storage.append(file_spec(path, 32 * MiB, false)), Errc::no_space);
  REQUIRE(std::filesystem::exists(path));
  CHECK(std::filesystem::file_size(path) == 4096);
}
