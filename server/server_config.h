// server_config.h — nbdsnapd's configuration: the command line and the optional config file (same keys).
#pragma once

#include <cstdint>
#include <iosfwd>
#include <string>
#include <vector>

#include "engine.h"
#include "log.h"
#include "origin_list.h"

namespace nbdsnap {

// Where NBD clients connect: "unix:PATH" or "tcp:HOST:PORT".
struct ListenAddress {
  enum class Kind { unix_socket, tcp } kind = Kind::unix_socket;
  std::string path;  // unix
  std::string host;  // tcp
  uint16_t port = 0;
};
bool parse_listen_address(const std::string& text, ListenAddress& out, std::string& error);
std::string format_listen_address(const ListenAddress& address);

bool parse_origin_spec(const std::string& text, bool read_only, OriginSpec& out, std::string& error);

struct ServerConfig {
  std::vector<OriginSpec> origins;
  std::vector<ListenAddress> listen;
  std::string control_path;  // empty: no control socket
  LogLevel log_level = LogLevel::info;
  unsigned threads = 4;                    // workers running engine calls
  unsigned max_in_flight = 64;             // requests per connection
  uint64_t max_in_flight_bytes = 256ull << 20;  // request and reply payload per connection
  unsigned max_connections = 1000;         // NBD connections at once, handshaking ones included; 0: no limit
  unsigned handshake_timeout_seconds = 10;  // 0: none
  EngineConfig engine;                     // state_dir and tuning
};

enum class ConfigOutcome { run, exit_success, exit_failure };
// Parses argv (and --config FILE). Prints help/version to `out`, errors to `err`.
ConfigOutcome parse_server_config(int argc, const char* const* argv, ServerConfig& config, std::ostream& out,
                                  std::ostream& err);

}  // namespace nbdsnap
