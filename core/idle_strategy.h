// IdleStrategy: what a polling thread does when a pass found no work.
//
// An agent runner calls idle(work_count) after every do_work(); work > 0 resets the strategy,
// work == 0 advances it. One concrete class with a kind switch rather than a virtual hierarchy,
// so the kind is chosen at run time (config, --idle) and the call still inlines.
//
// Thread safety: an IdleStrategy holds per-thread backoff state; give each thread its own copy.
#ifndef SLUICE_CORE_IDLE_STRATEGY_H_
#define SLUICE_CORE_IDLE_STRATEGY_H_

#include <cstdint>
#include <string_view>

#include "absl/status/statusor.h"

namespace sluice {

enum class IdleKind : uint8_t {
  kBusySpin,  // pause and retry: lowest latency, burns the core; only with threads <= cores
  kYield,     // sched_yield each time: gives the core to another runnable thread
  kBackoff,   // spin, then yield, then sleep with doubling periods up to a bound
};

// Where a backoff strategy parks once spinning and yielding gave nothing: by default a
// nanosleep of the current park period; a Parker can instead block until the work it waits for
// arrives (a futex doorbell, an io_uring wait), returning early when woken.
class Parker {
 public:
  virtual ~Parker() = default;
  // Parks for at most `max_ns`; may return earlier (woken, or work already there).
  virtual void park(int64_t max_ns) noexcept = 0;
};

struct IdleConfig {
  IdleKind kind = IdleKind::kBackoff;
  // kBackoff: this many idle passes spin, the next max_yields yield, the rest sleep.
  uint32_t max_spins = 200;
  uint32_t max_yields = 50;
  int64_t min_park_ns = 1'000;
  int64_t max_park_ns = 1'000'000;
  Parker* parker = nullptr;  // kBackoff's park; null: nanosleep. Not owned; outlives the strategy.
};

// Parses "busy", "yield" or "backoff" (the --idle flag).
absl::StatusOr<IdleKind> parse_idle_kind(std::string_view name);
std::string_view idle_kind_name(IdleKind kind);

class IdleStrategy {
 public:
  explicit IdleStrategy(IdleConfig config = {}) noexcept : config_(config) {}

  // Called after each unit of polling with the amount of work it did.
  void idle(int work_count) noexcept {
    if (work_count > 0) {
      reset();
      return;
    }
    idle();
  }

  // One idle step: the strategy has found nothing to do.
  void idle() noexcept;

  void reset() noexcept {
    spins_ = 0;
    yields_ = 0;
    park_ns_ = config_.min_park_ns;
  }

  const IdleConfig& config() const noexcept { return config_; }
  // How long the next park would sleep (kBackoff), for tests and diagnostics.
  int64_t next_park_ns() const noexcept { return park_ns_; }

 private:
  IdleConfig config_;
  uint32_t spins_ = 0;
  uint32_t yields_ = 0;
  int64_t park_ns_ = config_.min_park_ns;
};

}  // namespace sluice

#endif  // SLUICE_CORE_IDLE_STRATEGY_H_
