// SPDX-License-Identifier: BSD-3-Clause
// copy_arguments.cpp — the copy options and their bounds (copy_arguments.h).
#include "copy_arguments.h"

#include "exit_codes.h"

namespace po = boost::program_options;

namespace nbdsnap::cli {

void add_copy_arguments(CommandArgs& args) {
  args.options()
      ("connections", po::value<std::string>()->value_name("N")->default_value("4"), "NBD connections (1..16)")
      ("requests", po::value<std::string>()->value_name("N")->default_value("16"), "NBD requests in flight, over all connections (1..64)")
      ("request-size", po::value<std::string>()->value_name("SIZE")->default_value("1M"), "bytes per NBD request (4K..32M)");
}

CopyOptions copy_options_from(const CommandArgs& args) {
  CopyOptions options;
  options.connections = static_cast<unsigned>(args.number("connections", 1, 16));
  options.requests_in_flight = static_cast<unsigned>(args.number("requests", 1, 64));
  options.request_size = parse_size_argument("--request-size", args.text("request-size"));
  if (options.request_size < 4096 || options.request_size > (32u << 20)) {
    usage_error("--request-size " + args.text("request-size") + " is out of range: it must be 4K..32M");
  }
  return options;
}

}  // namespace nbdsnap::cli
