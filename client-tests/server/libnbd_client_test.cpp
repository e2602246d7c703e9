// SPDX-License-Identifier: BSD-3-Clause
// libnbd_client_test.cpp — nbdsnapd seen through libnbd: listing, info, I/O, block status in both contexts,
// concurrent aio requests, multi-conn and image lifetime. run-libnbd-client-test.sh starts the server and
// passes its sockets in NBDSNAP_SOCKET and NBDSNAP_CONTROL; origins "disk" (64 MiB) and "list" (16 MiB).
#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include <doctest/doctest.h>
#include <libnbd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace {

constexpr uint64_t kDiskSize = 64ull << 20;
const nbd_completion_callback kNoCompletion{nullptr, nullptr, nullptr};

std::string env(const char* name) {
  const char* value = std::getenv(name);
  if (!value) throw std::runtime_error(std::string(name) + " is not set");
  return value;
}

std::string uri(const std::string& export_name) {
  return "nbd+unix:///" + export_name + "?socket=" + env("NBDSNAP_SOCKET");
}

// One control request, one reply line.
std::string control(const std::string& request) {
  int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  const std::string path = env("NBDSNAP_CONTROL");
  std::strncpy(addr.sun_path, path.c_str(), sizeof addr.sun_path - 1);
  REQUIRE(::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
  const std::string line = request + "\n";
  REQUIRE(::write(fd, line.data(), line.size()) == ssize_t(line.size()));
  std::string reply;
  char c;
  while (::read(fd, &c, 1) == 1 && c != '\n') reply += c;
  ::close(fd);
  return reply;
}

void take_snapshot(const std::string& name, const std::string& origin) {
  const std::string created = control(R"({"command":"snapshot-create","name":")" + name +
                                      R"(","origins":[")" + origin + R"("],"storage":[{"path":")" +
                                      env("NBDSNAP_TMP") + "/" + name + R"(.diff","size":67108864}]})");
  REQUIRE_MESSAGE(created.find("\"ok\":true") != std::string::npos, created);
  const std::string taken = control(R"({"command":"snapshot-take","name":")" + name + R"("})");
  REQUIRE_MESSAGE(taken.find("\"ok\":true") != std::string::npos, taken);
}

// force: destroy while clients read its images (refused with busy otherwise).
void destroy_snapshot(const std::string& name, bool force = false) {
  const std::string reply = control(R"({"command":"snapshot-destroy","name":")" + name + R"(")" +
                                    (force ? R"(,"force":true})" : "}"));
  REQUIRE_MESSAGE(reply.find("\"ok\":true") != std::string::npos, reply);
}

struct HandleDeleter {
  void operator()(nbd_handle* h) const { nbd_close(h); }
};
using Handle = std::unique_ptr<nbd_handle, HandleDeleter>;

Handle connect(const std::string& export_name, std::vector<std::string> contexts = {}) {
  Handle h(nbd_create());
  REQUIRE(h);
  for (const auto& context : contexts) REQUIRE(nbd_add_meta_context(h.get(), context.c_str()) == 0);
  REQUIRE_MESSAGE(nbd_connect_uri(h.get(), uri(export_name).c_str()) == 0, nbd_get_error());
  return h;
}

std::vector<uint8_t> pattern(size_t size, uint8_t seed) {
  std::vector<uint8_t> data(size);
  for (size_t i = 0; i < size; ++i) data[i] = uint8_t(seed + i * 7);
  return data;
}

// Block status as (length, flags) runs per context.
using Runs = std::vector<std::pair<uint32_t, uint32_t>>;
std::map<std::string, Runs> block_status(nbd_handle* h, uint64_t length, uint64_t offset,
                                         uint32_t flags = 0) {
  std::map<std::string, Runs> out;
  nbd_extent_callback callback{
      [](void* user, const char* context, uint64_t, uint32_t* entries, size_t n, int*) {
        auto& map = *static_cast<std::map<std::string, Runs>*>(user);
        for (size_t i = 0; i + 1 < n; i += 2) map[context].push_back({entries[i], entries[i + 1]});
        return 0;
      },
      &out, nullptr};
  REQUIRE_MESSAGE(nbd_block_status(h, length, offset, callback, flags) == 0, nbd_get_error());
  return out;
}

// The flags of the run covering `offset` (runs start at `start`).
uint32_t flags_at(const Runs& runs, uint64_t start, uint64_t offset) {
  for (const auto& [length, flags] : runs) {
    if (offset < start + length) return flags;
    start += length;
  }
  FAIL("offset not covered by block status");
  return ~0u;
}

}  // namespace

TEST_CASE("list_shows_origins_and_images_with_descriptions") {
  take_snapshot("listed", "list");
  Handle h(nbd_create());
  REQUIRE(nbd_set_opt_mode(h.get(), true) == 0);
  REQUIRE(nbd_connect_uri(h.get(), uri("").c_str()) == 0);
  std::map<std::string, std::string> exports;
  nbd_list_callback callback{[](void* user, const char* name, const char* description) {
                               (*static_cast<std::map<std::string, std::string>*>(user))[name] = description;
                               return 0;
                             },
                             &exports, nullptr};
  REQUIRE(nbd_opt_list(h.get(), callback) >= 0);
  CHECK(exports.count("disk") == 1);
  REQUIRE(exports.count("list@listed") == 1);
  CHECK(exports["list"] == "origin, 16.0 MiB, read-write");
  CHECK(exports["list@listed"].find("snapshot listed of list, taken ") == 0);

  REQUIRE(nbd_set_export_name(h.get(), "list@listed") == 0);
  REQUIRE(nbd_opt_info(h.get()) == 0);
  CHECK(nbd_get_size(h.get()) == int64_t(16 << 20));
  CHECK(nbd_is_read_only(h.get()) == 1);
  REQUIRE(nbd_set_export_name(h.get(), "list@nope") == 0);
  CHECK(nbd_opt_info(h.get()) == -1);  // unknown export: an error reply, the handshake goes on
  REQUIRE(nbd_set_export_name(h.get(), "list") == 0);
  REQUIRE(nbd_opt_go(h.get()) == 0);
  CHECK(nbd_is_read_only(h.get()) == 0);
  nbd_shutdown(h.get(), 0);
  destroy_snapshot("listed");
}

TEST_CASE("origin_info_advertises_writes_trim_zero_flush_and_multi_conn") {
  Handle h = connect("disk");
  CHECK(nbd_get_size(h.get()) == int64_t(kDiskSize));
  CHECK(nbd_is_read_only(h.get()) == 0);
  CHECK(nbd_can_trim(h.get()) == 1);
  CHECK(nbd_can_zero(h.get()) == 1);
  CHECK(nbd_can_flush(h.get()) == 1);
  CHECK(nbd_can_fua(h.get()) == 1);
  CHECK(nbd_can_multi_conn(h.get()) == 1);
  CHECK(nbd_can_cache(h.get()) == 1);
  CHECK(nbd_get_structured_replies_negotiated(h.get()) == 1);
  CHECK(nbd_get_block_size(h.get(), LIBNBD_SIZE_MAXIMUM) == int64_t(32 << 20));
}

TEST_CASE("write_read_trim_zero_round_trip_on_the_origin") {
  Handle h = connect("disk");
  const auto data = pattern(1 << 20, 3);
  REQUIRE(nbd_pwrite(h.get(), data.data(), data.size(), 8 << 20, LIBNBD_CMD_FLAG_FUA) == 0);
  std::vector<uint8_t> back(data.size());
  REQUIRE(nbd_pread(h.get(), back.data(), back.size(), 8 << 20, 0) == 0);
  CHECK(back == data);
  REQUIRE(nbd_zero(h.get(), 65536, (8 << 20) + 65536, 0) == 0);
  REQUIRE(nbd_pread(h.get(), back.data(), 65536, (8 << 20) + 65536, 0) == 0);
  CHECK(std::vector<uint8_t>(back.begin(), back.begin() + 65536) == std::vector<uint8_t>(65536, 0));
  REQUIRE(nbd_zero(h.get(), 65536, (8 << 20) + 131072, LIBNBD_CMD_FLAG_NO_HOLE) == 0);
  REQUIRE(nbd_trim(h.get(), 65536, (8 << 20) + 262144, 0) == 0);
  REQUIRE(nbd_flush(h.get(), 0) == 0);
  REQUIRE(nbd_cache(h.get(), 4096, 0, 0) == 0);
  // Beyond the end: ENOSPC for writes, EINVAL for reads.
  CHECK(nbd_pwrite(h.get(), data.data(), 4096, kDiskSize - 2048, 0) == -1);
  CHECK(nbd_get_errno() == ENOSPC);
  CHECK(nbd_pread(h.get(), back.data(), 4096, kDiskSize, 0) == -1);
  CHECK(nbd_get_errno() == EINVAL);
}

TEST_CASE("read_of_zeroes_arrives_as_a_hole_chunk") {
  Handle h = connect("disk");
  REQUIRE(nbd_zero(h.get(), 1 << 20, 20 << 20, 0) == 0);
  std::vector<uint8_t> buf(1 << 20, 0xff);
  unsigned statuses = 0;
  nbd_chunk_callback callback{[](void* user, const void*, size_t, uint64_t, unsigned status, int*) {
                                *static_cast<unsigned*>(user) |= 1u << status;
                                return 0;
                              },
                              &statuses, nullptr};
  REQUIRE(nbd_pread_structured(h.get(), buf.data(), buf.size(), 20 << 20, callback, 0) == 0);
  CHECK(statuses == (1u << LIBNBD_READ_HOLE));
  CHECK(buf == std::vector<uint8_t>(1 << 20, 0));
}

TEST_CASE("origin_block_status_reports_data_and_zeroed_holes") {
  Handle h = connect("disk", {"base:allocation"});
  REQUIRE(nbd_can_meta_context(h.get(), "base:allocation") == 1);
  const auto data = pattern(1 << 20, 9);
  REQUIRE(nbd_pwrite(h.get(), data.data(), data.size(), 40 << 20, 0) == 0);
  REQUIRE(nbd_zero(h.get(), 1 << 20, 41 << 20, 0) == 0);
  auto status = block_status(h.get(), 2 << 20, 40 << 20);
  REQUIRE(status.count("base:allocation") == 1);
  CHECK(flags_at(status["base:allocation"], 40 << 20, 40 << 20) == 0);
  CHECK((flags_at(status["base:allocation"], 40 << 20, 41 << 20) & LIBNBD_STATE_ZERO) != 0);
  auto one = block_status(h.get(), 2 << 20, 40 << 20, LIBNBD_CMD_FLAG_REQ_ONE);
  CHECK(one["base:allocation"].size() == 1);
}

TEST_CASE("image_serves_base_allocation_and_the_dirty_bitmap_of_the_previous_checkpoint") {
  take_snapshot("bs1", "disk");
  Handle writer = connect("disk");
  const auto data = pattern(65536, 1);
  REQUIRE(nbd_pwrite(writer.get(), data.data(), data.size(), 2 << 20, 0) == 0);
  destroy_snapshot("bs1");
  take_snapshot("bs2", "disk");
  REQUIRE(nbd_pwrite(writer.get(), data.data(), data.size(), 3 << 20, 0) == 0);  // after bs2: not in its map

  Handle h = connect("disk@bs2", {"base:allocation", "qemu:dirty-bitmap:bs1"});
  REQUIRE(nbd_can_meta_context(h.get(), "qemu:dirty-bitmap:bs1") == 1);
  auto status = block_status(h.get(), kDiskSize, 0);
  REQUIRE(status.count("base:allocation") == 1);
  REQUIRE(status.count("qemu:dirty-bitmap:bs1") == 1);
  const Runs& dirty = status["qemu:dirty-bitmap:bs1"];
  CHECK(flags_at(dirty, 0, 2 << 20) == 1);
  CHECK(flags_at(dirty, 0, (2 << 20) - 1) == 0);
  CHECK(flags_at(dirty, 0, 3 << 20) == 0);
  CHECK(flags_at(status["base:allocation"], 0, 2 << 20) == 0);
  h.reset();  // an image with a client is not destroyed without force
  destroy_snapshot("bs2");
}

TEST_CASE("image_refuses_writes_with_eperm_and_reads_take_time_data") {
  Handle writer = connect("disk");
  const auto before = pattern(65536, 5);
  REQUIRE(nbd_pwrite(writer.get(), before.data(), before.size(), 5 << 20, 0) == 0);
  take_snapshot("ro", "disk");
  const auto after = pattern(65536, 6);
  REQUIRE(nbd_pwrite(writer.get(), after.data(), after.size(), 5 << 20, 0) == 0);
  Handle h = connect("disk@ro");
  CHECK(nbd_is_read_only(h.get()) == 1);
  std::vector<uint8_t> back(65536);
  REQUIRE(nbd_pread(h.get(), back.data(), back.size(), 5 << 20, 0) == 0);
  CHECK(back == before);
  // libnbd refuses writes on read-only exports itself; the server's EPERM is checked by bad_clients.py.
  CHECK(nbd_pwrite(h.get(), after.data(), 512, 0, 0) == -1);
  h.reset();
  destroy_snapshot("ro");
}

TEST_CASE("destroyed_image_fails_reads_instead_of_serving_stale_data") {
  take_snapshot("gone", "disk");
  Handle h = connect("disk@gone");
  std::vector<uint8_t> buf(4096);
  REQUIRE(nbd_pread(h.get(), buf.data(), buf.size(), 0, 0) == 0);
  destroy_snapshot("gone", /*force=*/true);  // the connection holds the image
  CHECK(nbd_pread(h.get(), buf.data(), buf.size(), 0, 0) == -1);
  CHECK(nbd_get_errno() == EIO);
  Handle again(nbd_create());
  CHECK(nbd_connect_uri(again.get(), uri("disk@gone").c_str()) == -1);
}

TEST_CASE("many_concurrent_aio_requests_on_one_connection_all_complete") {
  Handle h = connect("disk");
  constexpr int kRequests = 256;
  constexpr size_t kBlock = 16384;
  std::vector<std::vector<uint8_t>> blocks;
  std::vector<int64_t> cookies;
  for (int i = 0; i < kRequests; ++i) {
    blocks.push_back(pattern(kBlock, uint8_t(i)));
    const int64_t cookie =
        nbd_aio_pwrite(h.get(), blocks.back().data(), kBlock, (24ull << 20) + i * kBlock, kNoCompletion, 0);
    REQUIRE(cookie > 0);
    cookies.push_back(cookie);
  }
  while (nbd_aio_in_flight(h.get()) > 0) REQUIRE(nbd_poll(h.get(), -1) >= 0);
  for (int64_t cookie : cookies) CHECK(nbd_aio_command_completed(h.get(), cookie) == 1);
  std::vector<std::vector<uint8_t>> back(kRequests, std::vector<uint8_t>(kBlock));
  cookies.clear();
  for (int i = 0; i < kRequests; ++i) {
    cookies.push_back(
        nbd_aio_pread(h.get(), back[i].data(), kBlock, (24ull << 20) + i * kBlock, kNoCompletion, 0));
  }
  while (nbd_aio_in_flight(h.get()) > 0) REQUIRE(nbd_poll(h.get(), -1) >= 0);
  for (int i = 0; i < kRequests; ++i) {
    CHECK(nbd_aio_command_completed(h.get(), cookies[i]) == 1);
    CHECK(back[i] == blocks[i]);
  }
}

TEST_CASE("multi_conn_writes_from_four_connections_are_visible_on_a_fifth_after_flush") {
  constexpr uint64_t kBase = 44ull << 20, kRegion = 1 << 20;
  std::vector<std::thread> writers;
  std::vector<int> failures(4, 0);
  for (int w = 0; w < 4; ++w) {
    writers.emplace_back([w, &failures] {
      Handle h(nbd_create());
      failures[w] += nbd_connect_uri(h.get(), uri("disk").c_str()) != 0;
      const auto data = pattern(kRegion, uint8_t(100 + w));
      for (int i = 0; i < 4; ++i)
        failures[w] += nbd_pwrite(h.get(), data.data(), kRegion, kBase + (w * 4 + i) * kRegion, 0) != 0;
      failures[w] += nbd_flush(h.get(), 0) != 0;
    });
  }
  for (auto& t : writers) t.join();
  CHECK(failures == std::vector<int>(4, 0));
  Handle reader = connect("disk");
  std::vector<uint8_t> back(kRegion);
  for (int w = 0; w < 4; ++w) {
    const auto data = pattern(kRegion, uint8_t(100 + w));
    for (int i = 0; i < 4; ++i) {
      REQUIRE(nbd_pread(reader.get(), back.data(), back.size(), kBase + (w * 4 + i) * kRegion, 0) == 0);
      CHECK(back == data);
    }
  }
}
