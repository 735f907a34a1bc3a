#include "core/clock.h"

#include <time.h>

#include <limits>

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#endif

namespace sluice {
namespace {

struct TscCalibration {
  bool usable = false;
  uint64_t mult = 0;
  int64_t tsc_base = 0;
  int64_t ns_base = 0;
  double ghz = 0.0;
};

#if defined(__x86_64__) || defined(__i386__)

struct TscSample {
  int64_t tsc;
  int64_t ns;
};

// Brackets a clock_gettime between two TSC reads and keeps the tightest bracket, so a
// preemption or SMI in the middle of one attempt does not skew the pairing.
TscSample paired_sample() {
  TscSample best{0, 0};
  int64_t best_width = std::numeric_limits<int64_t>::max();
  for (int attempt = 0; attempt < 7; ++attempt) {
    const auto before = static_cast<int64_t>(__builtin_ia32_rdtsc());
    const int64_t ns = monotonic_ns();
    const auto after = static_cast<int64_t>(__builtin_ia32_rdtsc());
    const int64_t width = after - before;
    if (width >= 0 && width < best_width) {
      best_width = width;
      best = TscSample{before + width / 2, ns};
    }
  }
  return best;
}

TscCalibration calibrate() {
  TscCalibration result;
  if (!tsc_is_invariant()) return result;

  constexpr int64_t kCalibrationNs = 20'000'000;
  const TscSample start = paired_sample();
  // Sleeping is fine: an invariant TSC keeps counting at the same rate while we are off-CPU.
  while (monotonic_ns() - start.ns < kCalibrationNs) {
    const timespec pause{0, 2'000'000};
    nanosleep(&pause, nullptr);
  }
  const TscSample end = paired_sample();

  const int64_t ticks = end.tsc - start.tsc;
  const int64_t ns = end.ns - start.ns;
  if (ticks <= 0 || ns <= 0) return result;
  const double ghz = static_cast<double>(ticks) / static_cast<double>(ns);
  // A rate outside 0.1..20 GHz means a broken or virtualised-badly TSC; trust the kernel.
  if (ghz < 0.1 || ghz > 20.0) return result;

  using clock_internal::Uint128;
  const Uint128 mult = ((Uint128{static_cast<uint64_t>(ns)} << clock_internal::kMultShift) +
                        static_cast<uint64_t>(ticks) / 2) /
                       static_cast<uint64_t>(ticks);
  result.usable = true;
  result.mult = static_cast<uint64_t>(mult);
  result.tsc_base = end.tsc;
  result.ns_base = end.ns;
  result.ghz = ghz;
  return result;
}

#else

TscCalibration calibrate() { return TscCalibration{}; }

#endif

const TscCalibration& tsc_calibration() {
  static const TscCalibration calibration = calibrate();
  return calibration;
}

}  // namespace

bool tsc_is_invariant() noexcept {
#if defined(__x86_64__) || defined(__i386__)
  unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
  // __get_cpuid checks the highest extended leaf first and fails if 0x80000007 is missing.
  if (__get_cpuid(0x80000007, &eax, &ebx, &ecx, &edx) == 0) return false;
  return (edx & (1u << 8)) != 0;
#else
  return false;
#endif
}

Clock::Clock(ClockSource source) {
  if (source != ClockSource::kAuto) return;
  const TscCalibration& calibration = tsc_calibration();
  if (!calibration.usable) return;
  use_tsc_ = true;
  mult_ = calibration.mult;
  tsc_base_ = calibration.tsc_base;
  ns_base_ = calibration.ns_base;
  tsc_ghz_ = calibration.ghz;
}

const Clock& default_clock() noexcept {
  static const Clock clock(ClockSource::kAuto);
  return clock;
}

}  // namespace sluice
