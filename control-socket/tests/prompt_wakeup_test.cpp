// SPDX-License-Identifier: BSD-3-Clause
// prompt_wakeup_test.cpp — the short time slice of control threads: taken where the kernel offers it, and
// never a change of the thread's policy or nice value.
#include <doctest/doctest.h>

#include <sched.h>
#include <sys/resource.h>
#include <unistd.h>

#include <cerrno>
#include <thread>

#include "prompt_wakeup.h"

using nbdsnap::current_time_slice_ns;
using nbdsnap::kPromptWakeupSliceNs;
using nbdsnap::prefer_prompt_wakeups;

namespace {

int own_nice() {
  errno = 0;
  return getpriority(PRIO_PROCESS, static_cast<id_t>(gettid()));  // a thread's own nice value on Linux
}

}  // namespace

TEST_CASE(
    "a_thread_that_asks_for_prompt_wakeups_keeps_its_nice_value_and_gets_the_short_slice_where_offered") {
  std::thread([] {
    // A niceness the call must not undo (raising it needs no privilege).
    REQUIRE(setpriority(PRIO_PROCESS, static_cast<id_t>(gettid()), 7) == 0);
    const uint64_t before = current_time_slice_ns();
    const bool taken = prefer_prompt_wakeups();
    CHECK(own_nice() == 7);
    CHECK(sched_getscheduler(0) == SCHED_OTHER);
    if (taken) {
      CHECK(current_time_slice_ns() == kPromptWakeupSliceNs);
    } else {
      MESSAGE("this kernel keeps its default slice (custom slices need Linux 6.12+)");
      CHECK(current_time_slice_ns() == before);
    }
  }).join();
}

TEST_CASE("a_batch_thread_is_left_alone") {
  std::thread([] {
    sched_param param{};
    REQUIRE(sched_setscheduler(0, SCHED_BATCH, &param) == 0);
    const uint64_t before = current_time_slice_ns();
    CHECK_FALSE(prefer_prompt_wakeups());
    CHECK(sched_getscheduler(0) == SCHED_BATCH);
    CHECK(current_time_slice_ns() == before);
  }).join();
}
