// RingBuffer<T>: preallocated power-of-two slots plus the sequencer that hands them out.
//
// Slots are constructed once, reused forever (producers overwrite them in place, so steady state
// allocates nothing) and indexed by sequence & mask. Two cache lines of padding at each end keep
// the first and last slots off lines that neighbouring objects write.
//
// Thread safety: as the sequencer's. A producer may write slot s only between claiming it and
// publishing it; a consumer may read slot s only after its barrier reported s readable, and
// only until its own progress sequence passes s.
#ifndef SLUICE_CORE_RING_BUFFER_H_
#define SLUICE_CORE_RING_BUFFER_H_

#include <bit>
#include <cassert>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <new>
#include <vector>

#include "core/cache_line.h"
#include "core/sequence.h"
#include "core/sequence_barrier.h"
#include "core/sequencer.h"
#include "core/wait_strategy.h"

namespace sluice {

template <typename T, typename SequencerT = SingleProducerSequencer>
class RingBuffer {
 public:
  using value_type = T;
  using sequencer_type = SequencerT;
  using barrier_type = SequenceBarrier<SequencerT>;

  // REQUIRES: size is a power of two >= 1; T is default-constructible.
  RingBuffer(int64_t size, WaitStrategy& wait_strategy)
      : mask_(size - 1), sequencer_(size, wait_strategy) {
    assert(size > 0 && std::has_single_bit(static_cast<uint64_t>(size)));
    const size_t total = static_cast<size_t>(size) + 2 * kPadding;
    storage_ = static_cast<T*>(::operator new(total * sizeof(T), std::align_val_t{kAlign}));
    size_t built = 0;
    try {
      for (; built < total; ++built) new (storage_ + built) T();
    } catch (...) {
      destroy(built);
      throw;
    }
    slots_ = storage_ + kPadding;
  }
  ~RingBuffer() { destroy(static_cast<size_t>(mask_ + 1) + 2 * kPadding); }
  RingBuffer(const RingBuffer&) = delete;
  RingBuffer& operator=(const RingBuffer&) = delete;

  T& operator[](int64_t sequence) noexcept { return slots_[sequence & mask_]; }
  const T& operator[](int64_t sequence) const noexcept { return slots_[sequence & mask_]; }

  int64_t size() const noexcept { return mask_ + 1; }
  SequencerT& sequencer() noexcept { return sequencer_; }
  const SequencerT& sequencer() const noexcept { return sequencer_; }
  const Sequence& cursor() const noexcept { return sequencer_.cursor(); }

  // Producer side, forwarded to the sequencer.
  int64_t next(int64_t n = 1) noexcept { return sequencer_.next(n); }
  ClaimResult try_next(int64_t n, int64_t* hi) noexcept { return sequencer_.try_next(n, hi); }
  ClaimResult try_next(int64_t* hi) noexcept { return sequencer_.try_next(1, hi); }
  void publish(int64_t sequence) noexcept { sequencer_.publish(sequence); }
  void publish(int64_t lo, int64_t hi) noexcept { sequencer_.publish(lo, hi); }
  int64_t remaining_capacity() const noexcept { return sequencer_.remaining_capacity(); }

  // The terminal consumers' progress: the producer never laps the slowest of them.
  // REQUIRES: no producer is running yet.
  void add_gating_sequence(const Sequence& sequence) { sequencer_.add_gating_sequence(sequence); }

 private:
  static constexpr size_t kAlign = alignof(T) > kCacheLineSize ? alignof(T) : kCacheLineSize;
  static constexpr size_t kPadding = (2 * kCacheLineSize + sizeof(T) - 1) / sizeof(T);

  void destroy(size_t count) noexcept {
    if (storage_ == nullptr) return;
    for (size_t i = 0; i < count; ++i) storage_[i].~T();
    ::operator delete(storage_, std::align_val_t{kAlign});
    storage_ = nullptr;
  }

  const int64_t mask_;
  T* storage_ = nullptr;
  T* slots_ = nullptr;
  SequencerT sequencer_;
};

}  // namespace sluice

#endif  // SLUICE_CORE_RING_BUFFER_H_
