// SPDX-License-Identifier: BSD-3-Clause
// stop_aware_deadline.cpp — the SIGCONT counter and the deadlines that restart after a continue (see
// stop_aware_deadline.h).
#include "stop_aware_deadline.h"

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <mutex>

#include <signal.h>
#include <time.h>

namespace nbdsnap::cli {

namespace {

std::atomic<uint64_t> g_continues{0};
// When the last continue was handled: CLOCK_MONOTONIC (steady_clock's clock on Linux) in nanoseconds. Written
// before the counter moves, so a deadline that sees the counter move reads this continue's time or a later
// one.
std::atomic<int64_t> g_last_continue_ns{0};
static_assert(std::atomic<uint64_t>::is_always_lock_free && std::atomic<int64_t>::is_always_lock_free,
              "the SIGCONT handler may only touch lock-free atomics");

// The SIGCONT disposition found at installation: written once before our handler is in place, only read
// after.
struct sigaction g_previous {};

void on_continue(int signal_number, siginfo_t* info, void* context) {
  const int saved_errno = errno;
  timespec now{};
  if (::clock_gettime(CLOCK_MONOTONIC, &now) == 0) {  // async-signal-safe, unlike steady_clock::now()
    g_last_continue_ns.store(int64_t{now.tv_sec} * 1'000'000'000 + now.tv_nsec, std::memory_order_seq_cst);
  }
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

std::chrono::steady_clock::time_point last_continue() {
  const std::chrono::nanoseconds since_boot(g_last_continue_ns.load(std::memory_order_seq_cst));
  return std::chrono::steady_clock::time_point(
      std::chrono::duration_cast<std::chrono::steady_clock::duration>(since_boot));
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

std::optional<StopAwareDeadline::Clock::time_point> StopAwareDeadline::continued_at(Clock::time_point now) {
  // A gap: this thread did not run until about now (the continue's handler may not have run yet).
  if (now - last_look_ > granted_ + kStopSlack) {
    continues_ = continues_seen();
    return now;
  }
  // The counter is read after `now`: a continue before `now` is seen here. Its time, not now: a wait the
  // handler did not cut short (a poll on another thread than the handler's, or one the kernel restarted
  // after the stop) runs on to its end before this look, up to a whole bound after the continue.
  const uint64_t seen = continues_seen();
  if (seen == continues_) return std::nullopt;
  continues_ = seen;
  return std::clamp(last_continue(), start_, now);
}

bool StopAwareDeadline::expired() {
  const Clock::time_point now = Clock::now();
  if (const auto from = continued_at(now)) start_ = *from;
  last_look_ = now;
  granted_ = Clock::duration::zero();
  return now >= start_ + bound_;
}

std::chrono::milliseconds StopAwareDeadline::remaining() {
  const Clock::time_point now = Clock::now();
  if (const auto from = continued_at(now)) start_ = *from;
  const auto left = std::max(std::chrono::ceil<std::chrono::milliseconds>(start_ + bound_ - now),
                             std::chrono::milliseconds(0));
  last_look_ = now;
  granted_ = left;  // the caller may wait this long before it looks again
  return left;
}

}  // namespace nbdsnap::cli
