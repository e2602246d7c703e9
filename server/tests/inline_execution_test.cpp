// SPDX-License-Identifier: BSD-3-Clause
// inline_execution_test.cpp — what nbdsnapd's I/O thread may run itself: requests that never wait for the
// engine (connection.cpp). A write that must copy a chunk, or any write while a take holds the origin, is
// refused without waiting and without changing anything, so the connection hands it to a worker.
#include <doctest/doctest.h>

#include <atomic>
#include <chrono>
#include <thread>

#include "engine_exports.h"
#include "request_executor.h"
#include "test_support.h"

using namespace nbdsnap;
using namespace nbdsnap::nbd;
using namespace nbdsnap::test;

namespace {

NegotiatedSession inline_session_for(std::shared_ptr<ServedExport> e) {
  NegotiatedSession s;
  s.structured_replies = true;
  s.transmission_flags = transmission_flags(e->features(), true);
  s.target = std::move(e);
  return s;
}

RequestHeader inline_request(uint16_t type, uint64_t offset, uint32_t length, uint16_t flags = 0) {
  return {kRequestMagic, flags, type, 7, offset, length};
}

struct TakenOrigin {
  TakenOrigin() : engine(small_config(16)) {
    attach_memory_origin(engine, "d", MiB);
    REQUIRE_OK(engine.create_snapshot("s", snapshot_options({"d"}, dir, "diff", 2 * MiB)));
    REQUIRE_OK(engine.take_snapshot("s"));
    origin = engine.find_origin("d");
  }
  TempDir dir;
  Engine engine;
  std::shared_ptr<Origin> origin;
};

// A front end cannot reach an origin's tracker or CBT (they are the engine's: CBT changes go through Engine's
// calls, under its locks). Checked where a front end stands, in a server test.
template <typename T>
concept ReachesTracker = requires(T& origin) {
  origin.tracker();
};
template <typename T>
concept ReachesCbt = requires(T& origin) {
  origin.cbt();
};
static_assert(!ReachesTracker<Origin> && !ReachesCbt<Origin>, "Origin's tracker and CBT are private to core");

}  // namespace

TEST_CASE("a write that must copy a chunk is not run without waiting, once the chunk is copied it is") {
  TakenOrigin t;
  RequestExecutor x(inline_session_for(std::make_shared<OriginExport>(t.origin)));
  const auto data = pattern(4 * KiB, 0, 2);
  CHECK_FALSE(x.execute_without_waiting(inline_request(kCmdWrite, 0, 4 * KiB), data).has_value());
  CHECK(read_origin(*t.origin, 4 * KiB, 0) == pattern(4 * KiB, 0, 1));  // nothing changed
  const Reply copied = x.execute(inline_request(kCmdWrite, 0, 4 * KiB), data);
  CHECK(copied.size() > 0);
  CHECK(x.execute_without_waiting(inline_request(kCmdWrite, 8 * KiB, 4 * KiB), data)
            .has_value());  // same chunk
  CHECK(x.execute_without_waiting(inline_request(kCmdRead, 0, 4 * KiB), {}).has_value());
  CHECK_FALSE(
      x.execute_without_waiting(inline_request(kCmdFlush, 0, 0), {}).has_value());  // only READ and WRITE
}

TEST_CASE("no write runs without waiting while a take holds the origin") {
  TakenOrigin t;
  RequestExecutor x(inline_session_for(std::make_shared<OriginExport>(t.origin)));
  const auto data = pattern(4 * KiB, 0, 2);
  REQUIRE(x.execute(inline_request(kCmdWrite, 0, 4 * KiB), data).size() > 0);  // chunk 0 copied
  {
    IoGate::Freeze take(OriginTestAccess::write_gate(*t.origin));  // as Engine::take_snapshot does
    CHECK_FALSE(x.execute_without_waiting(inline_request(kCmdWrite, 0, 4 * KiB), data).has_value());
    CHECK(
        x.execute_without_waiting(inline_request(kCmdRead, 0, 4 * KiB), {}).has_value());  // reads never wait
  }
  CHECK(x.execute_without_waiting(inline_request(kCmdWrite, 0, 4 * KiB), data).has_value());
}

TEST_CASE("image reads run without waiting unless a chunk is being copied, image writes never do") {
  TakenOrigin t;
  std::shared_ptr<Image> image;
  REQUIRE_OK(t.engine.find_image("d", "s", image));
  RequestExecutor reads(inline_session_for(std::make_shared<ImageExport>(image, "d@s", "")));
  const std::optional<Reply> reply = reads.execute_without_waiting(inline_request(kCmdRead, 0, 4 * KiB), {});
  REQUIRE(reply.has_value());
  CHECK(reply->size() > 4 * KiB);

  TempDir dir;
  Engine engine(small_config(16));
  attach_memory_origin(engine, "w", MiB);
  SnapshotOptions options = snapshot_options({"w"}, dir, "diff", 2 * MiB);
  options.writable = true;
  REQUIRE_OK(engine.create_snapshot("s", options));
  REQUIRE_OK(engine.take_snapshot("s"));
  std::shared_ptr<Image> writable;
  REQUIRE_OK(engine.find_image("w", "s", writable));
  RequestExecutor writes(inline_session_for(std::make_shared<ImageExport>(writable, "w@s", "")));
  const auto data = pattern(4 * KiB, 0, 3);
  CHECK_FALSE(writes.execute_without_waiting(inline_request(kCmdWrite, 0, 4 * KiB), data).has_value());
}
