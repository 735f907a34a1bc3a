// Cache-line size and the CPU relax hint shared by everything that spins.
#ifndef SLUICE_CORE_CACHE_LINE_H_
#define SLUICE_CORE_CACHE_LINE_H_

#include <cstddef>

namespace sluice {

// x86-64 lines are 64 bytes; the adjacent-line prefetcher pairs them, which is why ring slot
// arrays pad by two lines at each end.
inline constexpr std::size_t kCacheLineSize = 64;

// Tells the core we are in a spin loop (x86 `pause`): frees the sibling hyperthread and avoids
// the memory-order mis-speculation flush when the awaited line changes.
inline void cpu_relax() noexcept {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield" ::: "memory");
#endif
}

}  // namespace sluice

#endif  // SLUICE_CORE_CACHE_LINE_H_
