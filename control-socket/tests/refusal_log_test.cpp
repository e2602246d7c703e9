// SPDX-License-Identifier: BSD-3-Clause
// refusal_log_test.cpp — the counted log of refused peers (refusal_log.h), on a clock the test moves.
#include "refusal_log.h"

#include <doctest/doctest.h>

#include <string>
#include <vector>

using namespace nbdsnap;
using namespace std::chrono_literals;

namespace {

struct Lines {
  std::vector<std::string> lines;
  RefusalLog::Warn warn() {
    return [this](const std::string& line) { lines.push_back(line); };
  }
};

}  // namespace

TEST_CASE("a flood of one kind costs its first line in full and one summary with the count") {
  Lines out;
  RefusalLog log("remote control: ", "connections");
  log.set_warn(out.warn());
  const auto t0 = RefusalLog::Clock::time_point{} + 1h;
  for (int i = 0; i < 15180; ++i) {
    log.report("closed before the TLS handshake ended", "127.0.0.1:" + std::to_string(1000 + i % 50000),
               "refused 127.0.0.1:" + std::to_string(1000 + i) + ": the client closed the connection",
               t0 + std::chrono::microseconds(i * 100));
  }
  REQUIRE(out.lines.size() == 1);
  CHECK(out.lines[0].starts_with("remote control: refused 127.0.0.1:1000: the client closed the connection"));
  REQUIRE(log.next_due() == t0 + 60s);
  log.flush_due(t0 + 59s);
  CHECK(out.lines.size() == 1);
  log.flush_due(t0 + 60s);
  REQUIRE(out.lines.size() == 2);
  CHECK(out.lines[1] ==
        "remote control: refused 15180 connections in the last 60 s: 15180 closed before the TLS handshake "
        "ended, last from 127.0.0.1:16179");
  CHECK(!log.next_due());
}

TEST_CASE("a steady flood gets one summary a minute and no more full lines, a quiet kind is logged in full") {
  Lines out;
  RefusalLog log("", "NBD connections");
  log.set_warn(out.warn());
  const auto t0 = RefusalLog::Clock::time_point{} + 1h;
  log.report("with a wrong PSK", "a:1", "first", t0);
  log.report("with a wrong PSK", "a:2", "second", t0 + 1s);
  log.report("in clear under --tls require", "b:1", "other kind", t0 + 2s);  // first of its kind: in full
  CHECK(out.lines.size() == 2);
  log.report("with a wrong PSK", "a:3", "third", t0 + 61s);  // the window's summary goes out first
  REQUIRE(out.lines.size() == 3);
  CHECK(
      out.lines[2] ==
      "refused 3 NBD connections in the last 61 s: 2 with a wrong PSK, 1 in clear under --tls require, last "
      "from b:1");
  log.flush(t0 + 62s);  // the wrong PSK was summed up: still counted, not logged in full
  REQUIRE(out.lines.size() == 4);
  CHECK(out.lines[3] == "refused 1 NBD connections in the last 1 s: 1 with a wrong PSK, last from a:3");
  log.report("with a wrong PSK", "a:4", "after a quiet minute", t0 + 200s);
  REQUIRE(out.lines.size() == 5);
  CHECK(out.lines[4].starts_with("after a quiet minute"));
  log.flush(t0 + 201s);  // nothing left out: no summary
  CHECK(out.lines.size() == 5);
}
