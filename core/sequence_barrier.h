// SequenceBarrier: what a consumer may read, given the producer's cursor and the consumers it
// depends on.
//
// A consumer with no dependencies reads what the producer published; one that depends on other
// consumers reads only what all of them have finished. Wiring barriers this way expresses
// pipelines (A then B then C), multicast (A, B, C each on the cursor) and diamonds (A and B on
// the cursor, C on A and B).
//
// Thread safety: poll and wait_for are called by the one consumer thread that owns the barrier;
// alert and clear_alert may be called from any thread.
#ifndef SLUICE_CORE_SEQUENCE_BARRIER_H_
#define SLUICE_CORE_SEQUENCE_BARRIER_H_

#include <atomic>
#include <cstdint>
#include <span>
#include <vector>

#include "core/cache_line.h"
#include "core/idle_strategy.h"
#include "core/sequence.h"
#include "core/wait_strategy.h"

namespace sluice {

template <typename SequencerT>
class SequenceBarrier {
 public:
  // `dependents` are the progress sequences of upstream consumers; empty means "the producer".
  SequenceBarrier(const SequencerT& sequencer, std::vector<const Sequence*> dependents)
      : sequencer_(sequencer),
        wait_strategy_(sequencer.wait_strategy()),
        on_cursor_(dependents.empty()),
        dependents_(on_cursor_ ? std::vector<const Sequence*>{&sequencer.cursor()}
                               : std::move(dependents)) {}
  SequenceBarrier(const SequenceBarrier&) = delete;
  SequenceBarrier& operator=(const SequenceBarrier&) = delete;

  // Non-blocking: the highest sequence readable now, which is < next when nothing new is.
  int64_t poll(int64_t next) const noexcept {
    const int64_t available = minimum_sequence(dependents_);
    return readable(next, available);
  }

  // Waits through the ring's WaitStrategy until `next` is readable; returns the highest
  // readable sequence (>= next), or kAlerted after alert().
  int64_t wait_for(int64_t next) {
    for (;;) {
      const int64_t available = wait_strategy_.wait_for(next, dependents_, alerted_);
      if (available == kAlerted) return kAlerted;
      const int64_t readable_hi = readable(next, available);
      if (readable_hi >= next) return readable_hi;
      // A multi-producer claimed `next` but has not published it yet: the window is a few
      // instructions unless that producer was preempted, so give the core away while waiting.
      if (alerted_.load(std::memory_order_acquire)) return kAlerted;
      idle_.idle();
    }
  }

  // Wakes the consumer out of wait_for with kAlerted (used to stop it).
  void alert() noexcept {
    // Release pairs with the acquire loads in the wait strategies.
    alerted_.store(true, std::memory_order_release);
    wait_strategy_.signal_all_when_blocking();
  }
  void clear_alert() noexcept { alerted_.store(false, std::memory_order_release); }
  bool is_alerted() const noexcept { return alerted_.load(std::memory_order_acquire); }

  std::span<const Sequence* const> dependents() const noexcept { return dependents_; }

 private:
  int64_t readable(int64_t next, int64_t available) const noexcept {
    // Upstream consumers only ever pass published slots, so only a barrier that reads the
    // cursor itself must look for slots a multi-producer claimed but has not published.
    if (!on_cursor_ || available < next) return available;
    return sequencer_.highest_published(next, available);
  }

  const SequencerT& sequencer_;
  WaitStrategy& wait_strategy_;
  const bool on_cursor_;
  const std::vector<const Sequence*> dependents_;
  IdleStrategy idle_{IdleConfig{.kind = IdleKind::kYield}};
  alignas(kCacheLineSize) std::atomic<bool> alerted_{false};
};

}  // namespace sluice

#endif  // SLUICE_CORE_SEQUENCE_BARRIER_H_
