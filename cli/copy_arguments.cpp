// SPDX-License-Identifier: BSD-3-Clause
// copy_arguments.cpp — the copy options and their bounds (copy_arguments.h).
#include "copy_arguments.h"

#include <algorithm>
#include <thread>

#include "exit_codes.h"

namespace po = boost::program_options;

namespace nbdsnap::cli {

// Each connection costs a copy thread here and a thread of the server(s) (nbdsnapd, qemu-nbd), which do the
// real work: beyond half the CPUs they only compete for them. Measured on 2 shared CPUs (bench/backup), 4
// connections made a full backup slower and far less steady than 1 or 2 (median 1.9 s against 1.1 s for
// 256 MiB, runs between 0.9 and 3.4 s).
unsigned default_connections() {
  return std::clamp(std::thread::hardware_concurrency() / 2, 1u, 4u);
}

void add_copy_arguments(CommandArgs& args) {
  args.options()("connections", po::value<std::string>()->value_name("N"),
                 "NBD connections (1..16; default: half the CPUs, 1..4)")(
      "requests", po::value<std::string>()->value_name("N")->default_value("16"),
      "NBD requests in flight, over all connections (1..64)")(
      "request-size", po::value<std::string>()->value_name("SIZE")->default_value("2M"),
      "bytes per NBD request (4K..32M)");
}

CopyOptions copy_options_from(const CommandArgs& args) {
  CopyOptions options;
  options.connections = args.has("connections") ? static_cast<unsigned>(args.number("connections", 1, 16))
                                                : default_connections();
  options.requests_in_flight = static_cast<unsigned>(args.number("requests", 1, 64));
  options.request_size = parse_size_argument("--request-size", args.text("request-size"));
  if (options.request_size < 4096 || options.request_size > (32u << 20)) {
    usage_error("--request-size " + args.text("request-size") + " is out of range: it must be 4K..32M");
  }
  options.tuned = args.has("connections") || args.has("requests") || args.has("request-size");
  return options;
}

}  // namespace nbdsnap::cli
