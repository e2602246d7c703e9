// SPDX-License-Identifier: BSD-3-Clause
// fuzz_handshake.cpp — drives the newstyle handshake with arbitrary client bytes: client flags, then options
// (16-byte header + data) until the handshake closes, enters transmission, or the input runs out.
// The first byte picks the TLS mode (off, on, require) and whether access rules apply; a STARTTLS the
// handshake acknowledges counts as a TLS handshake that succeeded, so both the TLS-required replies and the
// options after TLS are reached. Invariants checked: NBD_REP_ERR_TLS_REQD only from a TLS server before TLS;
// under `require` nothing but errors before TLS; transmission never before TLS under `require`.
#include <cstdint>
#include <cstdlib>
#include <span>

#include "access_policy.h"
#include "fuzz_world.h"
#include "handshake.h"
#include "nbd_protocol.h"

using namespace nbdsnap;

namespace {

// The reply types of one step's option replies (magic, option, type, length, payload).
std::vector<uint32_t> reply_types(const std::vector<uint8_t>& bytes) {
  std::vector<uint32_t> types;
  for (size_t pos = 0; pos + 20 <= bytes.size(); pos += 20 + nbd::get_u32(bytes.data() + pos + 16)) {
    types.push_back(nbd::get_u32(bytes.data() + pos + 12));
  }
  return types;
}

void check_tls_rules(TlsMode mode, bool before_tls, uint32_t option, const Handshake::Step& step) {
  for (uint32_t type : reply_types(step.reply)) {
    // NBD proto.md: never ERR_TLS_REQD without TLS, nor once TLS is up.
    if (type == nbd::kRepErrTlsReqd && (mode == TlsMode::off || !before_tls)) std::abort();
    // FORCEDTLS: before TLS only errors, and the ACKs of STARTTLS and ABORT.
    if (mode == TlsMode::require && before_tls && (type & 0x80000000u) == 0 && option != nbd::kOptStartTls &&
        option != nbd::kOptAbort) {
      std::abort();
    }
  }
  if (mode == TlsMode::require && before_tls && step.next == Handshake::Next::transmission) std::abort();
  if (step.next == Handshake::Next::start_tls && (mode == TlsMode::off || !before_tls)) std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static fuzz::EngineWorld world;
  std::span<const uint8_t> input(data, size);
  if (input.size() < 5) return 0;
  const TlsMode mode = input[0] % 3 == 0 ? TlsMode::off : input[0] % 3 == 1 ? TlsMode::on : TlsMode::require;
  Handshake handshake(*world.catalog, mode);
  if (input[0] & 0x80) {  // only images, to one identity
    auto policy = std::make_shared<AccessPolicy>();
    policy->rules.push_back({"*@*", "psk:agent"});
    PeerIdentity peer;
    peer.psk_username = "agent";
    handshake.set_access(std::make_shared<ClientAccess>(policy, peer, /*over_tcp=*/true));
  }
  input = input.subspan(1);
  (void)handshake.greeting();
  if (!handshake.accept_client_flags(nbd::get_u32(input.data()))) return 0;
  input = input.subspan(4);
  while (input.size() >= nbd::kOptionHeaderSize) {
    const nbd::OptionHeader header = nbd::parse_option_header(input.first<nbd::kOptionHeaderSize>());
    input = input.subspan(nbd::kOptionHeaderSize);
    if (!handshake.accept_option_header(header)) return 0;
    if (header.length > input.size()) return 0;  // a real connection would wait for more bytes
    const bool before_tls = !handshake.tls_active();
    const Handshake::Step step = handshake.handle_option(header.option, input.first(header.length));
    input = input.subspan(header.length);
    check_tls_rules(mode, before_tls, header.option, step);
    if (step.next == Handshake::Next::start_tls) {
      handshake.tls_started();
      continue;
    }
    if (step.next != Handshake::Next::read_option) return 0;
  }
  return 0;
}
