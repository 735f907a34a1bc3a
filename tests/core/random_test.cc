#include "core/random.h"

#include <cmath>
#include <cstdint>
#include <vector>

#include "gtest/gtest.h"

namespace sluice {
namespace {

TEST(FastRandom, SameSeedSameSequenceDifferentSeedDifferent) {
  FastRandom a(42);
  FastRandom b(42);
  FastRandom c(43);
  int differ = 0;
  for (int i = 0; i < 100; ++i) {
    const uint64_t x = a.next();
    EXPECT_EQ(x, b.next());
    differ += x != c.next() ? 1 : 0;
  }
  EXPECT_EQ(differ, 100);
}

TEST(FastRandom, ZeroSeedIsWellMixed) {
  FastRandom r(0);
  int ones = 0;
  for (int i = 0; i < 1000; ++i) ones += std::popcount(r.next());
  EXPECT_NEAR(ones / 1000.0, 32.0, 1.0);
}

TEST(FastRandom, BelowStaysInRangeAndCoversIt) {
  FastRandom r(7);
  std::vector<int> seen(10, 0);
  for (int i = 0; i < 100'000; ++i) {
    const uint64_t v = r.below(10);
    ASSERT_LT(v, 10u);
    ++seen[v];
  }
  for (int count : seen) EXPECT_NEAR(count, 10'000, 600);
  EXPECT_EQ(r.below(1), 0u);
}

TEST(FastRandom, NextDoubleIsInUnitIntervalWithMeanOneHalf) {
  FastRandom r(9);
  double sum = 0;
  for (int i = 0; i < 100'000; ++i) {
    const double d = r.next_double();
    ASSERT_GE(d, 0.0);
    ASSERT_LT(d, 1.0);
    sum += d;
  }
  EXPECT_NEAR(sum / 100'000, 0.5, 0.01);
  EXPECT_FALSE(r.chance(0.0));
  EXPECT_TRUE(r.chance(1.0));
}

// Draws many ranks and compares their frequencies with 1/k^s normalised over 1..n.
void expect_zipf_frequencies(uint64_t n, double s, int draws, double tolerance) {
  ZipfDistribution zipf(n, s);
  FastRandom r(1234);
  std::vector<int64_t> counts(n + 1, 0);
  for (int i = 0; i < draws; ++i) {
    const uint64_t k = zipf(r);
    ASSERT_GE(k, 1u);
    ASSERT_LE(k, n);
    ++counts[k];
  }
  double norm = 0;
  for (uint64_t k = 1; k <= n; ++k) norm += std::pow(static_cast<double>(k), -s);
  for (uint64_t k = 1; k <= n; ++k) {
    const double expected = draws * std::pow(static_cast<double>(k), -s) / norm;
    // Binomial standard deviations, plus a relative tolerance.
    const double sd = std::sqrt(expected);
    EXPECT_NEAR(static_cast<double>(counts[k]), expected, 5 * sd + tolerance * expected)
        << "rank " << k << " of " << n << ", s " << s;
  }
}

TEST(ZipfDistribution, FrequenciesFollowThePowerLaw) {
  expect_zipf_frequencies(10, 1.0, 1'000'000, 0.01);
  expect_zipf_frequencies(50, 0.8, 1'000'000, 0.01);
  expect_zipf_frequencies(20, 1.5, 1'000'000, 0.01);
  expect_zipf_frequencies(5, 3.0, 1'000'000, 0.01);
}

TEST(ZipfDistribution, ExponentZeroIsUniform) { expect_zipf_frequencies(16, 0.0, 400'000, 0.01); }

TEST(ZipfDistribution, ExponentsNearOneAreContinuous) {
  // s = 1 is a special case of the integral (a logarithm); just beside it must agree.
  expect_zipf_frequencies(10, 1.0 - 1e-10, 500'000, 0.01);
  expect_zipf_frequencies(10, 1.0 + 1e-10, 500'000, 0.01);
}

TEST(ZipfDistribution, SingleElementAlwaysDrawsOne) {
  ZipfDistribution zipf(1, 1.2);
  FastRandom r(5);
  for (int i = 0; i < 1000; ++i) EXPECT_EQ(zipf(r), 1u);
}

TEST(ZipfDistribution, HugeRangeStaysInRangeWithTheRightHead) {
  const uint64_t n = 1'000'000'000;
  ZipfDistribution zipf(n, 1.2);
  FastRandom r(77);
  int64_t ones = 0;
  const int draws = 400'000;
  for (int i = 0; i < draws; ++i) {
    const uint64_t k = zipf(r);
    ASSERT_GE(k, 1u);
    ASSERT_LE(k, n);
    ones += k == 1 ? 1 : 0;
  }
  // P(1) = 1 / H(n, 1.2); H(1e9, 1.2) = zeta(1.2) - (tail beyond 1e9) ~ 5.5916 - 0.0793.
  EXPECT_NEAR(static_cast<double>(ones) / draws, 1.0 / (5.5916 - 0.0793), 0.003);
}

}  // namespace
}  // namespace sluice
