// SPDX-License-Identifier: BSD-3-Clause
// stop_aware_deadline.cpp — the SIGCONT counter and the deadlines that restart after a continue (see
// stop_aware_deadline.h).
#include "stop_aware_deadline.h"

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <mutex>

#include <signal.h>

namespace nbdsnap::cli {

namespace {

std::atomic<uint64_t> g_continues{0};
static_assert(std::atomic<uint64_t>::is_always_lock_free,
              "the SIGCONT handler may only touch lock-free atomics");

// The SIGCONT disposition found at installation: written once before our handler is in place, only read
// after.
struct sigaction g_previous {};

void on_continue(int signal_number, siginfo_t* info, void* context) {
  const int saved_errno = errno;
  g_continues.fetch_add(1, std::memory_order_seq_cst);
  if ((g_previous.sa_flags & SA_SIGINFO) != 0) {
    if (g_previous.sa_sigaction != nullptr) g_previous.sa_sigaction(signal_number, info, context);
  } else if (g_previous.sa_handler != SIG_DFL && g_previous.sa_handler != SIG_IGN) {
    g_previous.sa_handler(signal_number);
  }
  errno = saved_errno;
}

}  // namespace

void watch_for_continues() {
  static std::once_flag once;
  std::call_once(once, [] {
    if (::sigaction(SIGCONT, nullptr, &g_previous) != 0) return;  // left as it is: waits count stops
    struct sigaction action {};
    action.sa_sigaction = on_continue;
    action.sa_flags = SA_SIGINFO | SA_RESTART;
    sigemptyset(&action.sa_mask);
    ::sigaction(SIGCONT, &action, nullptr);
  });
}

uint64_t continues_seen() {
  return g_continues.load(std::memory_order_seq_cst);
}

StopAwareDeadline::StopAwareDeadline(std::chrono::milliseconds bound) : bound_(bound) {
  watch_for_continues();
  restart();
}

void StopAwareDeadline::restart() {
  // The counter before the clock: a stop after the counter was read is then inside the new bound, and the
  // next look sees its continue.
  continues_ = continues_seen();
  start_ = Clock::now();
  last_look_ = start_;
  granted_ = Clock::duration::zero();
}

bool StopAwareDeadline::was_stopped(Clock::time_point now) const {
  // The counter is read after `now`: a stop before `now` is seen here. The gap covers the continue whose
  // handler has not run yet (it may run on another thread, or later under a sanitizer's signal deferral).
  return continues_seen() != continues_ || now - last_look_ > granted_ + kStopSlack;
}

bool StopAwareDeadline::expired() {
  const Clock::time_point now = Clock::now();
  if (was_stopped(now)) {
    restart();
    return false;
  }
  last_look_ = now;
  granted_ = Clock::duration::zero();
  return now >= start_ + bound_;
}

std::chrono::milliseconds StopAwareDeadline::remaining() {
  const Clock::time_point now = Clock::now();
  if (was_stopped(now)) {
    restart();
    granted_ = bound_;
    return bound_;
  }
  const auto left = std::max(std::chrono::ceil<std::chrono::milliseconds>(start_ + bound_ - now),
                             std::chrono::milliseconds(0));
  last_look_ = now;
  granted_ = left;  // the caller may wait this long before it looks again
  return left;
}

}  // namespace nbdsnap::cli
