// Counter: a single-writer 64-bit statistic that any thread (or another process, through a
// mapped stats file) may read without locks.
//
// The owner updates with a relaxed load and a release store, never a read-modify-write: there
// is one writer, so no update can be lost, and a plain store is far cheaper on the hot path
// than a locked add. Readers see some recent value.
//
// Counters are plain standard-layout objects, so a component's counter struct can live in
// ordinary memory or be placed in the memory-mapped stats file.
//
// Thread safety: add/set from the owning thread only; get from anywhere.
#ifndef SLUICE_CORE_COUNTER_H_
#define SLUICE_CORE_COUNTER_H_

#include <atomic>
#include <cstdint>

namespace sluice {

class Counter {
 public:
  void add(int64_t n = 1) noexcept {
    // Relaxed load: only this thread writes the value. Release store: a reader that sees it
    // also sees what the owner did before counting.
    value_.store(value_.load(std::memory_order_relaxed) + n, std::memory_order_release);
  }
  void set(int64_t v) noexcept { value_.store(v, std::memory_order_release); }
  int64_t get() const noexcept { return value_.load(std::memory_order_acquire); }

 private:
  std::atomic<int64_t> value_{0};
};

static_assert(sizeof(Counter) == sizeof(int64_t));
static_assert(std::atomic<int64_t>::is_always_lock_free);

}  // namespace sluice

#endif  // SLUICE_CORE_COUNTER_H_
