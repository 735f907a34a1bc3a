#include "core/pages.h"

#include <sys/mman.h>

#include <algorithm>
#include <cstdint>

namespace sluice {
namespace {

constexpr size_t kPage = 4096;
constexpr size_t kStep = size_t{2} << 20;  // one madvise, or one stop check, per 2 MiB

// A write to every page [p, p + bytes) reaches. Each store writes back the byte it read, which
// keeps the contents but first maps the shared zero page on the read, then replaces it on the
// write.
void touch_pages(std::byte* p, size_t bytes) noexcept {
  if (bytes == 0) return;
  auto touch = [](std::byte* b) { *reinterpret_cast<volatile std::byte*>(b) = *b; };
  touch(p);
  const uintptr_t start = reinterpret_cast<uintptr_t>(p);
  for (uintptr_t a = (start / kPage + 1) * kPage; a < start + bytes; a += kPage) {
    touch(reinterpret_cast<std::byte*>(a));
  }
}

// MADV_POPULATE_WRITE (Linux 5.14): write faults for every page without touching the memory.
// No page maps the zero page first, so none is replaced later: that replacement flushes the
// TLB of every CPU running the process (an IPI to a busy-spinning agent; a VM exit each on a
// KVM guest), and was ~7 % of a snapshot writer's profile while it faulted buffers in.
bool populate_write(std::byte* p, size_t bytes) noexcept {
  if (reinterpret_cast<uintptr_t>(p) % kPage != 0) return false;
  const size_t span = (bytes + kPage - 1) / kPage * kPage;
  return ::madvise(p, span, MADV_POPULATE_WRITE) == 0;
}

void fault_in_step(std::byte* p, size_t bytes) noexcept {
  if (!populate_write(p, bytes)) touch_pages(p, bytes);  // older kernels, unaligned blocks
}

}  // namespace

void fault_in(std::byte* p, size_t bytes) noexcept {
  static const std::atomic<bool> never{false};
  (void)fault_in(p, bytes, never);
}

bool fault_in(std::byte* p, size_t bytes, const std::atomic<bool>& stop) noexcept {
  for (size_t off = 0; off < bytes; off += kStep) {
    if (stop.load(std::memory_order_relaxed)) return false;
    fault_in_step(p + off, std::min(kStep, bytes - off));
  }
  return true;
}

}  // namespace sluice
