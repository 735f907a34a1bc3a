#include "core/clock.h"

#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <thread>
#include <vector>

#include "gtest/gtest.h"

namespace sluice {
namespace {

// Timing checks here only bound agreement between clocks, never speed: this runs on loaded VMs.

void expect_non_decreasing(const Clock& clock, int reads) {
  int64_t previous = clock.now_ns();
  for (int i = 0; i < reads; ++i) {
    const int64_t now = clock.now_ns();
    ASSERT_GE(now, previous) << "read " << i << " went backwards by " << previous - now << " ns";
    previous = now;
  }
}

TEST(Clock, AutoSourceNeverGoesBackwards) {
  expect_non_decreasing(Clock(ClockSource::kAuto), 500'000);
}

TEST(Clock, MonotonicSourceNeverGoesBackwards) {
  expect_non_decreasing(Clock(ClockSource::kMonotonic), 500'000);
}

TEST(Clock, ProcessDefaultNeverGoesBackwardsAcrossThreads) {
  // Threads may migrate between cores mid-loop; the TSC must still look monotonic per thread.
  std::vector<std::thread> threads;
  for (int t = 0; t < 3; ++t) {
    threads.emplace_back([] {
      int64_t previous = now_ns();
      for (int i = 0; i < 200'000; ++i) {
        const int64_t now = now_ns();
        ASSERT_GE(now, previous);
        previous = now;
        if (i % 20'000 == 0) std::this_thread::yield();
      }
    });
  }
  for (auto& t : threads) t.join();
}

TEST(Clock, NowTracksClockMonotonicOverASleep) {
  const Clock& clock = default_clock();
  const int64_t start_fast = clock.now_ns();
  const int64_t start_mono = monotonic_ns();
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  const int64_t end_mono = monotonic_ns();
  const int64_t end_fast = clock.now_ns();
  const int64_t elapsed_mono = end_mono - start_mono;
  const int64_t elapsed_fast = end_fast - start_fast;
  ASSERT_GE(elapsed_mono, 50'000'000);
  // The fast reads bracket the monotonic ones, so a correct rate gives elapsed_fast slightly
  // above elapsed_mono; allow 2% rate error plus scheduling noise between the paired reads.
  EXPECT_LE(std::llabs(elapsed_fast - elapsed_mono), elapsed_mono / 50 + 200'000)
      << "tsc_in_use=" << clock.tsc_in_use() << " ghz=" << clock.tsc_ghz();
}

TEST(Clock, NowIsOnTheClockMonotonicTimeline) {
  // Same epoch as CLOCK_MONOTONIC, not just the same rate: now_ns() lies between two
  // monotonic reads that bracket it, up to the calibration drift since start-up.
  const int64_t before = monotonic_ns();
  const int64_t now = now_ns();
  const int64_t after = monotonic_ns();
  EXPECT_GE(now, before - 5'000'000);
  EXPECT_LE(now, after + 5'000'000);
}

TEST(Clock, TicksConvertLaterToTheSameNanoseconds) {
  const Clock& clock = default_clock();
  const int64_t ticks_start = clock.now_ticks();
  const int64_t ns_mid = monotonic_ns();
  const int64_t ticks_end = clock.now_ticks();
  const int64_t start = clock.ticks_to_ns(ticks_start);
  const int64_t end = clock.ticks_to_ns(ticks_end);
  EXPECT_LE(start, end);
  EXPECT_NEAR(static_cast<double>(start), static_cast<double>(ns_mid), 5e6);
  // Free functions use the same process-wide clock.
  EXPECT_EQ(ticks_to_ns(ticks_start), start);
  EXPECT_EQ(tsc_in_use(), clock.tsc_in_use());
}

TEST(Clock, TicksBeforeCalibrationConvertToEarlierTimes) {
  const Clock& clock = default_clock();
  if (!clock.tsc_in_use()) GTEST_SKIP() << "TSC not in use: ticks are already nanoseconds";
  const int64_t now_ticks = clock.now_ticks();
  const int64_t now = clock.ticks_to_ns(now_ticks);
  // One second's worth of ticks earlier maps to about one second earlier, even if that is
  // before the calibration base.
  const auto one_second_ticks = static_cast<int64_t>(clock.tsc_ghz() * 1e9);
  const int64_t earlier = clock.ticks_to_ns(now_ticks - one_second_ticks);
  EXPECT_NEAR(static_cast<double>(now - earlier), 1e9, 1e3);
  EXPECT_LT(clock.ticks_to_ns(now_ticks - 1000 * one_second_ticks), earlier);
}

TEST(Clock, ForcedMonotonicFallbackUsesClockGettime) {
  const Clock clock(ClockSource::kMonotonic);
  EXPECT_FALSE(clock.tsc_in_use());
  EXPECT_EQ(clock.tsc_ghz(), 0.0);
  const int64_t before = monotonic_ns();
  const int64_t ticks = clock.now_ticks();
  const int64_t after = monotonic_ns();
  // Without the TSC, ticks are CLOCK_MONOTONIC nanoseconds and convert as the identity.
  EXPECT_GE(ticks, before);
  EXPECT_LE(ticks, after);
  EXPECT_EQ(clock.ticks_to_ns(ticks), ticks);
  EXPECT_EQ(clock.ticks_to_ns(12345), 12345);
}

TEST(Clock, UsesTheTscExactlyWhenItIsInvariant) {
  // This holds on any x86 host whose calibration is sane, which is all we run on; a host
  // without an invariant TSC must fall back.
  if (!tsc_is_invariant()) {
    EXPECT_FALSE(tsc_in_use());
    EXPECT_EQ(tsc_ghz(), 0.0);
    return;
  }
  EXPECT_TRUE(tsc_in_use());
  EXPECT_GT(tsc_ghz(), 0.1);
  EXPECT_LT(tsc_ghz(), 20.0);
}

TEST(Clock, RealtimeIsWallClockNanoseconds) {
  const int64_t wall = realtime_ns();
  const int64_t chrono_wall = std::chrono::duration_cast<std::chrono::nanoseconds>(
                                  std::chrono::system_clock::now().time_since_epoch())
                                  .count();
  EXPECT_NEAR(static_cast<double>(wall), static_cast<double>(chrono_wall), 1e9);
  EXPECT_GT(wall, int64_t{1'600'000'000} * 1'000'000'000);  // after September 2020
}

}  // namespace
}  // namespace sluice
