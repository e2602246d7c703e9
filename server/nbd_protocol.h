// SPDX-License-Identifier: BSD-3-Clause
// nbd_protocol.h — the NBD wire format: constants, big-endian fields, request headers and reply encoding.
//
// Pure byte-level code with no sockets, so a fuzzer can drive it with buffers. The values follow the NBD
// protocol specification (doc/proto.md of the NetworkBlockDevice project); names keep the spec's spelling.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace nbdsnap::nbd {

// --- magics ---
inline constexpr uint64_t kInitPasswd = 0x4e42444d41474943ull;   // "NBDMAGIC"
inline constexpr uint64_t kOptionMagic = 0x49484156454f5054ull;  // "IHAVEOPT"
// Follows NBDMAGIC instead of IHAVEOPT in the oldstyle greeting (the export's size and flags come with it;
// nbdsnapd never sends it, the filter's own client recognises it from an nbdkit started with -o).
inline constexpr uint64_t kOldstyleMagic = 0x0000420281861253ull;
inline constexpr uint64_t kOptionReplyMagic = 0x0003e889045565a9ull;
inline constexpr uint32_t kRequestMagic = 0x25609513u;
inline constexpr uint32_t kSimpleReplyMagic = 0x67446698u;
inline constexpr uint32_t kStructuredReplyMagic = 0x668e33efu;

// --- handshake flags (server) and client flags ---
inline constexpr uint16_t kFlagFixedNewstyle = 1u << 0;
inline constexpr uint16_t kFlagNoZeroes = 1u << 1;
inline constexpr uint32_t kClientFlagFixedNewstyle = 1u << 0;
inline constexpr uint32_t kClientFlagNoZeroes = 1u << 1;

// --- transmission flags ---
inline constexpr uint16_t kFlagHasFlags = 1u << 0;
inline constexpr uint16_t kFlagReadOnly = 1u << 1;
inline constexpr uint16_t kFlagSendFlush = 1u << 2;
inline constexpr uint16_t kFlagSendFua = 1u << 3;
inline constexpr uint16_t kFlagRotational = 1u << 4;
inline constexpr uint16_t kFlagSendTrim = 1u << 5;
inline constexpr uint16_t kFlagSendWriteZeroes = 1u << 6;
inline constexpr uint16_t kFlagSendDf = 1u << 7;
inline constexpr uint16_t kFlagCanMultiConn = 1u << 8;
inline constexpr uint16_t kFlagSendCache = 1u << 10;
inline constexpr uint16_t kFlagSendFastZero = 1u << 11;

// --- options ---
inline constexpr uint32_t kOptExportName = 1;
inline constexpr uint32_t kOptAbort = 2;
inline constexpr uint32_t kOptList = 3;
inline constexpr uint32_t kOptStartTls = 5;
inline constexpr uint32_t kOptInfo = 6;
inline constexpr uint32_t kOptGo = 7;
inline constexpr uint32_t kOptStructuredReply = 8;
inline constexpr uint32_t kOptListMetaContext = 9;
inline constexpr uint32_t kOptSetMetaContext = 10;

// --- option replies ---
inline constexpr uint32_t kRepAck = 1;
inline constexpr uint32_t kRepServer = 2;
inline constexpr uint32_t kRepInfo = 3;
inline constexpr uint32_t kRepMetaContext = 4;
inline constexpr uint32_t kRepErrUnsup = 0x80000001u;
inline constexpr uint32_t kRepErrPolicy = 0x80000002u;
inline constexpr uint32_t kRepErrInvalid = 0x80000003u;
inline constexpr uint32_t kRepErrPlatform = 0x80000004u;
inline constexpr uint32_t kRepErrTlsReqd = 0x80000005u;
inline constexpr uint32_t kRepErrUnknown = 0x80000006u;
inline constexpr uint32_t kRepErrShutdown = 0x80000007u;
inline constexpr uint32_t kRepErrTooBig = 0x80000009u;

// --- NBD_REP_INFO types ---
inline constexpr uint16_t kInfoExport = 0;
inline constexpr uint16_t kInfoName = 1;
inline constexpr uint16_t kInfoDescription = 2;
inline constexpr uint16_t kInfoBlockSize = 3;

// --- commands and command flags ---
inline constexpr uint16_t kCmdRead = 0;
inline constexpr uint16_t kCmdWrite = 1;
inline constexpr uint16_t kCmdDisc = 2;
inline constexpr uint16_t kCmdFlush = 3;
inline constexpr uint16_t kCmdTrim = 4;
inline constexpr uint16_t kCmdCache = 5;
inline constexpr uint16_t kCmdWriteZeroes = 6;
inline constexpr uint16_t kCmdBlockStatus = 7;

inline constexpr uint16_t kCmdFlagFua = 1u << 0;
inline constexpr uint16_t kCmdFlagNoHole = 1u << 1;
inline constexpr uint16_t kCmdFlagDf = 1u << 2;
inline constexpr uint16_t kCmdFlagReqOne = 1u << 3;
inline constexpr uint16_t kCmdFlagFastZero = 1u << 4;

// --- structured replies ---
inline constexpr uint16_t kReplyFlagDone = 1u << 0;
inline constexpr uint16_t kReplyTypeNone = 0;
inline constexpr uint16_t kReplyTypeOffsetData = 1;
inline constexpr uint16_t kReplyTypeOffsetHole = 2;
inline constexpr uint16_t kReplyTypeBlockStatus = 5;
inline constexpr uint16_t kReplyTypeError = 0x8001;
inline constexpr uint16_t kReplyTypeErrorOffset = 0x8002;

// --- block status flags ---
inline constexpr uint32_t kStateHole = 1u << 0;   // base:allocation
inline constexpr uint32_t kStateZero = 1u << 1;   // base:allocation
inline constexpr uint32_t kStateDirty = 1u << 0;  // qemu:dirty-bitmap:*

// --- error values on the wire ---
inline constexpr uint32_t kEperm = 1;
inline constexpr uint32_t kEio = 5;
inline constexpr uint32_t kEnomem = 12;
inline constexpr uint32_t kEinval = 22;
inline constexpr uint32_t kEnospc = 28;
inline constexpr uint32_t kEoverflow = 75;
inline constexpr uint32_t kEnotsup = 95;
inline constexpr uint32_t kEshutdown = 108;

// --- sizes ---
inline constexpr size_t kOptionHeaderSize = 16;   // magic, option, length
inline constexpr size_t kRequestHeaderSize = 28;  // magic, flags, type, handle, offset, length
inline constexpr size_t kSimpleReplySize = 16;
inline constexpr size_t kStructuredHeaderSize = 20;
inline constexpr uint32_t kMaxRequestLength = 32u << 20;  // largest READ/WRITE/CACHE we serve
inline constexpr uint32_t kMaxOptionLength = 64u << 10;   // longer option data is a denial of service
inline constexpr size_t kMaxStringLength = 4096;          // the spec's limit for names and messages
inline constexpr uint32_t kMinimumBlockSize = 1;
inline constexpr uint32_t kPreferredBlockSize = 4096;

// The one mapping from errno values to NBD error codes.
uint32_t nbd_error_from_errno(int err);

// --- big-endian fields ---
void put_u16(std::vector<uint8_t>& out, uint16_t v);
void put_u32(std::vector<uint8_t>& out, uint32_t v);
void put_u64(std::vector<uint8_t>& out, uint64_t v);
void put_bytes(std::vector<uint8_t>& out, std::string_view bytes);
uint16_t get_u16(const uint8_t* p);
uint32_t get_u32(const uint8_t* p);
uint64_t get_u64(const uint8_t* p);
void store_u32(uint8_t* p, uint32_t v);
void store_u64(uint8_t* p, uint64_t v);

// A reader over option data that refuses to read past the end (every getter reports failure).
class FieldReader {
 public:
  explicit FieldReader(std::span<const uint8_t> data) : data_(data) {}
  bool u16(uint16_t& out);
  bool u32(uint32_t& out);
  bool string(uint32_t length, std::string& out);
  size_t remaining() const { return data_.size() - pos_; }

 private:
  std::span<const uint8_t> data_;
  size_t pos_ = 0;
};

// --- handshake encoding ---
struct OptionHeader {
  uint64_t magic = 0;
  uint32_t option = 0;
  uint32_t length = 0;
};
OptionHeader parse_option_header(std::span<const uint8_t, kOptionHeaderSize> bytes);
// NBDMAGIC, IHAVEOPT, handshake flags.
std::vector<uint8_t> encode_greeting(uint16_t handshake_flags);
void append_option_reply(std::vector<uint8_t>& out, uint32_t option, uint32_t reply_type,
                         std::span<const uint8_t> payload = {});
void append_option_error(std::vector<uint8_t>& out, uint32_t option, uint32_t reply_type,
                         std::string_view message);
// The reply to NBD_OPT_EXPORT_NAME: size, transmission flags, and 124 zeroes unless no_zeroes.
std::vector<uint8_t> encode_export_name_reply(uint64_t size, uint16_t flags, bool no_zeroes);

// --- transmission encoding ---
struct RequestHeader {
  uint32_t magic = 0;
  uint16_t flags = 0;
  uint16_t type = 0;
  uint64_t handle = 0;
  uint64_t offset = 0;
  uint32_t length = 0;
};
RequestHeader parse_request_header(std::span<const uint8_t, kRequestHeaderSize> bytes);
void append_simple_reply(std::vector<uint8_t>& out, uint32_t error, uint64_t handle);
void append_structured_header(std::vector<uint8_t>& out, uint16_t flags, uint16_t type, uint64_t handle,
                              uint32_t length);
void append_structured_error(std::vector<uint8_t>& out, uint64_t handle, uint32_t error,
                             std::string_view message);
void append_structured_none(std::vector<uint8_t>& out, uint64_t handle);
void append_offset_hole(std::vector<uint8_t>& out, uint64_t handle, uint64_t offset, uint32_t length,
                        bool done);

// One block status descriptor.
struct BlockStatusDescriptor {
  uint32_t length = 0;
  uint32_t flags = 0;
  bool operator==(const BlockStatusDescriptor&) const = default;
};
void append_block_status(std::vector<uint8_t>& out, uint64_t handle, uint32_t context_id,
                         std::span<const BlockStatusDescriptor> descriptors, bool done);

const char* command_name(uint16_t type);
const char* option_name(uint32_t option);

}  // namespace nbdsnap::nbd
