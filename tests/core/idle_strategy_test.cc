#include "core/idle_strategy.h"

#include <chrono>
#include <vector>

#include "gtest/gtest.h"

namespace sluice {
namespace {

TEST(IdleStrategy, ParsesTheThreeKindsAndRejectsOthersByName) {
  EXPECT_EQ(*parse_idle_kind("busy"), IdleKind::kBusySpin);
  EXPECT_EQ(*parse_idle_kind("yield"), IdleKind::kYield);
  EXPECT_EQ(*parse_idle_kind("backoff"), IdleKind::kBackoff);
  auto bad = parse_idle_kind("sleepy");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("'sleepy'"), std::string::npos);
  for (IdleKind k : {IdleKind::kBusySpin, IdleKind::kYield, IdleKind::kBackoff}) {
    EXPECT_EQ(*parse_idle_kind(idle_kind_name(k)), k);
  }
}

// Only lower bounds on time: nanosleep never returns early, so these cannot flake on a slow
// machine.
TEST(IdleStrategy, BackoffParksOnceSpinsAndYieldsAreSpentAndDoublesUpToTheBound) {
  IdleStrategy idle(IdleConfig{.kind = IdleKind::kBackoff,
                               .max_spins = 2,
                               .max_yields = 2,
                               .min_park_ns = 2'000'000,
                               .max_park_ns = 4'000'000});
  for (int i = 0; i < 4; ++i) idle.idle(0);  // spins and yields
  auto t0 = std::chrono::steady_clock::now();
  idle.idle(0);  // parks 2 ms
  idle.idle(0);  // parks 4 ms
  idle.idle(0);  // parks 4 ms (bounded)
  EXPECT_GE(std::chrono::steady_clock::now() - t0, std::chrono::milliseconds(10));
}

TEST(IdleStrategy, WorkResetsTheBackoffToItsShortestPark) {
  IdleStrategy idle(IdleConfig{.kind = IdleKind::kBackoff,
                               .max_spins = 0,
                               .max_yields = 0,
                               .min_park_ns = 1'000,
                               .max_park_ns = 16'000});
  EXPECT_EQ(idle.next_park_ns(), 1'000);
  for (int i = 0; i < 3; ++i) idle.idle(0);
  EXPECT_EQ(idle.next_park_ns(), 8'000);
  for (int i = 0; i < 5; ++i) idle.idle(0);
  EXPECT_EQ(idle.next_park_ns(), 16'000);  // bounded
  idle.idle(1);
  EXPECT_EQ(idle.next_park_ns(), 1'000);
}

}  // namespace
}  // namespace sluice

namespace sluice {
namespace {

struct RecordingParker final : Parker {
  std::vector<int64_t> parks;
  void park(int64_t max_ns) noexcept override { parks.push_back(max_ns); }
};

TEST(IdleStrategy, BackoffParksThroughTheParkerWithGrowingPeriods) {
  RecordingParker parker;
  IdleStrategy idle(IdleConfig{.kind = IdleKind::kBackoff, .max_spins = 2, .max_yields = 1,
                               .min_park_ns = 1000, .max_park_ns = 4000, .parker = &parker});
  for (int i = 0; i < 7; ++i) idle.idle();
  EXPECT_EQ(parker.parks, (std::vector<int64_t>{1000, 2000, 4000, 4000}));
  idle.idle(1);  // work resets the backoff
  for (int i = 0; i < 4; ++i) idle.idle();
  EXPECT_EQ(parker.parks.back(), 1000);
}

}  // namespace
}  // namespace sluice
