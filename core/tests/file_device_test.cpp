// file_device_test.cpp — the file / block-device backend: create, read/write, short reads, extents, trim.
#include "file_device.h"

#include <doctest/doctest.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fstream>
#include <thread>

#include "test_support.h"

using namespace nbdsnap;
using namespace nbdsnap::test;

namespace {

// Whether the file system under dir reports holes (SEEK_HOLE before the end of a sparse file).
bool file_system_reports_holes(const TempDir& dir) {
  const std::string path = dir.file("probe");
  const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_TRUNC, 0600);
  if (fd < 0) return false;
  const bool ok = ::ftruncate(fd, 1 << 20) == 0 && ::lseek(fd, 0, SEEK_HOLE) == 0;
  ::close(fd);
  ::unlink(path.c_str());
  return ok;
}

void check_contiguous(const std::vector<Extent>& extents, uint64_t offset, uint64_t len) {
  REQUIRE_FALSE(extents.empty());
  uint64_t next = offset;
  for (const Extent& extent : extents) {
    CHECK(extent.offset == next);
    CHECK(extent.length > 0);
    next = extent.offset + extent.length;
  }
  CHECK(next == offset + len);
}

}  // namespace

TEST_CASE("create makes a file of the given size and says it created it") {
  TempDir dir;
  std::unique_ptr<FileDevice> device;
  bool created = false;
  REQUIRE_OK(FileDevice::create(dir.file("diff"), 3 << 20, device, created));
  CHECK(created);
  CHECK(device->size() == (3u << 20));
  CHECK(std::filesystem::file_size(dir.file("diff")) == (3u << 20));
  CHECK(device->path() == dir.file("diff"));
  CHECK_FALSE(device->is_block_device());
  CHECK_FALSE(device->is_read_only());
  struct stat st {};
  REQUIRE(::stat(dir.file("diff").c_str(), &st) == 0);
  CHECK(device->file_identity() == "file " + std::to_string(st.st_dev) + ":" + std::to_string(st.st_ino));
  // A hard link is the same file.
  std::filesystem::create_hard_link(dir.file("diff"), dir.file("link"));
  std::unique_ptr<FileDevice> link;
  REQUIRE_OK(FileDevice::open(dir.file("link"), true, link));
  CHECK(link->file_identity() == device->file_identity());
}

TEST_CASE("create on an existing file grows it and says it did not create it") {
  TempDir dir;
  {
    std::ofstream out(dir.file("diff"), std::ios::binary);
    out << "hello";
  }
  std::unique_ptr<FileDevice> device;
  bool created = true;
  REQUIRE_OK(FileDevice::create(dir.file("diff"), 1 << 20, device, created));
  CHECK_FALSE(created);
  CHECK(device->size() >= (1u << 20));
  std::vector<char> buf(5);
  REQUIRE_OK(device->pread(buf.data(), 5, 0));
  CHECK(std::string(buf.data(), 5) == "hello");
}

TEST_CASE("create in a missing directory fails") {
  TempDir dir;
  std::unique_ptr<FileDevice> device;
  bool created = false;
  CHECK_FALSE(FileDevice::create(dir.file("no/such/dir"), 1 << 20, device, created).is_ok());
}

TEST_CASE("open of a missing file is not found") {
  TempDir dir;
  std::unique_ptr<FileDevice> device;
  CHECK_ERRC(FileDevice::open(dir.file("missing"), false, device), Errc::not_found);
}

TEST_CASE("file device writes read back at unaligned offsets") {
  TempDir dir;
  std::unique_ptr<FileDevice> device;
  bool created = false;
  REQUIRE_OK(FileDevice::create(dir.file("disk"), 1 << 20, device, created));
  const auto data = pattern(70000, 1234, 5);
  REQUIRE_OK(device->pwrite(data.data(), data.size(), 1234, false));
  REQUIRE_OK(device->pwrite(data.data(), 1, (1 << 20) - 1, true));
  REQUIRE_OK(device->flush());
  std::vector<uint8_t> back(70000);
  REQUIRE_OK(device->pread(back.data(), back.size(), 1234));
  CHECK(back == data);

  // Another open of the same file sees the data.
  std::unique_ptr<FileDevice> again;
  REQUIRE_OK(FileDevice::open(dir.file("disk"), true, again));
  CHECK(again->size() == (1u << 20));
  std::fill(back.begin(), back.end(), 0);
  REQUIRE_OK(again->pread(back.data(), back.size(), 1234));
  CHECK(back == data);
}

TEST_CASE("file device refuses ranges past its end") {
  TempDir dir;
  std::unique_ptr<FileDevice> device;
  bool created = false;
  REQUIRE_OK(FileDevice::create(dir.file("disk"), 8192, device, created));
  std::vector<uint8_t> buf(4096);
  CHECK_ERRC(device->pread(buf.data(), 4096, 4097), Errc::out_of_range);
  CHECK_ERRC(device->pwrite(buf.data(), 4096, 8192, false), Errc::out_of_range);
  CHECK(std::filesystem::file_size(dir.file("disk")) == 8192);
}

TEST_CASE("a short read from a file that shrank underneath is an error, not zeroes") {
  TempDir dir;
  std::unique_ptr<FileDevice> device;
  bool created = false;
  REQUIRE_OK(FileDevice::create(dir.file("disk"), 1 << 20, device, created));
  std::filesystem::resize_file(dir.file("disk"), 4096);
  std::vector<uint8_t> buf(8192, 0xaa);
  const Status status = device->pread(buf.data(), 8192, 0);
  CHECK_FALSE(status.is_ok());
  CHECK_FALSE(device->pread(buf.data(), 4096, 65536).is_ok());
}

TEST_CASE("a read-only file device refuses writes") {
  TempDir dir;
  {
    std::unique_ptr<FileDevice> device;
    bool created = false;
    REQUIRE_OK(FileDevice::create(dir.file("disk"), 65536, device, created));
  }
  std::unique_ptr<FileDevice> device;
  REQUIRE_OK(FileDevice::open(dir.file("disk"), true, device));
  CHECK(device->is_read_only());
  std::vector<uint8_t> buf(4096, 1);
  CHECK_ERRC(device->pwrite(buf.data(), 4096, 0, false), Errc::read_only);
}

TEST_CASE("file device extents report holes and data of a sparse file") {
  TempDir dir;
  const bool holes = file_system_reports_holes(dir);
  const uint64_t size = 4 << 20;
  {
    const int fd = ::open(dir.file("sparse").c_str(), O_RDWR | O_CREAT | O_TRUNC, 0600);
    REQUIRE(fd >= 0);
    REQUIRE(::ftruncate(fd, static_cast<off_t>(size)) == 0);
    const auto data = pattern(65536, 1 << 20, 1);
    REQUIRE(::pwrite(fd, data.data(), data.size(), 1 << 20) == 65536);
    REQUIRE(::pwrite(fd, data.data(), data.size(), 3 << 20) == 65536);
    ::close(fd);
  }
  std::unique_ptr<FileDevice> device;
  REQUIRE_OK(FileDevice::open(dir.file("sparse"), true, device));
  std::vector<Extent> extents;
  REQUIRE_OK(device->extents(size, 0, extents));
  check_contiguous(extents, 0, size);
  bool hole_seen = false;
  for (const Extent& extent : extents) {
    const uint64_t end = extent.offset + extent.length;
    const bool covers_data = (extent.offset < (1 << 20) + 65536 && end > (1 << 20)) ||
                             (extent.offset < (3 << 20) + 65536 && end > (3u << 20));
    if (covers_data) CHECK_FALSE(extent.hole);
    if (extent.hole) {
      hole_seen = true;
      CHECK(extent.zero);
    }
  }
  if (holes) CHECK(hole_seen);

  // A window in the middle is clipped to the window.
  extents.clear();
  REQUIRE_OK(device->extents(2 << 20, 512 << 10, extents));
  check_contiguous(extents, 512 << 10, 2 << 20);
}

TEST_CASE("trim and zero on a file make the range read as zeroes") {
  TempDir dir;
  std::unique_ptr<FileDevice> device;
  bool created = false;
  REQUIRE_OK(FileDevice::create(dir.file("disk"), 1 << 20, device, created));
  CHECK(device->can_trim());
  const auto data = pattern(1 << 20, 0, 2);
  REQUIRE_OK(device->pwrite(data.data(), data.size(), 0, false));
  REQUIRE_OK(device->trim(256 << 10, 256 << 10, false));
  REQUIRE_OK(device->zero(5000, 700000, false, false));
  REQUIRE_OK(device->zero(65536, 800 << 10, true, false));
  std::vector<uint8_t> back(1 << 20);
  REQUIRE_OK(device->pread(back.data(), back.size(), 0));
  auto expected = data;
  std::fill(expected.begin() + (256 << 10), expected.begin() + (512 << 10), 0);
  std::fill(expected.begin() + 700000, expected.begin() + 705000, 0);
  std::fill(expected.begin() + (800 << 10), expected.begin() + (800 << 10) + 65536, 0);
  CHECK(first_difference(back, expected) == -1);
  CHECK(device->size() == (1u << 20));
}

TEST_CASE("concurrent writers to one file device all land") {
  TempDir dir;
  std::unique_ptr<FileDevice> device;
  bool created = false;
  REQUIRE_OK(FileDevice::create(dir.file("disk"), 1 << 20, device, created));
  std::vector<std::thread> threads;
  for (uint64_t t = 0; t < 4; ++t) {
    threads.emplace_back([&device, t] {
      for (uint64_t offset = t * 4096; offset < device->size(); offset += 4 * 4096) {
        const auto data = pattern(4096, offset, 4);
        CHECK(device->pwrite(data.data(), 4096, offset, false).is_ok());
      }
    });
  }
  for (auto& thread : threads) thread.join();
  std::vector<uint8_t> back(1 << 20);
  REQUIRE_OK(device->pread(back.data(), back.size(), 0));
  CHECK(back == pattern(1 << 20, 0, 4));
}
