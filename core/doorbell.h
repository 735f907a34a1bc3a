// Doorbell: lets a polling thread sleep when it has nothing to do and be woken as soon as
// another thread makes work for it, without a lost wake-up and at the cost of one atomic
// read-modify-write for the ringer when nobody sleeps.
//
// The sleeper's protocol:
//
//   const uint32_t ticket = bell.prepare();
//   if (work_is_visible()) bell.cancel(); else bell.wait(ticket, timeout_ns);
//
// The ringer publishes its work (a release store) and then calls ring(). Either the ringer's
// read-modify-write of the waiter count comes first, and the sleeper's (in prepare) then sees
// the work in its re-check; or the sleeper's comes first, and the ringer sees a waiter and bumps
// the epoch, which makes the futex wait return (or not start).
//
// Thread safety: any number of sleepers and ringers, from any threads.
#ifndef SLUICE_CORE_DOORBELL_H_
#define SLUICE_CORE_DOORBELL_H_

#include <linux/futex.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <climits>
#include <cstdint>

#include "core/cache_line.h"

namespace sluice {

class Doorbell {
 public:
  uint32_t prepare() noexcept {
    // acq_rel RMW: pairs with ring()'s RMW of the same word (see the header comment).
    waiters_.fetch_add(1, std::memory_order_acq_rel);
    return epoch_.load(std::memory_order_acquire);
  }
  void cancel() noexcept { waiters_.fetch_sub(1, std::memory_order_release); }

  // Sleeps until ring() (after prepare), the timeout, or a signal. False if the timeout
  // expired without a ring.
  bool wait(uint32_t ticket, int64_t timeout_ns) noexcept {
    timespec ts{static_cast<time_t>(timeout_ns / 1'000'000'000),
                static_cast<long>(timeout_ns % 1'000'000'000)};
    // Returns at once if the epoch moved since prepare(): the ring came in between.
    const long rc = syscall(SYS_futex, reinterpret_cast<uint32_t*>(&epoch_), FUTEX_WAIT_PRIVATE,
                            ticket, &ts, nullptr, 0);
    const bool timed_out = rc != 0 && errno == ETIMEDOUT;
    waiters_.fetch_sub(1, std::memory_order_release);
    return !timed_out;
  }

  void ring() noexcept {
    if (waiters_.fetch_add(0, std::memory_order_acq_rel) == 0) return;
    // Release: a sleeper that reads the new epoch also sees the work published before it.
    epoch_.fetch_add(1, std::memory_order_release);
    syscall(SYS_futex, reinterpret_cast<uint32_t*>(&epoch_), FUTEX_WAKE_PRIVATE, INT_MAX, nullptr,
            nullptr, 0);
  }

  int32_t sleepers() const noexcept { return waiters_.load(std::memory_order_acquire); }

 private:
  alignas(kCacheLineSize) std::atomic<uint32_t> epoch_{0};
  alignas(kCacheLineSize) std::atomic<int32_t> waiters_{0};
};

}  // namespace sluice

#endif  // SLUICE_CORE_DOORBELL_H_
