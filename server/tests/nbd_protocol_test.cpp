// SPDX-License-Identifier: BSD-3-Clause
// nbd_protocol_test.cpp — byte layouts of NBD structures and the errno mapping.
#include <doctest/doctest.h>

#include <cerrno>

#include "nbd_protocol.h"

using namespace nbdsnap::nbd;

TEST_CASE("greeting_is_nbdmagic_ihaveopt_and_handshake_flags") {
  const auto g = encode_greeting(kFlagFixedNewstyle | kFlagNoZeroes);
  REQUIRE(g.size() == 18);
  CHECK(std::string(g.begin(), g.begin() + 8) == "NBDMAGIC");
  CHECK(std::string(g.begin() + 8, g.begin() + 16) == "IHAVEOPT");
  CHECK(get_u16(g.data() + 16) == 3);
}

TEST_CASE("request_header_fields_are_big_endian") {
  std::vector<uint8_t> raw;
  put_u32(raw, kRequestMagic);
  put_u16(raw, kCmdFlagFua);
  put_u16(raw, kCmdWrite);
  put_u64(raw, 0x0102030405060708ull);
  put_u64(raw, 1ull << 40);
  put_u32(raw, 4096);
  REQUIRE(raw.size() == kRequestHeaderSize);
  const RequestHeader h =
      parse_request_header(std::span<const uint8_t, kRequestHeaderSize>(raw.data(), kRequestHeaderSize));
  CHECK(h.magic == kRequestMagic);
  CHECK(h.flags == kCmdFlagFua);
  CHECK(h.type == kCmdWrite);
  CHECK(h.handle == 0x0102030405060708ull);
  CHECK(h.offset == 1ull << 40);
  CHECK(h.length == 4096);
}

TEST_CASE("export_name_reply_has_124_zeroes_unless_no_zeroes") {
  CHECK(encode_export_name_reply(1, 1, false).size() == 8 + 2 + 124);
  CHECK(encode_export_name_reply(1, 1, true).size() == 8 + 2);
}

TEST_CASE("structured_error_carries_errno_and_message") {
  std::vector<uint8_t> out;
  append_structured_error(out, 7, kEperm, "read-only");
  REQUIRE(out.size() == kStructuredHeaderSize + 6 + 9);
  CHECK(get_u32(out.data()) == kStructuredReplyMagic);
  CHECK(get_u16(out.data() + 4) == kReplyFlagDone);
  CHECK(get_u16(out.data() + 6) == kReplyTypeError);
  CHECK(get_u64(out.data() + 8) == 7);
  CHECK(get_u32(out.data() + 16) == 6 + 9);
  CHECK(get_u32(out.data() + 20) == kEperm);
  CHECK(get_u16(out.data() + 24) == 9);
}

TEST_CASE("block_status_chunk_is_context_id_then_descriptors") {
  std::vector<uint8_t> out;
  const BlockStatusDescriptor d[] = {{4096, kStateHole | kStateZero}, {512, 0}};
  append_block_status(out, 9, 2, d, true);
  REQUIRE(out.size() == kStructuredHeaderSize + 4 + 16);
  CHECK(get_u32(out.data() + 16) == 20);
  CHECK(get_u32(out.data() + 20) == 2);
  CHECK(get_u32(out.data() + 24) == 4096);
  CHECK(get_u32(out.data() + 28) == 3);
}

TEST_CASE("errno_values_map_to_the_nbd_error_set") {
  CHECK(nbd_error_from_errno(EROFS) == kEperm);
  CHECK(nbd_error_from_errno(EPERM) == kEperm);
  CHECK(nbd_error_from_errno(ENOSPC) == kEnospc);
  CHECK(nbd_error_from_errno(EDQUOT) == kEnospc);
  CHECK(nbd_error_from_errno(EFBIG) == kEnospc);
  CHECK(nbd_error_from_errno(EINVAL) == kEinval);
  CHECK(nbd_error_from_errno(EOVERFLOW) == kEoverflow);
  CHECK(nbd_error_from_errno(EOPNOTSUPP) == kEnotsup);
  CHECK(nbd_error_from_errno(ENOENT) == kEio);
  CHECK(nbd_error_from_errno(EIO) == kEio);
}

TEST_CASE("field_reader_refuses_to_read_past_the_end") {
  const uint8_t data[] = {0, 0, 0, 5, 'a', 'b'};
  FieldReader reader(data);
  uint32_t length = 0;
  std::string s;
  REQUIRE(reader.u32(length));
  CHECK_FALSE(reader.string(length, s));
  CHECK(reader.string(2, s));
  CHECK(s == "ab");
  uint16_t v = 0;
  CHECK_FALSE(reader.u16(v));
}
