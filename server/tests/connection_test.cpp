// SPDX-License-Identifier: BSD-3-Clause
// connection_test.cpp — where a connection runs its requests: every one on the worker pool, READs of bytes
// in memory included, never on the connection's I/O thread (connection.cpp, "Where requests run"), so a read
// that sleeps on a dying disk holds up no other connection of that thread; and small READs received together
// (one batch) run on several workers when one of them waits: it holds up neither the others' replies nor
// their parallelism. A raw NBD client on one end of a socket pair, the real Connection on the other, over the
// real engine.
#include <doctest/doctest.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstring>
#include <thread>
#include <vector>

#include "connection.h"
#include "engine_exports.h"
#include "test_support.h"

using namespace nbdsnap;
using namespace nbdsnap::nbd;
using namespace nbdsnap::test;
using namespace std::chrono_literals;

namespace {

// One end of a socket pair speaking NBD as a client: NBD_OPT_EXPORT_NAME, then simple replies.
class RawNbdClient {
 public:
  explicit RawNbdClient(int fd) : fd_(fd) {}
  ~RawNbdClient() { close(); }
  RawNbdClient(const RawNbdClient&) = delete;
  RawNbdClient& operator=(const RawNbdClient&) = delete;

  void close() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }
  // Exactly `length` bytes within `limit`; false when they did not all come.
  bool receive(uint8_t* out, size_t length, std::chrono::milliseconds limit) {
    const auto deadline = std::chrono::steady_clock::now() + limit;
    while (length > 0) {
      const auto left =
          std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
      pollfd ready{fd_, POLLIN, 0};
      if (left.count() <= 0 || ::poll(&ready, 1, int(left.count())) <= 0) return false;
      const ssize_t n = ::recv(fd_, out, length, 0);
      if (n <= 0) return false;
      out += n;
      length -= size_t(n);
    }
    return true;
  }
  bool send(const std::vector<uint8_t>& bytes) {
    return ::send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL) == ssize_t(bytes.size());
  }
  // The fixed-newstyle handshake without zeroes; true once in transmission on `export_name`.
  bool open(const std::string& export_name) {
    std::vector<uint8_t> greeting(18);
    if (!receive(greeting.data(), greeting.size(), 5s)) return false;
    std::vector<uint8_t> out;
    put_u32(out, kClientFlagFixedNewstyle | kClientFlagNoZeroes);
    put_u64(out, kOptionMagic);
    put_u32(out, kOptExportName);
    put_u32(out, uint32_t(export_name.size()));
    out.insert(out.end(), export_name.begin(), export_name.end());
    std::vector<uint8_t> reply(10);  // size, transmission flags
    return send(out) && receive(reply.data(), reply.size(), 5s);
  }
  static void put_read(std::vector<uint8_t>& out, uint64_t handle, uint64_t offset, uint32_t length) {
    put_u32(out, kRequestMagic);
    put_u16(out, 0);
    put_u16(out, kCmdRead);
    put_u64(out, handle);
    put_u64(out, offset);
    put_u32(out, length);
  }
  bool send_read(uint64_t handle, uint64_t offset, uint32_t length) {
    std::vector<uint8_t> out;
    put_read(out, handle, offset, length);
    return send(out);
  }
  // READs of `length` bytes at each offset, handles 1, 2, ... in one send (so the server receives them
  // together, one batch).
  bool send_reads(const std::vector<uint64_t>& offsets, uint32_t length) {
    std::vector<uint8_t> out;
    for (size_t i = 0; i < offsets.size(); ++i) put_read(out, i + 1, offsets[i], length);
    return send(out);
  }
  // The next simple reply, of any handle, with `length` bytes of data when it succeeded, within `limit`:
  // its handle (0 when none came), error and data.
  uint64_t receive_any_read(uint32_t& error, std::vector<uint8_t>& data, uint32_t length,
                            std::chrono::milliseconds limit) {
    std::vector<uint8_t> header(kSimpleReplySize);
    if (!receive(header.data(), header.size(), limit)) return 0;
    REQUIRE(get_u32(header.data()) == kSimpleReplyMagic);
    error = get_u32(header.data() + 4);
    data.resize(error == 0 ? length : 0);
    if (!data.empty() && !receive(data.data(), data.size(), 5s)) return 0;
    return get_u64(header.data() + 8);
  }
  // A simple reply with `length` bytes of data within `limit`; its error (or -1 when none came) and data.
  int64_t receive_read(uint64_t handle, std::vector<uint8_t>& data, uint32_t length,
                       std::chrono::milliseconds limit) {
    std::vector<uint8_t> header(kSimpleReplySize);
    if (!receive(header.data(), header.size(), limit)) return -1;
    REQUIRE(get_u32(header.data()) == kSimpleReplyMagic);
    REQUIRE(get_u64(header.data() + 8) == handle);
    const uint32_t error = get_u32(header.data() + 4);
    data.resize(error == 0 ? length : 0);
    if (!data.empty() && !receive(data.data(), data.size(), 5s)) return -1;
    return error;
  }

 private:
  int fd_;
};

// nbdsnapd's connection side with one I/O thread (--io-threads 1) and a worker pool.
class ServedConnections {
 public:
  ServedConnections(const ExportCatalog& catalog, WorkerPoolLimits limits)
      : catalog_(catalog), workers(limits), guard_(asio::make_work_guard(io_)) {
    io_thread_ = std::thread([this] { io_.run(); });
  }
  ~ServedConnections() {
    for (auto& client : clients_) client->close();  // the connections see the end of the stream and close
    guard_.reset();
    io_thread_.join();
  }
  ServedConnections(const ServedConnections&) = delete;
  ServedConnections& operator=(const ServedConnections&) = delete;

  RawNbdClient& connect() {
    int fds[2];
    REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) == 0);
    NbdSocket socket(io_, asio::generic::stream_protocol(AF_UNIX, SOCK_STREAM), fds[0]);
    auto connection = std::make_shared<Connection>(std::move(socket), ++ids_, catalog_, workers, registry_,
                                                   ConnectionLimits{});
    asio::post(io_, [connection] { connection->start(); });
    clients_.push_back(std::make_unique<RawNbdClient>(fds[1]));
    return *clients_.back();
  }

 private:
  asio::io_context io_;
  const ExportCatalog& catalog_;

 public:
  WorkerPool workers;

 private:
  ClientRegistry registry_;
  asio::executor_work_guard<asio::io_context::executor_type> guard_;
  std::thread io_thread_;
  uint64_t ids_ = 0;
  std::vector<std::unique_ptr<RawNbdClient>> clients_;
};

// A worker task that holds its worker until released, as a request stuck on a dying disk does.
class HeldWorker {
 public:
  WorkerPool::Task task() {
    return [this] {
      MutexLock lock(mutex_);
      while (!released_) released_cond_.wait(mutex_);
    };
  }
  void release() {
    MutexLock lock(mutex_);
    released_ = true;
    released_cond_.notify_all();
  }

 private:
  Mutex mutex_;
  CondVar released_cond_;
  bool released_ GUARDED_BY(mutex_) = false;
};

// An export that passes every call to the engine's: the tests' exports below change only how it reads.
class ForwardingExport : public ServedExport {
 public:
  explicit ForwardingExport(std::shared_ptr<ServedExport> healthy) : healthy_(std::move(healthy)) {}
  const std::string& name() const override { return healthy_->name(); }
  std::string description() const override { return healthy_->description(); }
  uint64_t size() const override { return healthy_->size(); }
  ExportFeatures features() const override { return healthy_->features(); }
  Status read(void* buf, uint64_t len, uint64_t offset) override { return healthy_->read(buf, len, offset); }
  Status write(const void* buf, uint64_t len, uint64_t offset, bool fua) override {
    return healthy_->write(buf, len, offset, fua);
  }
  Status trim(uint64_t offset, uint64_t len, bool fua) override { return healthy_->trim(offset, len, fua); }
  Status zero(uint64_t offset, uint64_t len, bool may_trim, bool fua) override {
    return healthy_->zero(offset, len, may_trim, fua);
  }
  Status flush() override { return healthy_->flush(); }
  Status allocation(uint64_t offset, uint64_t len, std::vector<Extent>& out) override {
    return healthy_->allocation(offset, len, out);
  }

 private:
  std::shared_ptr<ServedExport> healthy_;
};

// An export whose reads of the first 64 KiB hang until released, as on a disk that stopped answering.
class DyingDiskExport final : public ForwardingExport {
 public:
  using ForwardingExport::ForwardingExport;
  Status read(void* buf, uint64_t len, uint64_t offset) override {
    if (offset < 65536) {
      ++stuck;
      MutexLock lock(mutex_);
      while (!released_) released_cond_.wait(mutex_);
    }
    return ForwardingExport::read(buf, len, offset);
  }
  void release() {
    MutexLock lock(mutex_);
    released_ = true;
    released_cond_.notify_all();
  }
  std::atomic<unsigned> stuck{0};

 private:
  Mutex mutex_;
  CondVar released_cond_;
  bool released_ GUARDED_BY(mutex_) = false;
};

// An export whose reads wait in groups: the n-th read to arrive waits (at most 5 s) until the rest of its
// group of `together` has arrived, as a disk that answers a queue of requests at once. Reads served one
// after the other fail with EIO.
class RendezvousExport final : public ForwardingExport {
 public:
  RendezvousExport(std::shared_ptr<ServedExport> healthy, unsigned together)
      : ForwardingExport(std::move(healthy)), together_(together) {}
  Status read(void* buf, uint64_t len, uint64_t offset) override {
    {
      MutexLock lock(mutex_);
      const unsigned group_end = (arrived_ / together_ + 1) * together_;
      ++arrived_;
      arrived_cond_.notify_all();
      const auto deadline = std::chrono::steady_clock::now() + 5s;
      while (arrived_ < group_end && std::chrono::steady_clock::now() < deadline)
        arrived_cond_.wait_until(mutex_, deadline);
      if (arrived_ < group_end) {
        ++served_alone;
        return {Errc::io_error, "served alone"};
      }
    }
    return ForwardingExport::read(buf, len, offset);
  }
  Mutex mutex_;
  unsigned served_alone GUARDED_BY(mutex_) = 0;

 private:
  const unsigned together_;
  CondVar arrived_cond_;
  unsigned arrived_ GUARDED_BY(mutex_) = 0;
};

// Releases what it names when the test ends, also when a check failed: the workers' join waits for them.
template <typename Held>
class ReleasedAtExit {
 public:
  explicit ReleasedAtExit(Held& held) : held_(held) {}
  ~ReleasedAtExit() { held_.release(); }
  ReleasedAtExit(const ReleasedAtExit&) = delete;
  ReleasedAtExit& operator=(const ReleasedAtExit&) = delete;

 private:
  Held& held_;
};

// Origin "f" on a dying disk (DyingDiskExport over the engine's export), the others as the engine serves
// them.
class DyingDiskCatalog final : public ExportCatalog {
 public:
  explicit DyingDiskCatalog(Engine& engine) : engine_(engine) {
    std::shared_ptr<ServedExport> f;
    REQUIRE_OK(engine_.open("f", f));
    f_ = std::make_shared<DyingDiskExport>(std::move(f));
  }
  std::vector<std::string> export_names() const override { return engine_.export_names(); }
  Status open(const std::string& name, std::shared_ptr<ServedExport>& out) const override {
    if (name != "f") return engine_.open(name, out);
    out = f_;
    return Status::ok();
  }
  DyingDiskExport& f() { return *f_; }

 private:
  EngineCatalog engine_;
  std::shared_ptr<DyingDiskExport> f_;
};

}  // namespace

TEST_CASE(
    "a READ of bytes in memory runs on a worker, not on the I/O thread: it waits while every worker is "
    "busy") {
  Engine engine(small_config());
  attach_memory_origin(engine, "d", 1 << 20);
  EngineCatalog catalog(engine);
  HeldWorker held;  // outlives the pool, whose worker may still be leaving its task
  ServedConnections served(catalog,
                           {.min_threads = 1, .max_threads = 1, .lane_limit = 1, .idle_timeout = 10s});
  const ReleasedAtExit<HeldWorker> release_at_exit(held);
  served.workers.post("other", held.task());
  RawNbdClient& client = served.connect();
  REQUIRE(client.open("d"));
  REQUIRE(client.send_read(1, 8192, 4096));
  std::vector<uint8_t> data;
  // An I/O thread that ran the read itself (from the page cache, as nbdsnapd once did) would answer now.
  CHECK(client.receive_read(1, data, 4096, 500ms) == -1);
  held.release();
  REQUIRE(client.receive_read(1, data, 4096, 5s) == 0);
  CHECK(data == pattern(4096, 8192, 1));
}

TEST_CASE("a READ stuck on a dying disk holds up no other connection of its I/O thread, new ones included") {
  Engine engine(small_config());
  attach_memory_origin(engine, "f", 1 << 20);
  attach_memory_origin(engine, "q", 1 << 20, 2);
  DyingDiskCatalog catalog(engine);
  ServedConnections served(catalog,
                           {.min_threads = 2, .max_threads = 8, .lane_limit = 2, .idle_timeout = 10s});
  const ReleasedAtExit<DyingDiskExport> release_at_exit(catalog.f());
  RawNbdClient& f = served.connect();
  REQUIRE(f.open("f"));
  REQUIRE(f.send_read(1, 0, 4096));
  for (int i = 0; i < 500 && catalog.f().stuck == 0; ++i) std::this_thread::sleep_for(10ms);
  REQUIRE(catalog.f().stuck == 1);
  std::vector<uint8_t> data;
  for (uint64_t handle = 2; handle < 5; ++handle) {
    RawNbdClient& q = served.connect();
    REQUIRE(q.open("q"));
    REQUIRE(q.send_read(handle, handle * 4096, 4096));
    REQUIRE(q.receive_read(handle, data, 4096, 5s) == 0);
    CHECK(data == pattern(4096, handle * 4096, 2));
  }
  CHECK(f.receive_read(1, data, 4096, 100ms) == -1);  // still stuck
  catalog.f().release();
  REQUIRE(f.receive_read(1, data, 4096, 5s) == 0);
  CHECK(data == pattern(4096, 0, 1));
}

TEST_CASE("READs received with a READ stuck on a dying disk are answered while it stays stuck") {
  Engine engine(small_config());
  attach_memory_origin(engine, "f", 1 << 20);
  DyingDiskCatalog catalog(engine);
  ServedConnections served(catalog,
                           {.min_threads = 2, .max_threads = 8, .lane_limit = 4, .idle_timeout = 10s});
  const ReleasedAtExit<DyingDiskExport> release_at_exit(catalog.f());
  RawNbdClient& f = served.connect();
  REQUIRE(f.open("f"));
  // Handle 1 reads the dying first 64 KiB; 2..16 read bytes in memory, received with it: one batch, which
  // once ran on one worker, one read after the other, and sent the replies together when all were done.
  std::vector<uint64_t> offsets = {0};
  for (uint64_t i = 1; i < 16; ++i) offsets.push_back(65536 + i * 4096);
  REQUIRE(f.send_reads(offsets, 4096));
  std::vector<bool> answered(offsets.size() + 1);
  std::vector<uint8_t> data;
  for (size_t i = 1; i < offsets.size(); ++i) {
    uint32_t error = 0;
    const uint64_t handle = f.receive_any_read(error, data, 4096, 5s);
    REQUIRE_MESSAGE(handle != 0, "only " << i - 1 << " of 15 READs answered while one is stuck");
    REQUIRE(handle >= 2);
    REQUIRE(handle <= offsets.size());
    CHECK_FALSE(answered[handle]);
    answered[handle] = true;
    CHECK(error == 0);
    CHECK(data == pattern(4096, offsets[handle - 1], 1));
  }
  CHECK(catalog.f().stuck == 1);
  catalog.f().release();
  uint32_t error = 0;
  REQUIRE(f.receive_any_read(error, data, 4096, 5s) == 1);
  CHECK(error == 0);
  CHECK(data == pattern(4096, 0, 1));
}

// attack13c: the quick READ's reply was queued, its worker took a stuck read next, and the workers of the
// other reads (the last taken by a helper that posted none) got stuck too: nobody found the batch taken,
// and the reply stayed queued for as long as the disk (7 of 10 runs).
TEST_CASE("a READ done before the rest of its batch got stuck is answered while they stay stuck") {
  Engine engine(small_config());
  attach_memory_origin(engine, "f", 1 << 20);
  DyingDiskCatalog catalog(engine);
  ServedConnections served(catalog,
                           {.min_threads = 2, .max_threads = 8, .lane_limit = 8, .idle_timeout = 10s});
  const ReleasedAtExit<DyingDiskExport> release_at_exit(catalog.f());
  RawNbdClient& f = served.connect();
  REQUIRE(f.open("f"));
  // Three rounds: in the third the lane is full (8 tasks) before the batch's last read is taken, so no
  // worker ever finds the batch taken while the disk stays stuck.
  for (int round = 0; round < 3; ++round) {
    // Handle 1 reads bytes in memory; 2..4 the dying first 64 KiB.
    const std::vector<uint64_t> offsets = {65536 + 4096, 0, 8192, 16384};
    const unsigned stuck_before = catalog.f().stuck;
    REQUIRE(f.send_reads(offsets, 4096));
    uint32_t error = 1;
    std::vector<uint8_t> data;
    REQUIRE_MESSAGE(f.receive_any_read(error, data, 4096, 5s) == 1,
                    "round " << round << ": the quick READ was not answered while the others were stuck");
    CHECK(error == 0);
    CHECK(data == pattern(4096, offsets[0], 1));
    const unsigned expected = std::min(stuck_before + 3, 8u - 1);  // one task slot ran the quick read
    for (int i = 0; i < 500 && catalog.f().stuck < expected; ++i) std::this_thread::sleep_for(10ms);
    // Not released: the next round's stuck reads join these.
  }
  catalog.f().release();
  for (int i = 0; i < 9; ++i) {
    uint32_t error = 1;
    std::vector<uint8_t> data;
    REQUIRE(f.receive_any_read(error, data, 4096, 5s) >= 2);
    CHECK(error == 0);
  }
}

TEST_CASE("small READs received together run on several workers when their reads wait") {
  Engine engine(small_config());
  attach_memory_origin(engine, "r", 1 << 20);
  const EngineCatalog engine_catalog(engine);
  std::shared_ptr<ServedExport> r;
  REQUIRE_OK(engine_catalog.open("r", r));
  // Reads wait in groups of 4: a disk that serves requests in parallel, as an SSD does for a queue depth of
  // 4. Run one after the other, they fail.
  auto rendezvous = std::make_shared<RendezvousExport>(std::move(r), 4);
  class Catalog final : public ExportCatalog {
   public:
    explicit Catalog(std::shared_ptr<ServedExport> only) : only_(std::move(only)) {}
    std::vector<std::string> export_names() const override { return {"r"}; }
    Status open(const std::string&, std::shared_ptr<ServedExport>& out) const override {
      out = only_;
      return Status::ok();
    }

   private:
    std::shared_ptr<ServedExport> only_;
  } catalog(rendezvous);
  ServedConnections served(catalog,
                           {.min_threads = 1, .max_threads = 8, .lane_limit = 4, .idle_timeout = 10s});
  RawNbdClient& client = served.connect();
  REQUIRE(client.open("r"));
  const std::vector<uint64_t> offsets = {0, 8192, 16384, 24576, 32768, 40960, 49152, 57344};
  REQUIRE(client.send_reads(offsets, 4096));
  std::vector<uint8_t> data;
  for (size_t i = 0; i < offsets.size(); ++i) {
    uint32_t error = 1;
    const uint64_t handle = client.receive_any_read(error, data, 4096, 15s);
    REQUIRE(handle >= 1);
    REQUIRE(handle <= offsets.size());
    CHECK_MESSAGE(error == 0, "READ " << handle << " ran with fewer than 4 reads at once");
    if (error == 0) CHECK(data == pattern(4096, offsets[handle - 1], 1));
  }
  MutexLock lock(rendezvous->mutex_);
  CHECK(rendezvous->served_alone == 0);
}
