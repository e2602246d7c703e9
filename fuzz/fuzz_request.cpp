// SPDX-License-Identifier: BSD-3-Clause
// fuzz_request.cpp — drives the transmission phase with arbitrary request bytes on a negotiated session.
//
// The first input byte picks the export (origin "disk" or image "disk@s2") and whether structured replies
// and the base:allocation + qemu:dirty-bitmap:s1 contexts were negotiated; the rest is a stream of 28-byte
// request headers, each WRITE followed by its payload, validated and executed like the server does.
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "fuzz_world.h"
#include "handshake.h"
#include "nbd_protocol.h"
#include "request_executor.h"

using namespace nbdsnap;

namespace {

std::vector<uint8_t> string_option(const std::string& name) {
  std::vector<uint8_t> data;
  nbd::put_u32(data, static_cast<uint32_t>(name.size()));
  nbd::put_bytes(data, name);
  return data;
}

// Negotiates like a modern client would: structured replies, meta contexts, then GO.
NegotiatedSession negotiate(ExportCatalog& catalog, const std::string& export_name, bool structured) {
  Handshake handshake(catalog);
  (void)handshake.accept_client_flags(nbd::kClientFlagFixedNewstyle | nbd::kClientFlagNoZeroes);
  if (structured) {
    (void)handshake.handle_option(nbd::kOptStructuredReply, {});
    std::vector<uint8_t> set = string_option(export_name);
    nbd::put_u32(set, 2);
    for (const std::string query : {"base:allocation", "qemu:dirty-bitmap:s1"}) {
      nbd::put_u32(set, static_cast<uint32_t>(query.size()));
      nbd::put_bytes(set, query);
    }
    (void)handshake.handle_option(nbd::kOptSetMetaContext, set);
  }
  std::vector<uint8_t> go = string_option(export_name);
  nbd::put_u16(go, 0);  // no information requests
  (void)handshake.handle_option(nbd::kOptGo, go);
  return handshake.take_session();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static fuzz::EngineWorld world;
  if (size < 1) return 0;
  const bool image = data[0] & 1, structured = data[0] & 2;
  NegotiatedSession session = negotiate(*world.catalog, image ? "disk@s2" : "disk", structured);
  if (!session.target) __builtin_trap();  // the scripted handshake must always succeed
  RequestExecutor executor(std::move(session));
  std::span<const uint8_t> input(data + 1, size - 1);
  while (input.size() >= nbd::kRequestHeaderSize) {
    const nbd::RequestHeader request = nbd::parse_request_header(input.first<nbd::kRequestHeaderSize>());
    input = input.subspan(nbd::kRequestHeaderSize);
    if (request.magic != nbd::kRequestMagic) return 0;  // the server drops such a connection
    std::span<const uint8_t> payload;
    if (request.type == nbd::kCmdWrite) {
      if (request.length > nbd::kMaxRequestLength) return 0;  // the server cannot skip the payload: it drops
      if (request.length > input.size()) return 0;
      payload = input.first(request.length);
      input = input.subspan(request.length);
    }
    std::string message;
    if (const uint32_t error = executor.validate(request, message); error != 0) {
      (void)executor.error_reply(request, error, message);
      continue;
    }
    if (request.type == nbd::kCmdDisc) return 0;
    (void)executor.execute(request, payload);
  }
  return 0;
}
