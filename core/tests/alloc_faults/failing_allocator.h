// SPDX-License-Identifier: BSD-3-Clause
// failing_allocator.h — makes the N-th allocation of the calling thread throw std::bad_alloc, to try a call
// with an allocation failure at each step it takes (the whole kind of fault, not one chosen place).
//
// The test program replaces the global operator new and delete (failing_allocator.cpp) with malloc and free
// behind a per-thread countdown. It is its own program because the replacement applies to every allocation
// of a process: the other unit tests keep the sanitizers' own operator new. Only the arming thread's
// allocations count, so the engine's background threads (buffer pool, events) are never failed.
#pragma once

#include <cstdint>

namespace nbdsnap::test {

// Arms the countdown: after `successes` more allocations of the calling thread have succeeded, the next one
// fails with std::bad_alloc, once (the ones after it succeed: a transient shortage, as when another process
// frees memory again).
void fail_allocation_after(uint64_t successes);
// Disarms the countdown. Returns whether an allocation was failed since it was armed.
bool disarm_allocation_failure();

}  // namespace nbdsnap::test
