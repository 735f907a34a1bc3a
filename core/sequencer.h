// Sequencers: claim slots in a ring and publish them to consumers.
//
// A producer claims a range with next(n) (waits for space) or try_next(n) (returns kFull instead
// of waiting: ingest uses it to push back on sockets), fills the slots, then publishes them.
// Consumers' progress sequences gate the producer so it never overwrites an unread slot.
//
// Thread safety:
// - SingleProducerSequencer: next/try_next/publish from one producer thread only. Any thread may
//   read cursor() and call highest_published.
// - MultiProducerSequencer: next/try_next/publish from any number of threads; each publishes
//   exactly the ranges it claimed.
// - add_gating_sequence: REQUIRES no producer is running yet (the gating list is read without
//   synchronisation afterwards).
#ifndef SLUICE_CORE_SEQUENCER_H_
#define SLUICE_CORE_SEQUENCER_H_

#include <atomic>
#include <bit>
#include <cassert>
#include <cstdint>
#include <memory>
#include <vector>

#include "core/cache_line.h"
#include "core/idle_strategy.h"
#include "core/sequence.h"
#include "core/wait_strategy.h"

namespace sluice {

enum class ClaimResult : uint8_t { kOk, kFull };

namespace internal {

// How a producer waits for space in next(): spin briefly, then yield, never sleep. A full ring
// is a consumer that is behind; sleeping would make the producer the bottleneck once it catches
// up. Callers who must not wait use try_next.
inline IdleConfig producer_wait_config() {
  return IdleConfig{.kind = IdleKind::kBackoff,
                    .max_spins = 100,
                    .max_yields = UINT32_MAX,
                    .min_park_ns = 0,
                    .max_park_ns = 0};
}

}  // namespace internal

class SingleProducerSequencer {
 public:
  // REQUIRES: buffer_size is a power of two >= 1.
  SingleProducerSequencer(int64_t buffer_size, WaitStrategy& wait_strategy)
      : buffer_size_(buffer_size),
        wait_strategy_(&wait_strategy),
        blocking_(wait_strategy.is_blocking()) {
    assert(buffer_size > 0 && std::has_single_bit(static_cast<uint64_t>(buffer_size)));
  }
  SingleProducerSequencer(const SingleProducerSequencer&) = delete;
  SingleProducerSequencer& operator=(const SingleProducerSequencer&) = delete;

  int64_t buffer_size() const noexcept { return buffer_size_; }
  const Sequence& cursor() const noexcept { return cursor_; }
  WaitStrategy& wait_strategy() const noexcept { return *wait_strategy_; }

  void add_gating_sequence(const Sequence& sequence) { gating_.push_back(&sequence); }

  // Claims the next n slots, waiting for consumers to free them; returns the highest claimed
  // sequence (the range is [hi - n + 1, hi]). REQUIRES: 1 <= n <= buffer_size.
  int64_t next(int64_t n = 1) noexcept {
    assert(n >= 1 && n <= buffer_size_);
    const int64_t next_value = next_value_ + n;
    const int64_t wrap_point = next_value - buffer_size_;
    if (wrap_point > cached_gating_ || cached_gating_ > next_value_) {
      IdleStrategy idle(internal::producer_wait_config());
      int64_t min_gating;
      while (wrap_point > (min_gating = minimum_sequence(gating_, next_value_))) idle.idle();
      cached_gating_ = min_gating;
    }
    next_value_ = next_value;
    return next_value;
  }

  // Claims n slots if they are free now; kFull (and nothing claimed) otherwise.
  ClaimResult try_next(int64_t n, int64_t* hi) noexcept {
    assert(n >= 1 && n <= buffer_size_);
    const int64_t next_value = next_value_ + n;
    const int64_t wrap_point = next_value - buffer_size_;
    if (wrap_point > cached_gating_ || cached_gating_ > next_value_) {
      const int64_t min_gating = minimum_sequence(gating_, next_value_);
      cached_gating_ = min_gating;
      if (wrap_point > min_gating) return ClaimResult::kFull;
    }
    next_value_ = next_value;
    *hi = next_value;
    return ClaimResult::kOk;
  }
  ClaimResult try_next(int64_t* hi) noexcept { return try_next(1, hi); }

  // Slots the producer could claim right now without waiting.
  int64_t remaining_capacity() const noexcept {
    const int64_t consumed = minimum_sequence(gating_, next_value_);
    return buffer_size_ - (next_value_ - consumed);
  }

  // Makes every sequence up to `hi` visible to consumers (a single producer publishes in order,
  // so the cursor alone says what is readable).
  void publish(int64_t hi) noexcept {
    cursor_.set(hi);
    if (blocking_) wait_strategy_->signal_all_when_blocking();
  }
  void publish(int64_t /*lo*/, int64_t hi) noexcept { publish(hi); }

  bool is_available(int64_t sequence) const noexcept { return sequence <= cursor_.get(); }

  // Consumers call this with [lo, available] where available <= cursor: every claimed slot up
  // to the cursor is published, so the whole range is readable.
  int64_t highest_published(int64_t /*lo*/, int64_t available) const noexcept {
    return available;
  }

 private:
  // Producer-only state, on its own line so consumers polling cursor_ never share it.
  alignas(kCacheLineSize) int64_t next_value_ = Sequence::kInitialValue;
  int64_t cached_gating_ = Sequence::kInitialValue;
  const int64_t buffer_size_;
  WaitStrategy* const wait_strategy_;
  const bool blocking_;
  std::vector<const Sequence*> gating_;
  Sequence cursor_;
};

class MultiProducerSequencer {
 public:
  // REQUIRES: buffer_size is a power of two >= 1.
  MultiProducerSequencer(int64_t buffer_size, WaitStrategy& wait_strategy)
      : buffer_size_(buffer_size),
        index_mask_(buffer_size - 1),
        index_shift_(std::countr_zero(static_cast<uint64_t>(buffer_size))),
        wait_strategy_(&wait_strategy),
        blocking_(wait_strategy.is_blocking()),
        available_(std::make_unique<std::atomic<int32_t>[]>(static_cast<size_t>(buffer_size))) {
    assert(buffer_size > 0 && std::has_single_bit(static_cast<uint64_t>(buffer_size)));
    // No slot has been published in any round yet.
    for (int64_t i = 0; i < buffer_size; ++i) available_[i].store(-1, std::memory_order_relaxed);
  }
  MultiProducerSequencer(const MultiProducerSequencer&) = delete;
  MultiProducerSequencer& operator=(const MultiProducerSequencer&) = delete;

  int64_t buffer_size() const noexcept { return buffer_size_; }
  // The highest claimed sequence: claimed is not published; consumers use highest_published.
  const Sequence& cursor() const noexcept { return cursor_; }
  WaitStrategy& wait_strategy() const noexcept { return *wait_strategy_; }

  void add_gating_sequence(const Sequence& sequence) { gating_.push_back(&sequence); }

  int64_t next(int64_t n = 1) noexcept {
    assert(n >= 1 && n <= buffer_size_);
    IdleStrategy idle(internal::producer_wait_config());
    for (;;) {
      int64_t hi;
      if (claim(n, &hi)) return hi;
      idle.idle();
    }
  }

  ClaimResult try_next(int64_t n, int64_t* hi) noexcept {
    assert(n >= 1 && n <= buffer_size_);
    return claim(n, hi) ? ClaimResult::kOk : ClaimResult::kFull;
  }
  ClaimResult try_next(int64_t* hi) noexcept { return try_next(1, hi); }

  int64_t remaining_capacity() const noexcept {
    const int64_t produced = cursor_.get();
    const int64_t consumed = minimum_sequence(gating_, produced);
    return buffer_size_ - (produced - consumed);
  }

  void publish(int64_t sequence) noexcept {
    set_available(sequence);
    if (blocking_) wait_strategy_->signal_all_when_blocking();
  }
  void publish(int64_t lo, int64_t hi) noexcept {
    for (int64_t s = lo; s <= hi; ++s) set_available(s);
    if (blocking_) wait_strategy_->signal_all_when_blocking();
  }

  bool is_available(int64_t sequence) const noexcept {
    // Acquire pairs with set_available's release: seeing the round means seeing the slot.
    return available_[sequence & index_mask_].load(std::memory_order_acquire) ==
           static_cast<int32_t>(sequence >> index_shift_);
  }

  // The highest sequence in [lo, available] below which every slot is published: producers
  // finish out of order, and a consumer must stop at the first gap.
  int64_t highest_published(int64_t lo, int64_t available) const noexcept {
    for (int64_t s = lo; s <= available; ++s) {
      if (!is_available(s)) return s - 1;
    }
    return available;
  }

 private:
  // One attempt to claim n slots; false if the ring is full (or another producer won the race
  // and the caller should retry, which next() does and try_next does by looping here).
  bool claim(int64_t n, int64_t* hi) noexcept {
    for (;;) {
      const int64_t current = cursor_.get();
      const int64_t next_value = current + n;
      const int64_t wrap_point = next_value - buffer_size_;
      const int64_t cached = gating_cache_.get();
      if (wrap_point > cached || cached > current) {
        const int64_t min_gating = minimum_sequence(gating_, current);
        if (wrap_point > min_gating) return false;
        gating_cache_.set(min_gating);
        continue;  // re-read the cursor: time passed while we scanned the consumers
      }
      if (cursor_.compare_and_set(current, next_value)) {
        *hi = next_value;
        return true;
      }
    }
  }

  void set_available(int64_t sequence) noexcept {
    // Release: the slot's contents happen-before any consumer that sees this round number.
    available_[sequence & index_mask_].store(static_cast<int32_t>(sequence >> index_shift_),
                                             std::memory_order_release);
  }

  const int64_t buffer_size_;
  const int64_t index_mask_;
  const int index_shift_;
  WaitStrategy* const wait_strategy_;
  const bool blocking_;
  std::unique_ptr<std::atomic<int32_t>[]> available_;
  std::vector<const Sequence*> gating_;
  Sequence cursor_;
  Sequence gating_cache_;
};

}  // namespace sluice

#endif  // SLUICE_CORE_SEQUENCER_H_
