// SPDX-License-Identifier: BSD-3-Clause
// nbd_protocol.cpp — encoding and decoding of NBD wire structures (see nbd_protocol.h).
#include "nbd_protocol.h"

#include <cerrno>
#include <cstring>

namespace nbdsnap::nbd {

uint32_t nbd_error_from_errno(int err) {
  switch (err) {
    case 0:
      return 0;
    case EPERM:
    case EROFS:
    case EACCES:
      return kEperm;
    case EIO:
      return kEio;
    case ENOMEM:
      return kEnomem;
    case EINVAL:
    case ERANGE:
      return kEinval;
    case ENOSPC:
    case EDQUOT:
    case EFBIG:
      return kEnospc;
    case EOVERFLOW:
      return kEoverflow;
    case ENOTSUP:
      return kEnotsup;  // == EOPNOTSUPP on Linux
    case ESHUTDOWN:
      return kEshutdown;
    default:
      return kEio;  // ENOENT (a destroyed image), EBUSY, corrupted snapshots...: the data is unavailable
  }
}

void put_u16(std::vector<uint8_t>& out, uint16_t v) {
  out.push_back(uint8_t(v >> 8));
  out.push_back(uint8_t(v));
}
void put_u32(std::vector<uint8_t>& out, uint32_t v) {
  for (int shift = 24; shift >= 0; shift -= 8) out.push_back(uint8_t(v >> shift));
}
void put_u64(std::vector<uint8_t>& out, uint64_t v) {
  for (int shift = 56; shift >= 0; shift -= 8) out.push_back(uint8_t(v >> shift));
}
void put_bytes(std::vector<uint8_t>& out, std::string_view bytes) {
  out.insert(out.end(), bytes.begin(), bytes.end());
}

uint16_t get_u16(const uint8_t* p) {
  return uint16_t((p[0] << 8) | p[1]);
}
uint32_t get_u32(const uint8_t* p) {
  return (uint32_t(p[0]) << 24) | (uint32_t(p[1]) << 16) | (uint32_t(p[2]) << 8) | uint32_t(p[3]);
}
uint64_t get_u64(const uint8_t* p) {
  return (uint64_t(get_u32(p)) << 32) | get_u32(p + 4);
}
void store_u32(uint8_t* p, uint32_t v) {
  for (int i = 0; i < 4; ++i) p[i] = uint8_t(v >> (24 - 8 * i));
}
void store_u64(uint8_t* p, uint64_t v) {
  for (int i = 0; i < 8; ++i) p[i] = uint8_t(v >> (56 - 8 * i));
}

bool FieldReader::u16(uint16_t& out) {
  if (remaining() < 2) return false;
  out = get_u16(data_.data() + pos_);
  pos_ += 2;
  return true;
}
bool FieldReader::u32(uint32_t& out) {
  if (remaining() < 4) return false;
  out = get_u32(data_.data() + pos_);
  pos_ += 4;
  return true;
}
bool FieldReader::string(uint32_t length, std::string& out) {
  if (length > remaining()) return false;
  out.assign(reinterpret_cast<const char*>(data_.data() + pos_), length);
  pos_ += length;
  return true;
}

OptionHeader parse_option_header(std::span<const uint8_t, kOptionHeaderSize> bytes) {
  return {get_u64(bytes.data()), get_u32(bytes.data() + 8), get_u32(bytes.data() + 12)};
}

std::vector<uint8_t> encode_greeting(uint16_t handshake_flags) {
  std::vector<uint8_t> out;
  put_u64(out, kInitPasswd);
  put_u64(out, kOptionMagic);
  put_u16(out, handshake_flags);
  return out;
}

void append_option_reply(std::vector<uint8_t>& out, uint32_t option, uint32_t reply_type,
                         std::span<const uint8_t> payload) {
  put_u64(out, kOptionReplyMagic);
  put_u32(out, option);
  put_u32(out, reply_type);
  put_u32(out, uint32_t(payload.size()));
  out.insert(out.end(), payload.begin(), payload.end());
}

void append_option_error(std::vector<uint8_t>& out, uint32_t option, uint32_t reply_type,
                         std::string_view message) {
  message = message.substr(0, kMaxStringLength);
  append_option_reply(out, option, reply_type,
                      {reinterpret_cast<const uint8_t*>(message.data()), message.size()});
}

std::vector<uint8_t> encode_export_name_reply(uint64_t size, uint16_t flags, bool no_zeroes) {
  std::vector<uint8_t> out;
  put_u64(out, size);
  put_u16(out, flags);
  if (!no_zeroes) out.resize(out.size() + 124, 0);
  return out;
}

RequestHeader parse_request_header(std::span<const uint8_t, kRequestHeaderSize> bytes) {
  const uint8_t* p = bytes.data();
  return {get_u32(p), get_u16(p + 4), get_u16(p + 6), get_u64(p + 8), get_u64(p + 16), get_u32(p + 24)};
}

void append_simple_reply(std::vector<uint8_t>& out, uint32_t error, uint64_t handle) {
  put_u32(out, kSimpleReplyMagic);
  put_u32(out, error);
  put_u64(out, handle);
}

void append_structured_header(std::vector<uint8_t>& out, uint16_t flags, uint16_t type, uint64_t handle,
                              uint32_t length) {
  put_u32(out, kStructuredReplyMagic);
  put_u16(out, flags);
  put_u16(out, type);
  put_u64(out, handle);
  put_u32(out, length);
}

void append_structured_error(std::vector<uint8_t>& out, uint64_t handle, uint32_t error,
                             std::string_view message) {
  message = message.substr(0, kMaxStringLength);
  append_structured_header(out, kReplyFlagDone, kReplyTypeError, handle, uint32_t(6 + message.size()));
  put_u32(out, error);
  put_u16(out, uint16_t(message.size()));
  put_bytes(out, message);
}

void append_structured_none(std::vector<uint8_t>& out, uint64_t handle) {
  append_structured_header(out, kReplyFlagDone, kReplyTypeNone, handle, 0);
}

void append_offset_hole(std::vector<uint8_t>& out, uint64_t handle, uint64_t offset, uint32_t length,
                        bool done) {
  append_structured_header(out, done ? kReplyFlagDone : 0, kReplyTypeOffsetHole, handle, 12);
  put_u64(out, offset);
  put_u32(out, length);
}

void append_block_status(std::vector<uint8_t>& out, uint64_t handle, uint32_t context_id,
                         std::span<const BlockStatusDescriptor> descriptors, bool done) {
  append_structured_header(out, done ? kReplyFlagDone : 0, kReplyTypeBlockStatus, handle,
                           uint32_t(4 + 8 * descriptors.size()));
  put_u32(out, context_id);
  for (const auto& d : descriptors) {
    put_u32(out, d.length);
    put_u32(out, d.flags);
  }
}

const char* command_name(uint16_t type) {
  switch (type) {
    case kCmdRead:
      return "READ";
    case kCmdWrite:
      return "WRITE";
    case kCmdDisc:
      return "DISC";
    case kCmdFlush:
      return "FLUSH";
    case kCmdTrim:
      return "TRIM";
    case kCmdCache:
      return "CACHE";
    case kCmdWriteZeroes:
      return "WRITE_ZEROES";
    case kCmdBlockStatus:
      return "BLOCK_STATUS";
    default:
      return "unknown";
  }
}

const char* option_name(uint32_t option) {
  switch (option) {
    case kOptExportName:
      return "EXPORT_NAME";
    case kOptAbort:
      return "ABORT";
    case kOptList:
      return "LIST";
    case kOptStartTls:
      return "STARTTLS";
    case kOptInfo:
      return "INFO";
    case kOptGo:
      return "GO";
    case kOptStructuredReply:
      return "STRUCTURED_REPLY";
    case kOptListMetaContext:
      return "LIST_META_CONTEXT";
    case kOptSetMetaContext:
      return "SET_META_CONTEXT";
    default:
      return "unknown";
  }
}

}  // namespace nbdsnap::nbd
