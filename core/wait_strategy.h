// WaitStrategy: how a consumer waits for a sequence to become available.
//
// Consumers that own a thread (BatchEventProcessor::run) wait through a WaitStrategy; agents
// poll instead and leave waiting to their runner's IdleStrategy. The fast path never calls the
// strategy: a barrier checks the sequences first and only waits when nothing is there.
//
// Thread safety: one WaitStrategy is shared by the producers and consumers of a ring. wait_for
// may be called from any number of consumer threads at once; signal_all_when_blocking from any
// thread that advanced a sequence somebody may be waiting on.
#ifndef SLUICE_CORE_WAIT_STRATEGY_H_
#define SLUICE_CORE_WAIT_STRATEGY_H_

#include <atomic>
#include <cstdint>
#include <limits>
#include <memory>
#include <span>

#include "core/cache_line.h"
#include "core/idle_strategy.h"
#include "core/sequence.h"

namespace sluice {

// wait_for's answer when the barrier was alerted (shutdown) rather than satisfied.
inline constexpr int64_t kAlerted = std::numeric_limits<int64_t>::min();

class WaitStrategy {
 public:
  explicit WaitStrategy(bool blocking) : blocking_(blocking) {}
  virtual ~WaitStrategy() = default;
  WaitStrategy(const WaitStrategy&) = delete;
  WaitStrategy& operator=(const WaitStrategy&) = delete;

  // Waits until min(dependents) >= sequence and returns that minimum, or returns kAlerted once
  // `alerted` is true. REQUIRES: dependents is not empty.
  virtual int64_t wait_for(int64_t sequence, std::span<const Sequence* const> dependents,
                           const std::atomic<bool>& alerted) = 0;

  // Wakes every thread blocked in wait_for. Called after a sequence advanced; a no-op for the
  // non-blocking strategies, and cheap for the blocking one when nobody waits.
  virtual void signal_all_when_blocking() noexcept {}

  // True when waiters sleep in the kernel and must be signalled; producers cache this so the
  // non-blocking strategies cost nothing on publish.
  bool is_blocking() const noexcept { return blocking_; }

 private:
  const bool blocking_;
};

// Busy-spin, yield and backoff waiting, by polling with an IdleStrategy of the given config.
class IdleWaitStrategy final : public WaitStrategy {
 public:
  explicit IdleWaitStrategy(IdleConfig config) : WaitStrategy(false), config_(config) {}

  int64_t wait_for(int64_t sequence, std::span<const Sequence* const> dependents,
                   const std::atomic<bool>& alerted) override;

 private:
  const IdleConfig config_;
};

// Parks waiters on a futex, woken by signal_all_when_blocking. The signaller pays one locked RMW
// when nobody waits, and a futex wake only when somebody does.
class BlockingWaitStrategy final : public WaitStrategy {
 public:
  BlockingWaitStrategy() : WaitStrategy(true) {}

  int64_t wait_for(int64_t sequence, std::span<const Sequence* const> dependents,
                   const std::atomic<bool>& alerted) override;
  void signal_all_when_blocking() noexcept override;

  // Threads currently inside wait_for (tests use it to know a consumer is parked).
  int32_t waiters() const noexcept { return waiters_.load(std::memory_order_acquire); }

 private:
  // The futex word: bumped by every wake, so a waiter that read it before the bump does not
  // sleep (futex_wait compares it atomically with the expected value).
  alignas(kCacheLineSize) std::atomic<uint32_t> epoch_{0};
  alignas(kCacheLineSize) std::atomic<int32_t> waiters_{0};
};

std::unique_ptr<WaitStrategy> make_busy_spin_wait_strategy();
std::unique_ptr<WaitStrategy> make_yielding_wait_strategy();
std::unique_ptr<WaitStrategy> make_backoff_wait_strategy();
std::unique_ptr<WaitStrategy> make_blocking_wait_strategy();

}  // namespace sluice

#endif  // SLUICE_CORE_WAIT_STRATEGY_H_
