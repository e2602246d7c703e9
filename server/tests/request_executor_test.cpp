// SPDX-License-Identifier: BSD-3-Clause
// request_executor_test.cpp — validation and replies of transmission requests on a fake export.
#include <doctest/doctest.h>

#include <algorithm>
#include <bit>
#include <cstring>

#include "fake_export.h"
#include "request_executor.h"

using namespace nbdsnap;
using namespace nbdsnap::nbd;
using nbdsnap::testing::FakeExport;

namespace {

NegotiatedSession session_for(std::shared_ptr<FakeExport> e, bool structured,
                              std::vector<MetaContext> contexts = {}) {
  NegotiatedSession s;
  s.structured_replies = structured;
  s.transmission_flags = transmission_flags(e->features(), structured);
  s.contexts = std::move(contexts);
  s.target = std::move(e);
  return s;
}

RequestHeader request(uint16_t type, uint64_t offset, uint32_t length, uint16_t flags = 0) {
  return {kRequestMagic, flags, type, 77, offset, length};
}

uint32_t validate(const RequestExecutor& x, const RequestHeader& r) {
  std::string why;
  return x.validate(r, why);
}

}  // namespace

TEST_CASE("requests_beyond_the_end_are_enospc_for_writes_and_einval_otherwise") {
  auto e = std::make_shared<FakeExport>("d", 1 << 20, testing::writable_features());
  RequestExecutor x(session_for(e, true));
  CHECK(validate(x, request(kCmdWrite, (1 << 20) - 512, 1024)) == kEnospc);
  CHECK(validate(x, request(kCmdWriteZeroes, 1 << 20, 1)) == kEnospc);
  CHECK(validate(x, request(kCmdRead, (1 << 20) - 512, 1024)) == kEinval);
  CHECK(validate(x, request(kCmdTrim, ~0ull - 10, 100)) == kEinval);
  CHECK(validate(x, request(kCmdRead, 0, 4096)) == 0);
}

TEST_CASE("reads_and_writes_over_32_mib_are_einval") {
  auto e = std::make_shared<FakeExport>("d", 1ull << 30, testing::writable_features());
  RequestExecutor x(session_for(e, true));
  CHECK(validate(x, request(kCmdRead, 0, (32u << 20) + 1)) == kEinval);
  CHECK(validate(x, request(kCmdWrite, 0, (32u << 20) + 1)) == kEinval);
  CHECK(validate(x, request(kCmdTrim, 0, 64u << 20)) == 0);
}

TEST_CASE("writes_to_a_read_only_export_are_eperm") {
  auto e = std::make_shared<FakeExport>("d@s", 1 << 20, ExportFeatures{});
  RequestExecutor x(session_for(e, true));
  CHECK(validate(x, request(kCmdWrite, 0, 512)) == kEperm);
  CHECK(validate(x, request(kCmdTrim, 0, 512)) == kEperm);
  CHECK(validate(x, request(kCmdWriteZeroes, 0, 512)) == kEperm);
  CHECK(validate(x, request(kCmdRead, 0, 512, kCmdFlagFua)) == kEinval);  // FUA not advertised on images
}

TEST_CASE("unknown_commands_and_misplaced_flags_are_einval") {
  auto e = std::make_shared<FakeExport>("d", 1 << 20, testing::writable_features());
  RequestExecutor x(session_for(e, false));
  CHECK(validate(x, request(42, 0, 0)) == kEinval);
  CHECK(validate(x, request(kCmdRead, 0, 512, kCmdFlagDf)) == kEinval);  // DF needs structured replies
  CHECK(validate(x, request(kCmdWrite, 0, 512, kCmdFlagNoHole)) == kEinval);
  CHECK(validate(x, request(kCmdBlockStatus, 0, 512)) == kEinval);  // no contexts
  CHECK(validate(x, request(kCmdRead, 0, 512, kCmdFlagFua)) == 0);
}

TEST_CASE("simple_read_reply_is_header_then_data") {
  auto e = std::make_shared<FakeExport>("d", 1 << 20, testing::writable_features());
  RequestExecutor x(session_for(e, false));
  std::vector<uint8_t> data(512, 0xab);
  auto reply = x.execute(request(kCmdWrite, 4096, 512), data);
  CHECK(reply.size() == kSimpleReplySize);
  CHECK(get_u32(reply.data() + 4) == 0);
  reply = x.execute(request(kCmdRead, 4096, 512), {});
  REQUIRE(reply.size() == kSimpleReplySize + 512);
  CHECK(get_u32(reply.data()) == kSimpleReplyMagic);
  CHECK(get_u64(reply.data() + 8) == 77);
  CHECK(reply[kSimpleReplySize] == 0xab);
}

TEST_CASE("structured_read_of_zeroes_is_one_hole_chunk") {
  auto e = std::make_shared<FakeExport>("d", 1 << 20, testing::writable_features());
  RequestExecutor x(session_for(e, true));
  auto reply = x.execute(request(kCmdRead, 0, 65536), {});
  REQUIRE(reply.size() == kStructuredHeaderSize + 12);
  CHECK(get_u16(reply.data() + 6) == kReplyTypeOffsetHole);
  CHECK(get_u32(reply.data() + 28) == 65536);
}

TEST_CASE("structured_read_of_data_is_one_offset_data_chunk_marked_done") {
  auto e = std::make_shared<FakeExport>("d", 1 << 20, testing::writable_features());
  RequestExecutor x(session_for(e, true));
  std::vector<uint8_t> data(100, 7);
  (void)x.execute(request(kCmdWrite, 1000, 100), data);
  auto reply = x.execute(request(kCmdRead, 1000, 100, kCmdFlagDf), {});
  REQUIRE(reply.size() == kStructuredHeaderSize + 8 + 100);
  CHECK(get_u16(reply.data() + 4) == kReplyFlagDone);
  CHECK(get_u16(reply.data() + 6) == kReplyTypeOffsetData);
  CHECK(get_u64(reply.data() + 20) == 1000);
  CHECK(reply[28] == 7);
}

TEST_CASE("failed_structured_read_is_an_error_chunk_with_eio") {
  auto e = std::make_shared<FakeExport>("d", 1 << 20, testing::writable_features());
  e->fail_reads = true;
  RequestExecutor x(session_for(e, true));
  auto reply = x.execute(request(kCmdRead, 0, 512), {});
  CHECK(get_u16(reply.data() + 6) == kReplyTypeError);
  CHECK(get_u32(reply.data() + 20) == kEio);
}

TEST_CASE("fast_zero_with_no_hole_is_enotsup_and_plain_zero_may_trim") {
  auto e = std::make_shared<FakeExport>("d", 1 << 20, testing::writable_features());
  RequestExecutor x(session_for(e, true));
  auto reply = x.execute(request(kCmdWriteZeroes, 0, 4096, kCmdFlagFastZero | kCmdFlagNoHole), {});
  CHECK(get_u32(reply.data() + 20) == kEnotsup);
  reply = x.execute(request(kCmdWriteZeroes, 0, 4096), {});
  CHECK(get_u32(reply.data() + 4) == 0);
  CHECK(e->last_may_trim);
  (void)x.execute(request(kCmdWriteZeroes, 0, 4096, kCmdFlagNoHole), {});
  CHECK_FALSE(e->last_may_trim);
}

TEST_CASE("block_status_answers_one_chunk_per_context_last_one_done") {
  auto e = std::make_shared<FakeExport>("d@s", 1 << 20, ExportFeatures{}, std::vector<std::string>{"c1"});
  e->changed = {{65536, 65536}};
  MetaContext base{1, MetaContextKind::base_allocation, "base:allocation", ""};
  MetaContext dirty{2, MetaContextKind::dirty_bitmap, "qemu:dirty-bitmap:c1", "c1"};
  RequestExecutor x(session_for(e, true, {base, dirty}));
  auto reply = x.execute(request(kCmdBlockStatus, 0, 1 << 20), {});
  // chunk 1: base:allocation, one descriptor (all hole+zero on an empty fake)
  CHECK(get_u16(reply.data() + 4) == 0);
  CHECK(get_u32(reply.data() + 20) == 1);
  const size_t second = kStructuredHeaderSize + get_u32(reply.data() + 16);
  CHECK(get_u16(reply.data() + second + 4) == kReplyFlagDone);
  CHECK(get_u32(reply.data() + second + 20) == 2);
  CHECK(get_u32(reply.data() + second + 16) == 4 + 3 * 8);
  CHECK(get_u32(reply.data() + second + 24) == 65536);
  CHECK(get_u32(reply.data() + second + 28) == 0);
  CHECK(get_u32(reply.data() + second + 36) == kStateDirty);
  auto one = x.execute(request(kCmdBlockStatus, 0, 1 << 20, kCmdFlagReqOne), {});
  CHECK(get_u32(one.data() + 16) == 4 + 8);
}

// With --cache none (O_DIRECT) an aligned read goes straight into the reply only when the reply's data part
// starts on an aligned address; right behind a 16 or 20 byte header it never did, and every read went through
// direct I/O's bounce buffer and a copy. Both reply kinds, fresh buffers and buffers of the pool.
TEST_CASE("read_reply_data_starts_on_an_aligned_address_fresh_and_pooled") {
  auto e = std::make_shared<FakeExport>("d", 4 << 20, testing::writable_features());
  std::vector<uint8_t> pattern(2 << 20);
  for (size_t i = 0; i < pattern.size(); ++i) pattern[i] = uint8_t(i * 7 + 1);  // no zero run: OFFSET_DATA
  REQUIRE(e->write(pattern.data(), pattern.size(), 0, false).is_ok());
  for (const bool structured : {false, true}) {
    CAPTURE(structured);
    RequestExecutor x(session_for(e, structured));
    ReplyBufferPool pool;
    const size_t header = structured ? kStructuredHeaderSize + 8 : kSimpleReplySize;
    for (const uint32_t length : {512u, 1000u, 4096u, 12288u, 65536u, 262144u, 1u << 20}) {
      CAPTURE(length);
      const size_t alignment = std::min<size_t>(4096, std::bit_floor(length));
      CHECK(Reply::data_alignment(length) == alignment);
      for (int round = 0; round < 3; ++round) {  // later rounds take recycled buffers of 64 KiB and more
        Reply reply = x.execute(request(kCmdRead, 4096, length), {}, &pool);
        REQUIRE(reply.size() == header + length);
        const uint8_t* data = reply.data() + header;
        CHECK(reinterpret_cast<uintptr_t>(data) % alignment == 0);
        CHECK(std::memcmp(data, pattern.data() + 4096, length) == 0);
        pool.recycle(std::move(reply));
      }
      Reply unpooled = x.execute(request(kCmdRead, 0, length), {});
      CHECK(reinterpret_cast<uintptr_t>(unpooled.data() + header) % alignment == 0);
    }
  }
}

TEST_CASE("the_reply_pool_keeps_aligned_read_buffers_within_its_limits") {
  ReplyBufferPool pool;
  const size_t length = 256 << 10;
  // A recycled buffer serves the other reply kind too, its data aligned as well.
  Reply simple = pool.make(kSimpleReplySize, length);
  const uint8_t* data = simple.data() + kSimpleReplySize;
  CHECK(reinterpret_cast<uintptr_t>(data) % Reply::kMaxDataAlignment == 0);
  pool.recycle(std::move(simple));
  CHECK(pool.kept() == 1);
  Reply structured = pool.make(kStructuredHeaderSize + 8, length);
  CHECK(pool.kept() == 0);
  const uint8_t* structured_data = structured.data() + kStructuredHeaderSize + 8;
  CHECK(reinterpret_cast<uintptr_t>(structured_data) % Reply::kMaxDataAlignment == 0);
  CHECK(structured_data + Reply::kMaxDataAlignment >= data);  // the same buffer: at most one page apart
  CHECK(structured_data <= data + Reply::kMaxDataAlignment);
  CHECK(structured.size() == kStructuredHeaderSize + 8 + length);
  pool.recycle(std::move(structured));
  // The byte limit counts what the buffers hold, the pads in front of the headers included.
  std::vector<Reply> replies;
  for (size_t i = 0; i < ReplyBufferPool::kMaxBuffers; ++i)
    replies.push_back(pool.make(kSimpleReplySize, length));
  for (Reply& reply : replies) pool.recycle(std::move(reply));
  CHECK(pool.kept() == ReplyBufferPool::kMaxBytes / Reply::aligned_capacity(length));
  // Buffers of other replies (not made for READ data) are never kept, and leave the kept ones alone.
  pool.recycle(Reply(length + kSimpleReplySize));
  CHECK(pool.kept() == ReplyBufferPool::kMaxBytes / Reply::aligned_capacity(length));
}
