// SPDX-License-Identifier: BSD-3-Clause
// prompt_wakeup.h — asks the Linux scheduler to run the calling thread soon after it wakes, for threads that
// sleep most of the time and whose short bursts of work others wait for (the control socket's clients: a
// `snapshot-take` holds every origin's writes while it runs).
//
// Design notes. Under EEVDF (Linux 6.6+), a thread is picked by its virtual deadline, its eligible time plus
// its time slice (3 ms by default). With 64 busy threads on 2 CPUs, a control thread that wakes waited a
// median of 3 ms and a p99 of 22 ms for a CPU (measured here: a thread sleeping 5 ms in a loop beside 16 busy
// ones); the filter's `snapshot-take` of 32 origins under 64 writing clients held writes for a p99 of 169 ms,
// most of it the control thread waiting for CPU while every origin's writes were held. Since Linux 6.12 a
// SCHED_OTHER thread may ask for a shorter slice (sched_attr.sched_runtime, 0.1-100 ms; sched(7)): an earlier
// deadline, so it runs sooner after a wake-up, without more CPU in the long run (its share stays the one of
// its nice value) and without privileges. With a 0.1 ms slice the same sleeping thread waited a median of
// 0.07 ms and a p99 of 5-8 ms.
//
// Only the slice changes: the policy and nice value are read first and written back as they were, and a
// thread not under SCHED_OTHER (batch, idle, real-time: the operator chose) is left alone. Older kernels
// ignore sched_runtime for SCHED_OTHER or refuse it; either way nothing changes and nothing fails.
#pragma once

#include <cstdint>

namespace nbdsnap {

// The slice asked for, in nanoseconds: the kernel's minimum for a custom slice (0.1 ms).
inline constexpr uint64_t kPromptWakeupSliceNs = 100'000;

// Asks for kPromptWakeupSliceNs as the calling thread's time slice (see above). Returns whether the kernel
// took it (for tests and logs); failing changes nothing. Thread-safe: affects the calling thread only.
bool prefer_prompt_wakeups() noexcept;

// The calling thread's time slice as the kernel reports it (sched_attr.sched_runtime), in nanoseconds;
// 0 where it cannot be read.
uint64_t current_time_slice_ns() noexcept;

}  // namespace nbdsnap
