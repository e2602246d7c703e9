// SPDX-License-Identifier: BSD-3-Clause
// sanitizer_init_first.cpp — a library preloaded into nbdkit after the sanitizer runtime (tests of the
// instrumented filter only, NBDSNAP_NBDKIT_PRELOAD): it initialises that runtime before any other library's
// constructor runs.
//
// Why: nbdkit is not instrumented, so the runtime is preloaded and, preloaded, initialises at the first call
// it intercepts. Debian 12's nbdkit links GnuTLS, and GnuTLS's p11-kit calls newlocale(LC_ALL_MASK, "POSIX")
// from its constructor, which glibc runs before the preloaded runtime's own. newlocale() calls malloc() while
// it holds glibc's locale lock as a writer; ASan's malloc() then initialises ASan, which calls dlerror(),
// whose gettext takes and releases that lock as a reader. The lock is not recursive: that release ends the
// writer's hold, and newlocale's own release then takes away a reader that never was. Every ASan nbdkit
// started with a lock counting -1 readers (seen in gdb: __readers 0xfffffff9). After the first translated
// message (strerror, %m: a refused or broken connection), the next writer waits forever: p11-kit's
// freelocale() in nbdkit's exit handlers, so nbdkit never exited, or a newlocale() in a running server (the
// CI run of 2026-12-03 lost two filter tests to hangs, one seen in those exit handlers). A direct test:
// nbdkit -f -v with the filter and libasan preloaded hung at exit after one nbdinfo 10 times in 10; with this
// library preloaded too, 0 times in 10.
//
// Linked with -z initfirst (DF_1_INITFIRST), glibc runs this constructor before every other one, so the
// runtime initialises while no lock is held.

// The runtimes' entry points, resolved at load time from the preloaded runtime; null when it is not loaded.
// NOLINTBEGIN(bugprone-reserved-identifier,cert-dcl37-c,cert-dcl51-cpp) the sanitizers' own names
extern "C" {
void __asan_init() __attribute__((weak));
void __tsan_init() __attribute__((weak));
}
// NOLINTEND(bugprone-reserved-identifier,cert-dcl37-c,cert-dcl51-cpp)

namespace {

// Both are idempotent: a later call (an instrumented library's own constructor) does nothing.
__attribute__((constructor)) void initialise_sanitizer_first() {
  if (__asan_init != nullptr) __asan_init();
  if (__tsan_init != nullptr) __tsan_init();
}

}  // namespace
