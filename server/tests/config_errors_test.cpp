// SPDX-License-Identifier: BSD-3-Clause
// config_errors_test.cpp — nbdsnapd's option errors: each names the option, its value and its bounds, and an
// error about a value from the configuration file names the file and the line (issue 20, item 3).
#include <doctest/doctest.h>
#include <unistd.h>

#include <sstream>
#include <string>
#include <vector>

#include "server_config.h"

using namespace nbdsnap;

namespace {

// A configuration file of the given text, removed when the test ends.
class TemporaryConfigFile {
 public:
  explicit TemporaryConfigFile(const std::string& text) {
    const int fd = mkstemp(path_);
    REQUIRE(fd >= 0);
    REQUIRE(write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size()));
    close(fd);
  }
  ~TemporaryConfigFile() { unlink(path_); }
  std::string path() const { return path_; }

 private:
  char path_[64] = "/tmp/nbdsnapd-config-errors-XXXXXX";
};

// Runs the parser on `args` and returns what it printed on stderr ("" when it accepted them).
std::string errors_of(std::vector<std::string> args) {
  args.insert(args.begin(), "nbdsnapd");
  std::vector<const char*> argv;
  for (const std::string& arg : args) argv.push_back(arg.c_str());
  ServerConfig config;
  std::ostringstream out, err;
  const ConfigOutcome outcome = parse_server_config(int(argv.size()), argv.data(), config, out, err);
  CHECK((outcome == ConfigOutcome::run) == err.str().empty());
  return err.str();
}

}  // namespace

TEST_CASE("every_numeric_option_of_nbdsnapd_is_refused_with_its_name_value_and_bounds") {
  struct Case {
    const char* option;
    const char* bad;
    const char* message;
  };
  const Case cases[] = {
      {"threads", "0", "--threads 0 is out of range: it must be 1..1024"},
      {"threads", "-1", "--threads -1: expected a whole number 1..1024"},
      {"threads-max", "4097", "--threads-max 4097 is out of range: it must be 0..4096"},
      {"threads-max", "4",
       "--threads-max 4: must be above --threads (4), so that an origin whose disk "
       "stopped answering leaves workers to the others"},
      {"io-threads", "257", "--io-threads 257 is out of range: it must be 0..256"},
      {"io-threads", "x", "--io-threads x: expected a whole number 0..256"},
      {"max-in-flight", "4097", "--max-in-flight 4097 is out of range: it must be 1..4096"},
      {"max-connections", "1000001", "--max-connections 1000001 is out of range: it must be 0..1000000"},
      {"handshake-timeout", "-1", "--handshake-timeout -1: expected a whole number 0..86400"},
      {"handshake-timeout", "99999999999999999999999",
       "--handshake-timeout 99999999999999999999999 is too large: "
       "it must be 0..86400"},
      {"control-idle-timeout", "86401", "--control-idle-timeout 86401 is out of range: it must be 0..86400"},
      {"control-max-sessions", "0", "--control-max-sessions 0 is out of range: it must be 1..1024"},
      {"chunk-min-shift", "40", "--chunk-min-shift 40 is out of range: it must be 12..30"},
      {"checkpoints-kept", "1", "--checkpoints-kept 1 is out of range: it must be 2..128"},
      {"copy-io-size", "48K", "--copy-io-size 48K is not a power of two: it must be 4K..64M, a power of two"},
  };
  for (const Case& c : cases) {
    CAPTURE(c.option);
    CHECK(errors_of({std::string("--") + c.option, c.bad}) == std::string("nbdsnapd: ") + c.message + "\n");
    // The same value from the configuration file: the same words, after the file and the line.
    TemporaryConfigFile file("# a comment\n\nlog-level = info\n" + std::string(c.option) + " = " + c.bad +
                             "\n");
    CHECK(errors_of({"--config", file.path()}) ==
          "nbdsnapd: " + file.path() + ":4: " + std::string(c.message) + "\n");
  }
}

TEST_CASE("a_value_given_on_the_command_line_wins_over_the_file_and_its_errors_name_no_line") {
  TemporaryConfigFile file("threads = 0\n");
  CHECK(errors_of({"--config", file.path(), "--threads", "2"}).empty());
  TemporaryConfigFile good("threads = 8\n");
  CHECK(errors_of({"--config", good.path(), "--threads", "0"}) ==
        "nbdsnapd: --threads 0 is out of range: it must be 1..1024\n");
}

TEST_CASE("errors_of_the_sanitize_step_and_of_other_options_name_the_line_of_the_file") {
  TemporaryConfigFile shifts("chunk-min-shift = 22\n\nchunk-max-shift = 20\n");
  CHECK(
      errors_of({"--config", shifts.path()}) ==
      "nbdsnapd: " + shifts.path() +
          ":3: --chunk-max-shift 20 is below --chunk-min-shift 22: raise --chunk-max-shift to at least 22 or "
          "lower --chunk-min-shift\n");
  TemporaryConfigFile origins("origin = a=/dev/null\norigin = b@c=/dev/null\n");
  CHECK(errors_of({"--config", origins.path()})
            .find("nbdsnapd: " + origins.path() + ":2: --origin b@c=/dev/null: ") == 0);
  TemporaryConfigFile level("\nlog-level = loud\n");
  CHECK(errors_of({"--config", level.path()}) ==
        "nbdsnapd: " + level.path() + ":2: --log-level loud: must be error, warning, info or debug\n");
  TemporaryConfigFile tls("tls = maybe\n");
  CHECK(errors_of({"--config", tls.path()}) ==
        "nbdsnapd: " + tls.path() + ":1: --tls maybe: must be off, on or require\n");
}

TEST_CASE("lines_of_the_file_that_are_not_options_are_refused_with_their_line") {
  TemporaryConfigFile unknown("threads = 2\nthread = 4\n");
  CHECK(errors_of({"--config", unknown.path()}) ==
        "nbdsnapd: " + unknown.path() +
            ":2: unknown option 'thread' (keys are the long options of nbdsnapd --help, without --)\n");
  TemporaryConfigFile no_equals("threads 2\n");
  CHECK(errors_of({"--config", no_equals.path()}) ==
        "nbdsnapd: " + no_equals.path() +
            ":1: 'threads 2': expected `key = value` (keys are the long options without --)\n");
  TemporaryConfigFile twice("threads = 2\n# again\nthreads = 4\n");
  CHECK(errors_of({"--config", twice.path()}) ==
        "nbdsnapd: " + twice.path() + ":3: threads is given twice (also on line 1): give it once\n");
  TemporaryConfigFile section("[server]\nthreads = 2\n");
  CHECK(errors_of({"--config", section.path()})
            .find(section.path() + ":1: '[server]': sections are not used") != std::string::npos);
  CHECK(errors_of({"--config", "/nonexistent/nbdsnapd.conf"})
            .find("nbdsnapd: cannot open the configuration file /nonexistent/nbdsnapd.conf") == 0);
}

TEST_CASE("repeatable_options_and_switches_are_read_from_the_file") {
  TemporaryConfigFile file("origin = a=/dev/null  # the first\norigin = b=/dev/zero\ntcp-origins = true\n");
  std::vector<const char*> argv{"nbdsnapd", "--config", nullptr};
  const std::string path = file.path();
  argv[2] = path.c_str();
  ServerConfig config;
  std::ostringstream out, err;
  REQUIRE(parse_server_config(3, argv.data(), config, out, err) == ConfigOutcome::run);
  REQUIRE(config.origins.size() == 2);
  CHECK(config.origins[0].path == "/dev/null");
  CHECK(config.origins[1].name == "b");
  CHECK(config.security.access.tcp_origins);
}
