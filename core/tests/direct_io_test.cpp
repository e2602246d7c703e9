// SPDX-License-Identifier: BSD-3-Clause
// direct_io_test.cpp — files opened with cache none (O_DIRECT): requests of any offset, length and buffer
// address give the bytes a model says (the bounce buffer and its read-modify-write), aligned ones skip the
// bounce, concurrent read-modify-writes of one block keep each other's bytes, and the mode's parsing.
#include "direct_io.h"

#include <doctest/doctest.h>
#include <fcntl.h>
#include <unistd.h>

#include <fstream>
#include <iterator>
#include <random>
#include <thread>

#include "file_device.h"
#include "test_support.h"

using namespace nbdsnap;
using namespace nbdsnap::test;

namespace {

// Creates `name` of `size` bytes in dir opened with cache none; false (with a message) when the file system
// of the temporary directory has no O_DIRECT, so the test has nothing to check there.
bool create_direct(const TempDir& dir, const std::string& name, uint64_t size,
                   std::unique_ptr<FileDevice>& out) {
  bool created = false;
  const Status status = FileDevice::create(dir.file(name), size, out, created, FileCache::none);
  if (status.code() == Errc::not_supported) {
    MESSAGE("skipped: " << status.message());
    return false;
  }
  REQUIRE_OK(status);
  REQUIRE(out->direct_io() != nullptr);
  return true;
}

// The file's bytes as another reader sees them (buffered, not through the device under test).
std::vector<uint8_t> file_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

}  // namespace

TEST_CASE("direct I/O requests of odd offsets, lengths and buffers give the bytes of a model") {
  TempDir dir;
  const uint64_t size = MiB + 1000;  // the last partial block goes through the buffered descriptor
  std::unique_ptr<FileDevice> device;
  if (!create_direct(dir, "disk", size, device)) return;
  const uint64_t block = device->direct_io()->alignment().offset;
  CHECK(device->minimum_io_size() >= block);
  std::vector<uint8_t> model(size, 0);
  std::mt19937_64 random(21);
  std::vector<uint8_t> buffer(4 * block + 64);
  uint32_t version = 1;
  auto write_and_check = [&](uint64_t offset, uint64_t len, size_t shift) {
    CAPTURE(offset);
    CAPTURE(len);
    uint8_t* data = buffer.data() + shift;  // shift != 0: a buffer address O_DIRECT refuses
    for (uint64_t i = 0; i < len; ++i) data[i] = pattern_byte(offset + i, version);
    REQUIRE_OK(device->pwrite(data, len, offset, false));
    std::copy(data, data + len, model.begin() + static_cast<ptrdiff_t>(offset));
    ++version;
    std::fill(buffer.begin(), buffer.end(), 0xee);
    REQUIRE_OK(device->pread(data, len, offset));
    CHECK(std::equal(data, data + len, model.begin() + static_cast<ptrdiff_t>(offset)));
  };
  // Straddling block boundaries, inside one block, the first and the last byte, across the last full block.
  write_and_check(block - 3, 6, 0);
  write_and_check(block + 1, block, 1);
  write_and_check(2 * block + 7, 10, 3);
  write_and_check(0, 1, 0);
  write_and_check(size - 1, 1, 0);
  write_and_check(size - 1000 - 5, 1005, 2);
  write_and_check(size - 1000, 1000, 0);
  write_and_check(size - 1000 - 2 * block, 2 * block + 10, 0);
  write_and_check(3 * block, 2 * block, 5);  // aligned in the file, not in memory
  for (int i = 0; i < 400; ++i) {
    const uint64_t offset = random() % size;
    const uint64_t len = 1 + random() % std::min<uint64_t>(3 * block + 17, size - offset);
    write_and_check(offset, len, random() % 8);
  }
  CHECK(device->direct_io()->bounced_requests() > 0);
  std::vector<uint8_t> whole(size);
  REQUIRE_OK(device->pread(whole.data(), size, 0));
  CHECK(whole == model);
  device.reset();
  CHECK(file_bytes(dir.file("disk")) == model);  // what reached the file, the partial block too
}

// The same with a coarser alignment than the file system's (4 KiB where ext4 takes 512 bytes): any multiple
// of the kernel's alignment is one, so a DirectFileIo over a raw O_DIRECT descriptor checks the block
// arithmetic with 4 KiB blocks and a last partial block of 100 bytes.
TEST_CASE("the bounce buffer keeps a model's bytes with 4 KiB blocks and a short last block") {
  TempDir dir;
  const std::string path = dir.file("disk");
  const uint64_t size = 64 * 1024 + 100;
  const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_DIRECT | O_CLOEXEC, 0600);
  if (fd < 0 && errno == EINVAL) {
    MESSAGE("skipped: no O_DIRECT in " << dir.path());
    return;
  }
  REQUIRE(fd >= 0);
  REQUIRE(::ftruncate(fd, static_cast<off_t>(size)) == 0);
  const int buffered = ::open(path.c_str(), O_RDWR | O_CLOEXEC);
  REQUIRE(buffered >= 0);
  {
    DirectFileIo io(fd, buffered, size, {4096, 4096}, path);
    std::vector<uint8_t> model(size, 0);
    std::vector<uint8_t> data(3 * 4096 + 64);
    std::mt19937_64 random(2111);
    for (uint32_t version = 1; version <= 300; ++version) {
      const uint64_t offset = random() % size;
      const uint64_t len = 1 + random() % std::min<uint64_t>(data.size() - 8, size - offset);
      const size_t shift = random() % 8;
      CAPTURE(offset);
      CAPTURE(len);
      for (uint64_t i = 0; i < len; ++i) data[shift + i] = pattern_byte(offset + i, version);
      REQUIRE_OK(io.pwrite(data.data() + shift, len, offset));
      std::copy(data.begin() + static_cast<ptrdiff_t>(shift),
                data.begin() + static_cast<ptrdiff_t>(shift + len),
                model.begin() + static_cast<ptrdiff_t>(offset));
      const uint64_t read_offset = random() % size;
      const uint64_t read_len = 1 + random() % std::min<uint64_t>(data.size() - 8, size - read_offset);
      REQUIRE_OK(io.pread(data.data() + shift, read_len, read_offset));
      CHECK(std::equal(data.begin() + static_cast<ptrdiff_t>(shift),
                       data.begin() + static_cast<ptrdiff_t>(shift + read_len),
                       model.begin() + static_cast<ptrdiff_t>(read_offset)));
    }
    CHECK(file_bytes(path) == model);
  }
  ::close(buffered);
  ::close(fd);
}

TEST_CASE("aligned direct I/O requests with aligned buffers skip the bounce buffer") {
  TempDir dir;
  std::unique_ptr<FileDevice> device;
  if (!create_direct(dir, "disk", MiB, device)) return;
  const uint64_t len = 64 * 1024;
  void* raw = std::aligned_alloc(4096, len);
  REQUIRE(raw != nullptr);
  std::unique_ptr<uint8_t, decltype(&std::free)> data(static_cast<uint8_t*>(raw), &std::free);
  std::memset(data.get(), 0x5a, len);
  REQUIRE_OK(device->pwrite(data.get(), len, 128 * 1024, true));
  std::memset(data.get(), 0, len);
  REQUIRE_OK(device->pread(data.get(), len, 128 * 1024));
  CHECK(data.get()[0] == 0x5a);
  CHECK(data.get()[len - 1] == 0x5a);
  CHECK(device->direct_io()->bounced_requests() == 0);
}

// Two writes to different bytes of one block do not overlap for the client, but each is a read-modify-write
// of the whole block: without the block's lock, one thread writes back the block it read before the other's
// write and that write is lost.
TEST_CASE("concurrent read-modify-writes of one block keep every writer's bytes") {
  TempDir dir;
  std::unique_ptr<FileDevice> device;
  if (!create_direct(dir, "disk", MiB, device)) return;
  const uint64_t block = device->direct_io()->alignment().offset;
  constexpr unsigned kThreads = 8;
  const uint64_t span = 2 * block;  // two blocks: single-block RMWs and ones straddling the boundary
  HangWatchdog watchdog("concurrent read-modify-writes", std::chrono::seconds(60));
  std::vector<std::thread> threads;
  for (unsigned t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (uint64_t pos = t * 2; pos + 2 <= span; pos += 2 * kThreads) {
        const uint8_t bytes[2] = {static_cast<uint8_t>(t + 1), static_cast<uint8_t>(t + 1)};
        CHECK_OK(device->pwrite(bytes, 2, block / 2 + pos, false));
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  std::vector<uint8_t> read(span);
  REQUIRE_OK(device->pread(read.data(), span, block / 2));
  uint64_t lost = 0;
  for (uint64_t pos = 0; pos < span; ++pos) {
    if (read[pos] != static_cast<uint8_t>((pos / 2) % kThreads + 1)) ++lost;
  }
  CHECK(lost == 0);
}

TEST_CASE("cache modes are none and writeback, anything else is refused naming the option") {
  FileCache cache = FileCache::writeback;
  CHECK_OK(parse_file_cache("none", "--cache", cache));
  CHECK(cache == FileCache::none);
  CHECK_OK(parse_file_cache("writeback", "--cache", cache));
  CHECK(cache == FileCache::writeback);
  const Status bad = parse_file_cache("off", "--cache", cache);
  CHECK(bad.code() == Errc::invalid_argument);
  CHECK(bad.message().find("--cache 'off'") != std::string::npos);
  CHECK(std::string(file_cache_name(FileCache::none)) == "none");
}

TEST_CASE("a writeback device has no direct-I/O path and keeps its minimum I/O size") {
  TempDir dir;
  std::unique_ptr<FileDevice> device;
  bool created = false;
  REQUIRE_OK(FileDevice::create(dir.file("disk"), MiB, device, created));
  CHECK(device->direct_io() == nullptr);
  CHECK(device->cache() == FileCache::writeback);
  CHECK(device->minimum_io_size() == 1);
}
