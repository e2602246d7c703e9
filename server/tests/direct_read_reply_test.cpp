// SPDX-License-Identifier: BSD-3-Clause
// direct_read_reply_test.cpp — READ replies over an origin opened with cache none (O_DIRECT): aligned
// requests of the origin and of its image are read by the device straight into the reply (direct I/O's
// bounce buffer is not used), for both reply kinds and for buffers of the reply pool; unaligned ones still
// give the file's bytes, through the bounce buffer.
#include <doctest/doctest.h>

#include <cstring>
#include <utility>
#include <vector>

#include "direct_io.h"
#include "engine_exports.h"
#include "file_device.h"
#include "nbd_protocol.h"
#include "request_executor.h"
#include "test_support.h"

using namespace nbdsnap;
using namespace nbdsnap::nbd;
using nbdsnap::test::TempDir;

namespace {

NegotiatedSession direct_session_for(std::shared_ptr<ServedExport> target, bool structured) {
  NegotiatedSession s;
  s.structured_replies = structured;
  s.transmission_flags = transmission_flags(target->features(), structured);
  s.target = std::move(target);
  return s;
}

// The data of a successful READ reply (OFFSET_DATA when structured: the origin's pattern has no zero run).
std::vector<uint8_t> reply_data(const Reply& reply, bool structured) {
  const size_t header = structured ? kStructuredHeaderSize + 8 : kSimpleReplySize;
  REQUIRE(reply.size() > header);
  if (structured) REQUIRE(get_u16(reply.data() + 6) == kReplyTypeOffsetData);
  return {reply.data() + header, reply.data() + reply.size()};
}

}  // namespace

TEST_CASE("aligned reads of an O_DIRECT origin and of its image go straight into the reply") {
  TempDir dir;
  const uint64_t size = 4 * MiB;
  std::unique_ptr<FileDevice> file;
  bool created = false;
  const Status opened = FileDevice::create(dir.file("disk"), size, file, created, FileCache::none);
  if (opened.code() == Errc::not_supported) {
    MESSAGE("skipped: " << opened.message());
    return;
  }
  REQUIRE_OK(opened);
  REQUIRE(file->direct_io() != nullptr);
  const DirectFileIo& io = *file->direct_io();
  REQUIRE(io.alignment().offset <= 4096);  // the requests below are aligned for it
  std::vector<uint8_t> model(size);
  for (uint64_t i = 0; i < size; ++i) model[i] = test::pattern_byte(i, 1) | 1;  // never zero
  REQUIRE_OK(file->pwrite(model.data(), size, 0, false));
  std::shared_ptr<FileDevice> device(std::move(file));

  EngineConfig config = test::small_config(16);
  config.storage_cache = FileCache::none;
  Engine engine(config);
  REQUIRE_OK(engine.attach_origin("disk0", device, false));
  REQUIRE_OK(engine.create_snapshot("s", test::snapshot_options({"disk0"}, dir, "diff", 8 * MiB)));
  REQUIRE_OK(engine.take_snapshot("s"));
  EngineCatalog catalog(engine);

  const std::vector<std::pair<uint64_t, uint32_t>> aligned{
      {0, 4096}, {64 << 10, 64 << 10}, {128 << 10, 256 << 10}, {MiB, uint32_t(MiB)}, {12288, 8192}};
  const std::vector<std::pair<uint64_t, uint32_t>> unaligned{{1, 4096}, {4095, 8193}, {MiB - 7, 100}};
  for (const std::string name : {"disk0", "disk0@s"}) {
    std::shared_ptr<ServedExport> target;
    REQUIRE_OK(catalog.open(name, target));
    for (const bool structured : {false, true}) {
      CAPTURE(name);
      CAPTURE(structured);
      RequestExecutor executor(direct_session_for(target, structured));
      ReplyBufferPool pool;
      const uint64_t bounced = io.bounced_requests();
      for (int round = 0; round < 2; ++round) {  // the second round takes the pool's recycled buffers
        for (const auto& range : aligned) {
          // Named copies: CAPTURE is a lambda, and clang before 16 cannot capture a structured binding.
          const uint64_t offset = range.first;
          const uint32_t length = range.second;
          CAPTURE(offset);
          Reply reply = executor.execute({kRequestMagic, 0, kCmdRead, 1, offset, length}, {}, &pool);
          CHECK(reply_data(reply, structured) ==
                std::vector<uint8_t>(model.begin() + ptrdiff_t(offset),
                                     model.begin() + ptrdiff_t(offset + length)));
          pool.recycle(std::move(reply));
        }
      }
      CHECK(io.bounced_requests() == bounced);
      for (const auto& range : unaligned) {
        const uint64_t offset = range.first;
        const uint32_t length = range.second;
        CAPTURE(offset);
        const Reply reply = executor.execute({kRequestMagic, 0, kCmdRead, 1, offset, length}, {}, &pool);
        CHECK(reply_data(reply, structured) ==
              std::vector<uint8_t>(model.begin() + ptrdiff_t(offset),
                                   model.begin() + ptrdiff_t(offset + length)));
      }
      CHECK(io.bounced_requests() == bounced + unaligned.size());  // the counter does count
    }
  }
}
