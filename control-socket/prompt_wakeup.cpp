// SPDX-License-Identifier: BSD-3-Clause
// prompt_wakeup.cpp — a shorter EEVDF time slice for the calling thread (see prompt_wakeup.h).
#include "prompt_wakeup.h"

#include <linux/sched.h>
#include <sched.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstring>

namespace nbdsnap {

namespace {

// struct sched_attr as sched_setattr(2) documents it (the first version, 48 bytes; glibc 2.36 has no
// wrapper and <linux/sched/types.h> is not in every kernel-headers package).
struct SchedAttr {
  uint32_t size;
  uint32_t sched_policy;
  uint64_t sched_flags;
  int32_t sched_nice;
  uint32_t sched_priority;
  uint64_t sched_runtime;
  uint64_t sched_deadline;
  uint64_t sched_period;
};
static_assert(sizeof(SchedAttr) == 48);

bool read_attr(SchedAttr& attr) {
  std::memset(&attr, 0, sizeof(attr));
  return ::syscall(SYS_sched_getattr, 0, &attr, static_cast<unsigned>(sizeof(attr)), 0u) == 0;
}

}  // namespace

bool prefer_prompt_wakeups() noexcept {
  SchedAttr attr;
  if (!read_attr(attr) || attr.sched_policy != SCHED_OTHER) return false;
  attr.size = sizeof(attr);
  attr.sched_flags = 0;  // no reset-on-fork, nothing kept aside: policy and nice are written back as read
  attr.sched_runtime = kPromptWakeupSliceNs;
  if (::syscall(SYS_sched_setattr, 0, &attr, 0u) != 0) return false;
  SchedAttr now;
  return read_attr(now) && now.sched_runtime == kPromptWakeupSliceNs;
}

uint64_t current_time_slice_ns() noexcept {
  SchedAttr attr;
  return read_attr(attr) ? attr.sched_runtime : 0;
}

}  // namespace nbdsnap
