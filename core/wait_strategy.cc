#include "core/wait_strategy.h"

#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <climits>

namespace sluice {
namespace {

void futex_wait(std::atomic<uint32_t>* word, uint32_t expected) {
  // Returns at once with EAGAIN if the word no longer holds `expected`; spurious wake-ups and
  // EINTR are fine because every caller re-checks its condition.
  syscall(SYS_futex, reinterpret_cast<uint32_t*>(word), FUTEX_WAIT_PRIVATE, expected, nullptr,
          nullptr, 0);
}

void futex_wake_all(std::atomic<uint32_t>* word) {
  syscall(SYS_futex, reinterpret_cast<uint32_t*>(word), FUTEX_WAKE_PRIVATE, INT_MAX, nullptr,
          nullptr, 0);
}

}  // namespace

int64_t IdleWaitStrategy::wait_for(int64_t sequence, std::span<const Sequence* const> dependents,
                                   const std::atomic<bool>& alerted) {
  IdleStrategy idle(config_);
  for (;;) {
    const int64_t available = minimum_sequence(dependents);
    if (available >= sequence) return available;
    // Acquire pairs with the release in SequenceBarrier::alert.
    if (alerted.load(std::memory_order_acquire)) return kAlerted;
    idle.idle();
  }
}

int64_t BlockingWaitStrategy::wait_for(int64_t sequence,
                                       std::span<const Sequence* const> dependents,
                                       const std::atomic<bool>& alerted) {
  int64_t available = minimum_sequence(dependents);
  if (available >= sequence) return available;

  // Announce ourselves before the re-check. Our increment and the signaller's read of waiters_
  // are both read-modify-writes of waiters_, so one is ordered before the other: if the
  // signaller's comes first, our acq_rel RMW reads from its release and we see the sequence it
  // published before it; if ours comes first, the signaller sees waiters_ > 0 and wakes us. That
  // is the whole no-lost-wake-up argument, with no fences.
  waiters_.fetch_add(1, std::memory_order_acq_rel);
  for (;;) {
    const uint32_t epoch = epoch_.load(std::memory_order_acquire);
    available = minimum_sequence(dependents);
    if (available >= sequence) break;
    if (alerted.load(std::memory_order_acquire)) {
      available = kAlerted;
      break;
    }
    futex_wait(&epoch_, epoch);
  }
  waiters_.fetch_sub(1, std::memory_order_release);
  return available;
}

void BlockingWaitStrategy::signal_all_when_blocking() noexcept {
  // An RMW rather than a load: it orders the caller's earlier sequence store against a waiter's
  // increment (see wait_for). It costs one locked instruction per publish, which is the price of
  // the blocking strategy; the others pay nothing here.
  if (waiters_.fetch_add(0, std::memory_order_acq_rel) == 0) return;
  // Release: a waiter that reads the new epoch also sees the sequence published before it.
  epoch_.fetch_add(1, std::memory_order_release);
  futex_wake_all(&epoch_);
}

std::unique_ptr<WaitStrategy> make_busy_spin_wait_strategy() {
  return std::make_unique<IdleWaitStrategy>(IdleConfig{.kind = IdleKind::kBusySpin});
}

std::unique_ptr<WaitStrategy> make_yielding_wait_strategy() {
  return std::make_unique<IdleWaitStrategy>(IdleConfig{.kind = IdleKind::kYield});
}

std::unique_ptr<WaitStrategy> make_backoff_wait_strategy() {
  return std::make_unique<IdleWaitStrategy>(IdleConfig{.kind = IdleKind::kBackoff});
}

std::unique_ptr<WaitStrategy> make_blocking_wait_strategy() {
  return std::make_unique<BlockingWaitStrategy>();
}

}  // namespace sluice
