// Sequence: a padded, single-cache-line atomic int64 that marks a position in a ring.
//
// Thread safety: one thread writes a Sequence (its owner: a producer's cursor or a consumer's
// progress); any thread may read it. The multi-producer cursor is the one exception and is
// advanced with compare_and_set.
#ifndef SLUICE_CORE_SEQUENCE_H_
#define SLUICE_CORE_SEQUENCE_H_

#include <atomic>
#include <cstdint>
#include <limits>
#include <span>

#include "core/cache_line.h"

namespace sluice {

class alignas(kCacheLineSize) Sequence {
 public:
  // Nothing published or consumed yet: the first slot is sequence 0.
  static constexpr int64_t kInitialValue = -1;

  explicit Sequence(int64_t initial = kInitialValue) noexcept : value_(initial) {}
  Sequence(const Sequence&) = delete;
  Sequence& operator=(const Sequence&) = delete;

  // Acquire: a reader that sees sequence s also sees every slot write its owner made before
  // publishing s.
  int64_t get() const noexcept { return value_.load(std::memory_order_acquire); }

  // Release: pairs with get(); orders the owner's slot writes before the new value.
  void set(int64_t value) noexcept { value_.store(value, std::memory_order_release); }

  // acq_rel: a winning claim both observes earlier claims and is observed by later ones.
  bool compare_and_set(int64_t expected, int64_t desired) noexcept {
    return value_.compare_exchange_strong(expected, desired, std::memory_order_acq_rel,
                                          std::memory_order_acquire);
  }

 private:
  std::atomic<int64_t> value_;
  // alignas gives the value its own line; the padding keeps the object a whole line long so
  // arrays and neighbours never share it.
  char padding_[kCacheLineSize - sizeof(std::atomic<int64_t>)];
};

static_assert(sizeof(Sequence) == kCacheLineSize);
static_assert(alignof(Sequence) == kCacheLineSize);
static_assert(std::atomic<int64_t>::is_always_lock_free);

// The smallest value among `sequences`, or `fallback` when there are none.
inline int64_t minimum_sequence(std::span<const Sequence* const> sequences,
                                int64_t fallback = std::numeric_limits<int64_t>::max()) noexcept {
  int64_t minimum = fallback;
  for (const Sequence* s : sequences) {
    const int64_t v = s->get();
    if (v < minimum) minimum = v;
  }
  return minimum;
}

}  // namespace sluice

#endif  // SLUICE_CORE_SEQUENCE_H_
