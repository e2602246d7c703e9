// fuzz_handshake.cpp — drives the newstyle handshake with arbitrary client bytes: client flags, then options
// (16-byte header + data) until the handshake closes, enters transmission, or the input runs out.
#include <cstdint>
#include <cstdlib>
#include <span>

#include "fuzz_world.h"
#include "handshake.h"
#include "nbd_protocol.h"

using namespace nbdsnap;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static fuzz::EngineWorld world;
  std::span<const uint8_t> input(data, size);
  if (input.size() < 4) return 0;
  Handshake handshake(*world.catalog);
  (void)handshake.greeting();
  if (!handshake.accept_client_flags(nbd::get_u32(input.data()))) return 0;
  input = input.subspan(4);
  while (input.size() >= nbd::kOptionHeaderSize) {
    const nbd::OptionHeader header = nbd::parse_option_header(input.first<nbd::kOptionHeaderSize>());
    input = input.subspan(nbd::kOptionHeaderSize);
    if (!handshake.accept_option_header(header)) return 0;
    if (header.length > input.size()) return 0;  // a real connection would wait for more bytes
    const Handshake::Step step = handshake.handle_option(header.option, input.first(header.length));
    input = input.subspan(header.length);
    if (step.next != Handshake::Next::read_option) return 0;
  }
  return 0;
}
