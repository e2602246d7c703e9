// SPDX-License-Identifier: BSD-3-Clause
// failing_allocator.cpp — the replaced global operator new and delete of the allocation-fault tests (see
// failing_allocator.h). Every form is replaced, so that memory from malloc is always given back with free:
// ASan reports a block from malloc freed by its own operator delete as an alloc-dealloc mismatch.
#include "failing_allocator.h"

#include <cstdlib>
#include <new>

// The sanitizers' runtime, when linked: prints the calling stack, symbolised.
extern "C" void __sanitizer_print_stack_trace() __attribute__((weak));

namespace {

// NBDSNAP_ALLOC_FAULT_STACKS=1 prints where each failed allocation was made (sanitizer builds), to find
// which step of a call a failing case stopped at.
bool print_stacks() {
  static const bool print = std::getenv("NBDSNAP_ALLOC_FAULT_STACKS") != nullptr;
  return print;
}

thread_local bool armed = false;
thread_local uint64_t successes_left = 0;
thread_local bool failed = false;

// Whether this allocation is to fail (counts it when armed).
bool fail_this_allocation() {
  if (!armed) return false;
  if (successes_left > 0) {
    --successes_left;
    return false;
  }
  armed = false;  // once
  failed = true;
  if (print_stacks() && __sanitizer_print_stack_trace != nullptr) __sanitizer_print_stack_trace();
  return true;
}

void* allocate(std::size_t size) {
  if (fail_this_allocation()) throw std::bad_alloc();
  void* p = std::malloc(size == 0 ? 1 : size);
  if (p == nullptr) throw std::bad_alloc();
  return p;
}

void* allocate_aligned(std::size_t size, std::align_val_t alignment) {
  if (fail_this_allocation()) throw std::bad_alloc();
  const auto align = static_cast<std::size_t>(alignment);
  // aligned_alloc wants a size that is a multiple of the alignment.
  void* p = std::aligned_alloc(align, ((size == 0 ? 1 : size) + align - 1) / align * align);
  if (p == nullptr) throw std::bad_alloc();
  return p;
}

}  // namespace

namespace nbdsnap::test {

void fail_allocation_after(uint64_t successes) {
  successes_left = successes;
  failed = false;
  armed = true;
}

bool disarm_allocation_failure() {
  armed = false;
  return failed;
}

}  // namespace nbdsnap::test

void* operator new(std::size_t size) {
  return allocate(size);
}
void* operator new[](std::size_t size) {
  return allocate(size);
}
void* operator new(std::size_t size, std::align_val_t alignment) {
  return allocate_aligned(size, alignment);
}
void* operator new[](std::size_t size, std::align_val_t alignment) {
  return allocate_aligned(size, alignment);
}
void* operator new(std::size_t size, const std::nothrow_t&) noexcept {
  try {
    return allocate(size);
  } catch (const std::bad_alloc&) {
    return nullptr;
  }
}
void* operator new[](std::size_t size, const std::nothrow_t&) noexcept {
  try {
    return allocate(size);
  } catch (const std::bad_alloc&) {
    return nullptr;
  }
}
void* operator new(std::size_t size, std::align_val_t alignment, const std::nothrow_t&) noexcept {
  try {
    return allocate_aligned(size, alignment);
  } catch (const std::bad_alloc&) {
    return nullptr;
  }
}
void* operator new[](std::size_t size, std::align_val_t alignment, const std::nothrow_t&) noexcept {
  try {
    return allocate_aligned(size, alignment);
  } catch (const std::bad_alloc&) {
    return nullptr;
  }
}
void operator delete(void* p) noexcept {
  std::free(p);
}
void operator delete[](void* p) noexcept {
  std::free(p);
}
void operator delete(void* p, std::size_t) noexcept {
  std::free(p);
}
void operator delete[](void* p, std::size_t) noexcept {
  std::free(p);
}
void operator delete(void* p, std::align_val_t) noexcept {
  std::free(p);
}
void operator delete[](void* p, std::align_val_t) noexcept {
  std::free(p);
}
void operator delete(void* p, std::size_t, std::align_val_t) noexcept {
  std::free(p);
}
void operator delete[](void* p, std::size_t, std::align_val_t) noexcept {
  std::free(p);
}
void operator delete(void* p, const std::nothrow_t&) noexcept {
  std::free(p);
}
void operator delete[](void* p, const std::nothrow_t&) noexcept {
  std::free(p);
}
void operator delete(void* p, std::align_val_t, const std::nothrow_t&) noexcept {
  std::free(p);
}
void operator delete[](void* p, std::align_val_t, const std::nothrow_t&) noexcept {
  std::free(p);
}
