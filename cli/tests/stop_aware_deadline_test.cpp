// SPDX-License-Identifier: BSD-3-Clause
// stop_aware_deadline_test.cpp — the --timeout deadline that a stop of nbdsnap does not count: a continue
// (SIGCONT, raised here to ourselves) restarts it with its whole bound; without one it expires on time.
#include <doctest/doctest.h>

#include <chrono>
#include <thread>

#include <signal.h>

#include "stop_aware_deadline.h"

using namespace nbdsnap::cli;
using namespace std::chrono_literals;

TEST_CASE("stop-aware deadline: without a continue it expires after its bound") {
  StopAwareDeadline deadline(50ms);
  CHECK_FALSE(deadline.expired());
  CHECK(deadline.remaining() > 0ms);
  CHECK(deadline.remaining() <= 50ms);
  std::this_thread::sleep_for(80ms);
  CHECK(deadline.expired());
  CHECK(deadline.remaining() == 0ms);
  CHECK(deadline.expired());  // stays expired: nothing restarts it
}

TEST_CASE("stop-aware deadline: a continue restarts it with its whole bound") {
  StopAwareDeadline deadline(50ms);
  std::this_thread::sleep_for(80ms);  // as if nbdsnap had been stopped this long
  const uint64_t before = continues_seen();
  REQUIRE(::raise(SIGCONT) == 0);  // the continue (the handler runs before raise returns)
  CHECK(continues_seen() == before + 1);
  CHECK_FALSE(deadline.expired());     // the stop does not count
  CHECK(deadline.remaining() > 40ms);  // the whole bound again, from the continue
  std::this_thread::sleep_for(80ms);
  CHECK(deadline.expired());  // and it ends once more without a new continue
}

TEST_CASE("stop-aware deadline: remaining() also notices a continue, and restart() starts anew") {
  StopAwareDeadline deadline(50ms);
  std::this_thread::sleep_for(80ms);
  REQUIRE(::raise(SIGCONT) == 0);
  CHECK(deadline.remaining() > 40ms);
  std::this_thread::sleep_for(80ms);
  CHECK(deadline.expired());
  deadline.restart();
  CHECK_FALSE(deadline.expired());
}

TEST_CASE("stop-aware deadline: each pending deadline restarts after one continue") {
  StopAwareDeadline first(50ms);
  StopAwareDeadline second(50ms);
  std::this_thread::sleep_for(80ms);
  REQUIRE(::raise(SIGCONT) == 0);
  CHECK_FALSE(first.expired());
  CHECK_FALSE(second.expired());
}

TEST_CASE("stop-aware deadline: the SIGCONT counter restarts reads and writes (SA_RESTART)") {
  watch_for_continues();
  struct sigaction current {};
  REQUIRE(::sigaction(SIGCONT, nullptr, &current) == 0);
  CHECK((current.sa_flags & SA_RESTART) != 0);
  CHECK((current.sa_flags & SA_SIGINFO) != 0);
}

TEST_CASE("stop-aware deadline: a gap between looks far beyond the granted wait counts as a stop") {
  // The continue's handler may run on another thread, after this one looked: the gap tells the stop.
  StopAwareDeadline deadline(50ms);
  CHECK(deadline.remaining() <= 50ms);                                 // grants at most 50 ms of waiting
  std::this_thread::sleep_for(StopAwareDeadline::kStopSlack + 200ms);  // not running for this long
  CHECK_FALSE(deadline.expired());
  CHECK(deadline.remaining() > 40ms);
  std::this_thread::sleep_for(80ms);  // a wait within what was granted: it counts
  CHECK(deadline.expired());
}

TEST_CASE("stop-aware deadline: a continue noticed at the end of a wait counts from the continue") {
  // A poll the handler did not cut short (it ran on another thread, or the kernel restarted the poll after
  // the stop) runs on to its end before the deadline looks: the bound after the continue is then partly
  // spent.
  StopAwareDeadline deadline(300ms);
  CHECK(deadline.remaining() <= 300ms);  // grants a wait of 300 ms
  REQUIRE(::raise(SIGCONT) == 0);        // at its start, as if handled on another thread
  std::this_thread::sleep_for(300ms);    // the granted wait, on to its end: a whole bound after the continue
  CHECK(deadline.expired());             // not another whole bound from this look
}

TEST_CASE("stop-aware deadline: the continue's time is on steady_clock's scale") {
  watch_for_continues();  // ctest runs each case in its own process: no deadline has installed the handler
  const auto before = std::chrono::steady_clock::now();
  REQUIRE(::raise(SIGCONT) == 0);
  const auto after = std::chrono::steady_clock::now();
  CHECK(last_continue() >= before);
  CHECK(last_continue() <= after);
}
