// Clock: monotonic nanosecond timestamps, read from the TSC when that is safe.
//
// Contract:
//   - now_ns() is comparable with clock_gettime(CLOCK_MONOTONIC) (same epoch and unit) and never
//     goes backwards on one thread. With the TSC it is CLOCK_MONOTONIC extrapolated through a
//     rate calibrated once over ~20 ms, so it drifts from CLOCK_MONOTONIC by the calibration
//     error (typically a few ppm, plus NTP slewing that CLOCK_MONOTONIC sees and the TSC does
//     not). Use it for intervals and ordering, not to correlate with other processes' stamps.
//   - The TSC is used only when CPUID reports it invariant (constant rate, runs in deep C-states)
//     and calibration gives a sane rate; otherwise every read is clock_gettime(CLOCK_MONOTONIC).
//   - rdtsc is not serializing: a stamp may move by a few dozen cycles relative to neighbouring
//     instructions. Fine for spans of ~100 ns and more.
//   - The first use of the process-wide clock (now_ns() and friends, or any Clock(kAuto))
//     blocks ~20 ms to calibrate; call now_ns() once at startup to keep that off the hot path.
//
// Thread safety: all functions may be called from any thread; calibration runs exactly once
// (function-local static). A Clock is immutable after construction and may be shared.
#ifndef SLUICE_CORE_CLOCK_H_
#define SLUICE_CORE_CLOCK_H_

#include <time.h>

#include <cstdint>

namespace sluice {

namespace clock_internal {
// The tick * multiplier product needs up to ~96 bits.
__extension__ typedef unsigned __int128 Uint128;
inline constexpr int kMultShift = 32;
}  // namespace clock_internal

// Plain clock_gettime readings, for when the exact kernel clock is wanted.
inline int64_t monotonic_ns() noexcept {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
}
// Wall-clock time since the Unix epoch; can jump (settimeofday, NTP step). Stamps only.
inline int64_t realtime_ns() noexcept {
  timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
}

enum class ClockSource : uint8_t {
  kAuto,       // invariant TSC if available and calibrated, else CLOCK_MONOTONIC
  kMonotonic,  // always clock_gettime(CLOCK_MONOTONIC); for tests and for comparison
};

class Clock {
 public:
  explicit Clock(ClockSource source = ClockSource::kAuto);

  int64_t now_ns() const noexcept { return ticks_to_ns(now_ticks()); }

  // Raw reading for hot loops that stamp now and convert later. Ticks are TSC cycles when
  // tsc_in_use(), else nanoseconds; only ticks_to_ns() of the same Clock interprets them.
  int64_t now_ticks() const noexcept {
#if defined(__x86_64__) || defined(__i386__)
    if (use_tsc_) return static_cast<int64_t>(__builtin_ia32_rdtsc());
#endif
    return monotonic_ns();
  }

  int64_t ticks_to_ns(int64_t ticks) const noexcept {
    if (!use_tsc_) return ticks;
    using clock_internal::Uint128;
    // Unsigned subtraction: defined even for ticks far from the base; the sign is handled below
    // so stamps taken before calibration still convert correctly.
    const uint64_t delta = static_cast<uint64_t>(ticks) - static_cast<uint64_t>(tsc_base_);
    if (static_cast<int64_t>(delta) >= 0) {
      return ns_base_ +
             static_cast<int64_t>((Uint128{delta} * mult_) >> clock_internal::kMultShift);
    }
    return ns_base_ -
           static_cast<int64_t>((Uint128{0 - delta} * mult_) >> clock_internal::kMultShift);
  }

  bool tsc_in_use() const noexcept { return use_tsc_; }
  // Calibrated TSC rate; 0 when the TSC is not in use.
  double tsc_ghz() const noexcept { return use_tsc_ ? tsc_ghz_ : 0.0; }

 private:
  bool use_tsc_ = false;
  uint64_t mult_ = 0;  // nanoseconds per tick, fixed point with kMultShift fraction bits
  int64_t tsc_base_ = 0;
  int64_t ns_base_ = 0;
  double tsc_ghz_ = 0.0;
};

// The process-wide Clock(ClockSource::kAuto).
const Clock& default_clock() noexcept;

inline int64_t now_ns() noexcept { return default_clock().now_ns(); }
inline int64_t now_ticks() noexcept { return default_clock().now_ticks(); }
inline int64_t ticks_to_ns(int64_t ticks) noexcept { return default_clock().ticks_to_ns(ticks); }
inline bool tsc_in_use() noexcept { return default_clock().tsc_in_use(); }
inline double tsc_ghz() noexcept { return default_clock().tsc_ghz(); }

// True if CPUID reports an invariant TSC (whether or not calibration then accepted it).
bool tsc_is_invariant() noexcept;

}  // namespace sluice

#endif  // SLUICE_CORE_CLOCK_H_
