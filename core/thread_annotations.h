// SPDX-License-Identifier: BSD-3-Clause
// thread_annotations.h — clang's thread-safety attributes as macros, so the compiler checks what each mutex
// guards and which functions need it held (-Wthread-safety; after LevelDB's port/thread_annotations.h).
//
// Other compilers see nothing. Annotate every mutex-guarded member with GUARDED_BY, every function that must
// be called with a lock held with REQUIRES, and every function that takes a lock itself with EXCLUDES when a
// caller holding it would deadlock. The lock order of the engine is written in core/lock_order.h.
#pragma once

#if defined(__clang__)
#define NBDSNAP_THREAD_ANNOTATION(x) __attribute__((x))
#else
#define NBDSNAP_THREAD_ANNOTATION(x)
#endif

#define CAPABILITY(x) NBDSNAP_THREAD_ANNOTATION(capability(x))
#define SCOPED_CAPABILITY NBDSNAP_THREAD_ANNOTATION(scoped_lockable)
#define GUARDED_BY(x) NBDSNAP_THREAD_ANNOTATION(guarded_by(x))
#define PT_GUARDED_BY(x) NBDSNAP_THREAD_ANNOTATION(pt_guarded_by(x))
#define ACQUIRED_BEFORE(...) NBDSNAP_THREAD_ANNOTATION(acquired_before(__VA_ARGS__))
#define ACQUIRED_AFTER(...) NBDSNAP_THREAD_ANNOTATION(acquired_after(__VA_ARGS__))
#define REQUIRES(...) NBDSNAP_THREAD_ANNOTATION(requires_capability(__VA_ARGS__))
#define ACQUIRE(...) NBDSNAP_THREAD_ANNOTATION(acquire_capability(__VA_ARGS__))
#define RELEASE(...) NBDSNAP_THREAD_ANNOTATION(release_capability(__VA_ARGS__))
#define TRY_ACQUIRE(...) NBDSNAP_THREAD_ANNOTATION(try_acquire_capability(__VA_ARGS__))
#define EXCLUDES(...) NBDSNAP_THREAD_ANNOTATION(locks_excluded(__VA_ARGS__))
#define ASSERT_CAPABILITY(x) NBDSNAP_THREAD_ANNOTATION(assert_capability(x))
#define RETURN_CAPABILITY(x) NBDSNAP_THREAD_ANNOTATION(lock_returned(x))
#define NO_THREAD_SAFETY_ANALYSIS NBDSNAP_THREAD_ANNOTATION(no_thread_safety_analysis)
