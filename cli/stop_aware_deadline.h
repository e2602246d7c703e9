// SPDX-License-Identifier: BSD-3-Clause
// stop_aware_deadline.h — the bound of every --timeout wait in the CLI, which does not count time during
// which the CLI itself was stopped (SIGSTOP, ^Z) and then continued (SIGCONT).
//
// Why. --timeout exists to notice a server that stopped answering. When the user stops the CLI (^Z in the
// shell, or kill -STOP of a process group that may hold nbdsnapd too) and later continues it, the wall time
// of the stop says nothing about the server: the CLI was not asking, and a server in the same group was not
// running either. Counting it made a backup fail with "no reply ... within N s" right after `fg`, although
// the server answered at once.
//
// The rule (one place for it). A SIGCONT handler counts continues and notes when the last one came; a
// deadline that sees the count change starts again from that continue with its full bound (from the
// continue, not from the look that noticed it: a wait the handler did not cut short — a poll on another
// thread than the handler's, or one the kernel restarted after the stop — runs on to its end first, which
// may be a whole bound later, and starting from there gave a dead server up to twice --timeout). The
// handler may also run later than the look (after a continue all threads run at once; TSan defers
// handlers), so a deadline also takes a gap between two of its looks longer than the wait it granted
// (remaining()) plus kStopSlack as a stop that ended just now: the thread was not running, so the server was
// not being waited for. A thread merely starved that long gets its bound again too, which only delays a
// timeout. So after a continue every pending wait gets its whole --timeout again, as if it had just begun.
// We chose this over "poll once more before declaring a timeout" because a server stopped in the same group
// needs time to run again and reply, and one extra poll of 0 ms could still come too early; a full bound is
// also what a user can predict ("N seconds of silence while nbdsnap runs"). The cost: a dead server is
// detected one bound after the last continue (a SIGCONT sent without a stop restarts the waits too; only
// repeated ones would delay a timeout, and only while they come). The waits of libnbdsnap on the control
// socket take a plain steady_clock deadline and do not restart.
//
// The clock is std::chrono::steady_clock, CLOCK_MONOTONIC on Linux (the handler reads it with clock_gettime),
// which does not advance while the machine is suspended (CLOCK_BOOTTIME would), so a suspend does not count
// either, and no SIGCONT is needed for it.
//
// Signals. The handler only reads CLOCK_MONOTONIC and stores into lock-free atomics (async-signal-safe), is
// installed with SA_RESTART (so read/write/waitpid resume; poll and nanosleep still return EINTR, which every
// wait here retries with the time left; NbdImage::poll polls by itself, as libnbd's nbd_poll() would retry
// with its whole timeout, and takes EINTR for "nothing happened", so its deadline looks again at once), and
// chains a SIGCONT handler installed before it. Children exec'd by the CLI (qemu-img, qemu-nbd, hooks) get
// SIGCONT's default action back at exec, as they had before: for SIGCONT, default and ignored behave the
// same.
//
// Thread-safety: the counter and the continue's time are shared by all threads; a StopAwareDeadline object
// belongs to one thread.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>

namespace nbdsnap::cli {

// Installs the SIGCONT counter once per process (later calls do nothing). StopAwareDeadline calls it; it is
// public for main() and the tests.
void watch_for_continues();

// How many times the process was continued (SIGCONT received) since watch_for_continues().
uint64_t continues_seen();

// When the handler counted the last continue (steady_clock; its epoch before any continue).
std::chrono::steady_clock::time_point last_continue();

class StopAwareDeadline {
 public:
  using Clock = std::chrono::steady_clock;
  // How much longer than the wait it granted a deadline lets pass between two looks before it takes the gap
  // for a stop (see above): above scheduling delays, below any useful --timeout.
  static constexpr std::chrono::milliseconds kStopSlack{500};

  // A deadline `bound` from now (installs the SIGCONT counter if needed).
  explicit StopAwareDeadline(std::chrono::milliseconds bound);

  // Starts the bound again from now (e.g. a reply came, so the silence starts anew).
  void restart();
  // Whether the bound passed since the deadline (re)started or nbdsnap was last continued, whichever came
  // later. A continue (or gap) seen here restarts the deadline from the continue (or now).
  bool expired();
  // Milliseconds left, rounded up so a wait never ends early; 0 once expired. A continue restarts it.
  std::chrono::milliseconds remaining();
  std::chrono::milliseconds bound() const { return bound_; }

 private:
  // expired() and remaining() read the clock first and the counter after: a stop before the clock was read
  // is then seen as a continue (restart), never counted as silence. Where the bound starts again if nbdsnap
  // was continued (or did not run) since the last look, else nothing; takes the continues seen.
  std::optional<Clock::time_point> continued_at(Clock::time_point now);

  std::chrono::milliseconds bound_;
  uint64_t continues_ = 0;  // continues_seen() when the deadline last (re)started
  Clock::time_point start_;
  Clock::time_point last_look_;  // of expired(), remaining() or restart()
  Clock::duration granted_{};    // what the last look let the caller wait (remaining()'s answer)
};

}  // namespace nbdsnap::cli
