#include "core/histogram.h"

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_split.h"
#include "gtest/gtest.h"
#include "tests/test_util.h"

namespace sluice {
namespace {

// Percentiles as parts per million so the reference rank is exact integer arithmetic.
constexpr int64_t kPercentilesPpm[] = {0,       10'000,  500'000, 900'000,
                                       990'000, 999'000, 999'900, 1'000'000};

// The documented rank: max(1, ceil(p/100 * n)), computed without floating point.
int64_t reference_at_ppm(const std::vector<int64_t>& sorted, int64_t ppm) {
  const auto n = static_cast<int64_t>(sorted.size());
  const int64_t rank = std::max<int64_t>(1, (ppm * n + 999'999) / 1'000'000);
  return sorted[static_cast<size_t>(rank - 1)];
}

void expect_percentiles_match(const std::vector<int64_t>& values, const char* what) {
  Histogram h;
  for (const int64_t v : values) h.record(v);
  std::vector<int64_t> sorted = values;
  std::sort(sorted.begin(), sorted.end());
  for (const int64_t ppm : kPercentilesPpm) {
    const double p = static_cast<double>(ppm) / 10'000.0;
    const int64_t ref = reference_at_ppm(sorted, ppm);
    const int64_t got = h.value_at_percentile(p);
    EXPECT_LE(std::llabs(got - ref), ref / 1000 + 1) << what << " p=" << p << " ref=" << ref;
    // Stronger: the answer is in the very bucket that holds the reference value.
    EXPECT_EQ(Histogram::lowest_equivalent(got), Histogram::lowest_equivalent(ref))
        << what << " p=" << p;
    EXPECT_GE(got, ref) << what << " p=" << p;
  }
  EXPECT_EQ(h.min(), sorted.front()) << what;
  EXPECT_EQ(h.max(), sorted.back()) << what;
  EXPECT_EQ(h.total_count(), static_cast<int64_t>(values.size())) << what;
  EXPECT_EQ(h.saturated(), 0) << what;

  double sum = 0;
  double sum_sq = 0;
  for (const int64_t v : values) {
    sum += static_cast<double>(v);
    sum_sq += static_cast<double>(v) * static_cast<double>(v);
  }
  const double n = static_cast<double>(values.size());
  const double mean = sum / n;
  const double rms = std::sqrt(sum_sq / n);
  const double stddev = std::sqrt(std::max(0.0, sum_sq / n - mean * mean));
  // Each value is represented by its bucket midpoint, off by at most 1/2048 of itself.
  EXPECT_NEAR(h.mean(), mean, mean / 2000 + 0.5) << what;
  EXPECT_NEAR(h.stddev(), stddev, rms / 1000 + 1) << what;
}

TEST(Histogram, PercentilesMatchSortedReferenceWithinResolutionForUniformSmallValues) {
  std::mt19937_64 rng(1);
  std::uniform_int_distribution<int64_t> dist(1, 5000);
  std::vector<int64_t> values(100'000);
  for (auto& v : values) v = dist(rng);
  expect_percentiles_match(values, "uniform 1..5000");
}

TEST(Histogram, PercentilesMatchSortedReferenceWithinResolutionForLogUniformValues) {
  std::mt19937_64 rng(2);
  std::uniform_real_distribution<double> exponent(0.0, std::log(1e12));
  std::vector<int64_t> values(100'000);
  for (auto& v : values) v = std::max<int64_t>(1, std::llround(std::exp(exponent(rng))));
  expect_percentiles_match(values, "log-uniform 1..1e12");
}

TEST(Histogram, PercentilesMatchSortedReferenceWithinResolutionWithOutliers) {
  std::mt19937_64 rng(3);
  std::uniform_int_distribution<int64_t> body(1000, 2000);
  std::uniform_int_distribution<int64_t> outlier(1'000'000, 10'000'000'000);
  std::bernoulli_distribution is_outlier(0.005);
  std::vector<int64_t> values(200'000);
  for (auto& v : values) v = is_outlier(rng) ? outlier(rng) : body(rng);
  expect_percentiles_match(values, "body 1000..2000 with 0.5% outliers");
}

TEST(Histogram, PercentileRankDoesNotOvershootOnRoundNumbers) {
  // 99.9% of 1000 values is exactly rank 999; floating-point error must not make it 1000.
  Histogram h;
  for (int64_t v = 1; v <= 1000; ++v) h.record(v);
  EXPECT_EQ(h.value_at_percentile(99.9), 999);
  EXPECT_EQ(h.value_at_percentile(99.99), 1000);
  EXPECT_EQ(h.value_at_percentile(50.0), 500);
  EXPECT_EQ(h.value_at_percentile(50.01), 501);
  EXPECT_EQ(h.value_at_percentile(0.0), 1);
  EXPECT_EQ(h.value_at_percentile(0.05), 1);
  EXPECT_EQ(h.value_at_percentile(100.0), 1000);
}

TEST(Histogram, PercentileOutsideRangeIsClampedAndEmptyHistogramGivesZero) {
  Histogram h;
  EXPECT_EQ(h.value_at_percentile(50), 0);
  EXPECT_EQ(h.value_at_percentile(100), 0);
  EXPECT_EQ(h.min(), 0);
  EXPECT_EQ(h.max(), 0);
  EXPECT_EQ(h.mean(), 0.0);
  EXPECT_EQ(h.stddev(), 0.0);
  h.record(10);
  h.record(20);
  EXPECT_EQ(h.value_at_percentile(-5), 10);
  EXPECT_EQ(h.value_at_percentile(250), 20);
  EXPECT_EQ(h.value_at_percentile(std::nan("")), 10);
}

TEST(Histogram, MinAndMaxAreExactRecordedValuesNotBucketEdges) {
  Histogram h;
  h.record(1'000'003);  // bucket width 1024 here
  h.record(123'456'789'011);
  EXPECT_EQ(h.min(), 1'000'003);
  EXPECT_EQ(h.max(), 123'456'789'011);
  EXPECT_EQ(h.value_at_percentile(100), 123'456'789'011);
  // The top percentile is capped at the exact max rather than reporting the bucket's upper edge.
  EXPECT_EQ(h.value_at_percentile(99), 123'456'789'011);
  EXPECT_EQ(h.value_at_percentile(0), 1'000'003);
}

TEST(Histogram, EveryValueFallsInAContiguousBucketNoWiderThanItsResolution) {
  std::vector<int64_t> probes;
  for (int shift = 0; shift < 42; ++shift) {
    const int64_t p = int64_t{1} << shift;
    for (const int64_t d : {-1, 0, 1, 3}) {
      if (p + d >= 0) probes.push_back(p + d);
    }
  }
  probes.push_back(Histogram::kDefaultHighest);
  for (const int64_t v : probes) {
    const int64_t lo = Histogram::lowest_equivalent(v);
    const int64_t hi = Histogram::highest_equivalent(v);
    ASSERT_LE(lo, v);
    ASSERT_GE(hi, v);
    const int64_t width = hi - lo + 1;
    EXPECT_TRUE((width & (width - 1)) == 0) << v;
    EXPECT_LE(width - 1, v / 1024) << v;
    // Neighbouring buckets tile the line with no gap or overlap.
    EXPECT_EQ(Histogram::lowest_equivalent(hi + 1), hi + 1) << v;
    if (lo > 0) {
      EXPECT_EQ(Histogram::highest_equivalent(lo - 1), lo - 1) << v;
    }
  }
  // Below 2048 there is one counter per value.
  for (int64_t v = 0; v < 2048; ++v) {
    ASSERT_EQ(Histogram::lowest_equivalent(v), v);
    ASSERT_EQ(Histogram::highest_equivalent(v), v);
  }
  EXPECT_EQ(Histogram::highest_equivalent(2048), 2049);
  EXPECT_EQ(Histogram::highest_equivalent(4096), 4099);
}

TEST(Histogram, CountAtValueSeesRecordsAcrossTheWholeRange) {
  Histogram h;
  for (int shift = 0; shift < 42; ++shift) {
    const int64_t v = (int64_t{1} << shift) + 1;
    h.record(v, shift + 1);
    EXPECT_EQ(h.count_at_value(v), shift + 1) << v;
    EXPECT_EQ(h.count_at_value(Histogram::highest_equivalent(v)), shift + 1) << v;
  }
  h.record(Histogram::kDefaultHighest);
  EXPECT_EQ(h.count_at_value(Histogram::kDefaultHighest), 1);
  EXPECT_EQ(h.saturated(), 0);
}

TEST(Histogram, RecordWithCountAddsThatManyAndIgnoresNonPositiveCounts) {
  Histogram h;
  h.record(500, 7);
  h.record(600, 0);
  h.record(700, -3);
  EXPECT_EQ(h.total_count(), 7);
  EXPECT_EQ(h.count_at_value(500), 7);
  EXPECT_EQ(h.count_at_value(600), 0);
  EXPECT_EQ(h.max(), 500);
}

TEST(Histogram, ValuesAboveRangeAreClampedAndCountedAsSaturated) {
  Histogram h(1'000'000);
  h.record(1'000'000);  // at the limit: not saturated
  h.record(5'000'000);
  h.record(std::numeric_limits<int64_t>::max(), 2);
  EXPECT_EQ(h.total_count(), 4);
  EXPECT_EQ(h.saturated(), 3);
  EXPECT_EQ(h.max(), 1'000'000);
  EXPECT_EQ(h.count_at_value(1'000'000), 4);
  EXPECT_EQ(h.value_at_percentile(100), 1'000'000);
  EXPECT_EQ(h.count_at_value(7'000'000), 4);  // queries clamp the same way
}

TEST(Histogram, ValuesAtOrBelowZeroCountAsZero) {
  Histogram h;
  h.record(0);
  h.record(-5);
  h.record(std::numeric_limits<int64_t>::min());
  h.record(3);
  EXPECT_EQ(h.total_count(), 4);
  EXPECT_EQ(h.count_at_value(0), 3);
  EXPECT_EQ(h.count_at_value(-100), 3);
  EXPECT_EQ(h.min(), 0);
  EXPECT_EQ(h.max(), 3);
  EXPECT_EQ(h.value_at_percentile(75), 0);
  EXPECT_EQ(h.value_at_percentile(76), 3);
  EXPECT_EQ(h.saturated(), 0);
}

TEST(Histogram, ResetClearsEverythingAndKeepsWorking) {
  Histogram h(1'000'000);
  h.record(42, 3);
  h.record(2'000'000);
  h.reset();
  EXPECT_EQ(h.total_count(), 0);
  EXPECT_EQ(h.saturated(), 0);
  EXPECT_EQ(h.min(), 0);
  EXPECT_EQ(h.max(), 0);
  EXPECT_EQ(h.count_at_value(42), 0);
  EXPECT_EQ(h.value_at_percentile(50), 0);
  h.record(7);
  EXPECT_EQ(h.min(), 7);
  EXPECT_EQ(h.max(), 7);
  EXPECT_EQ(h.value_at_percentile(50), 7);
}

TEST(Histogram, MergeEqualsRecordingBoth) {
  std::mt19937_64 rng(4);
  std::uniform_real_distribution<double> exponent(0.0, std::log(5e9));
  Histogram a(4'000'000'000);
  Histogram b(4'000'000'000);
  Histogram both(4'000'000'000);
  for (int i = 0; i < 50'000; ++i) {
    const auto v = std::llround(std::exp(exponent(rng)));
    Histogram& target = (i % 3 == 0) ? a : b;
    target.record(v);
    both.record(v);
  }
  ASSERT_GT(b.saturated(), 0);  // the range stops below 5e9, so some values clamp
  ASSERT_TRUE(a.merge(b).ok());
  EXPECT_EQ(a.total_count(), both.total_count());
  EXPECT_EQ(a.saturated(), both.saturated());
  EXPECT_EQ(a.min(), both.min());
  EXPECT_EQ(a.max(), both.max());
  // The text output walks every bucket, so equal text means equal counts.
  EXPECT_EQ(a.percentile_distribution(), both.percentile_distribution());
  EXPECT_EQ(a.percentile_distribution(20), both.percentile_distribution(20));

  Histogram empty(4'000'000'000);
  ASSERT_TRUE(a.merge(empty).ok());
  EXPECT_EQ(a.total_count(), both.total_count());
  ASSERT_TRUE(empty.merge(both).ok());
  EXPECT_EQ(empty.min(), both.min());
  EXPECT_EQ(empty.percentile_distribution(), both.percentile_distribution());
}

TEST(Histogram, MergeRejectsDifferentRangesAndLeavesTargetUnchanged) {
  Histogram a(1'000'000);
  Histogram b(2'000'000);
  a.record(5);
  b.record(6);
  const absl::Status status = a.merge(b);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(a.total_count(), 1);
  EXPECT_EQ(a.count_at_value(6), 0);
}

TEST(Histogram, LayoutFollowsHdrHistogramForThreeDigits) {
  Histogram h;
  EXPECT_EQ(h.sub_bucket_count(), 2048);
  EXPECT_EQ(h.bucket_count(), 32);  // 2048 * 2^31 > 3.6e12 >= 2048 * 2^30
  EXPECT_EQ(h.highest_trackable(), Histogram::kDefaultHighest);
  EXPECT_EQ(Histogram(2048).bucket_count(), 2);
  EXPECT_EQ(Histogram(2047 + 2048).bucket_count(), 2);
  EXPECT_EQ(Histogram(4096).bucket_count(), 3);
}

TEST(Histogram, MemoryFootprintIsFixedAtConstructionAndDocumented) {
  Histogram h;
  const size_t before = h.memory_footprint();
  // 33 half-buckets of 1024 int64 counters for the one-hour default.
  EXPECT_GE(before, size_t{33 * 1024 * 8});
  EXPECT_LT(before, size_t{33 * 1024 * 8 + 1024});
  std::mt19937_64 rng(5);
  std::uniform_int_distribution<int64_t> dist(-10, Histogram::kDefaultHighest * 2);
  for (int i = 0; i < 1'000'000; ++i) h.record(dist(rng));
  EXPECT_EQ(h.memory_footprint(), before);
  h.reset();
  EXPECT_EQ(h.memory_footprint(), before);
  EXPECT_LT(Histogram(1'000'000).memory_footprint(), before);
}

// ---- .hgrm output -------------------------------------------------------------------------

struct HgrmLine {
  double value;
  double percentile;
  int64_t count;
  bool has_inverse;
};

std::vector<std::string> split_lines(const std::string& text) {
  std::vector<std::string> lines = absl::StrSplit(text, '\n');
  if (!lines.empty() && lines.back().empty()) lines.pop_back();
  return lines;
}

// Parses the data lines (between the blank line after the header and the footer).
std::vector<HgrmLine> parse_data_lines(const std::string& text) {
  std::vector<HgrmLine> out;
  const std::vector<std::string> lines = split_lines(text);
  for (size_t i = 2; i < lines.size() && lines[i][0] != '#'; ++i) {
    HgrmLine line{};
    double inverse = 0;
    long long count = 0;
    const int fields = std::sscanf(lines[i].c_str(), "%lf %lf %lld %lf", &line.value,
                                   &line.percentile, &count, &inverse);
    EXPECT_GE(fields, 3) << lines[i];
    line.count = count;
    line.has_inverse = fields == 4;
    if (line.has_inverse) {
      EXPECT_NEAR(inverse, 1.0 / (1.0 - line.percentile), 0.006) << lines[i];
    }
    out.push_back(line);
  }
  return out;
}

Histogram one_to_thousand() {
  Histogram h;
  for (int64_t v = 1; v <= 1000; ++v) h.record(v);
  return h;
}

TEST(HistogramHgrm, StartsWithTheHdrHistogramHeaderAndABlankLine) {
  const std::vector<std::string> lines = split_lines(one_to_thousand().percentile_distribution());
  ASSERT_GE(lines.size(), 2u);
  EXPECT_EQ(lines[0], "       Value     Percentile TotalCount 1/(1-Percentile)");
  EXPECT_EQ(lines[1], "");
}

TEST(HistogramHgrm, KnownHistogramHasExactColumnsAndFooter) {
  const std::string text = one_to_thousand().percentile_distribution();
  const std::vector<std::string> lines = split_lines(text);
  auto has_line = [&](const std::string& want) {
    return std::find(lines.begin(), lines.end(), want) != lines.end();
  };
  // %12.3f %2.12f %10d %14.2f
  EXPECT_TRUE(has_line("       1.000 0.000000000000          1           1.00")) << text;
  EXPECT_TRUE(has_line("     100.000 0.100000000000        100           1.11")) << text;
  EXPECT_TRUE(has_line("     500.000 0.500000000000        500           2.00")) << text;
  EXPECT_TRUE(has_line("     750.000 0.750000000000        750           4.00")) << text;
  EXPECT_TRUE(has_line("     900.000 0.900000000000        900          10.00")) << text;

  ASSERT_GE(lines.size(), 6u);
  const size_t n = lines.size();
  EXPECT_EQ(lines[n - 4], "    1000.000 1.000000000000       1000");
  EXPECT_EQ(lines[n - 3], "#[Mean    =      500.500, StdDeviation   =      288.675]");
  EXPECT_EQ(lines[n - 2], "#[Max     =     1000.000, Total count    =         1000]");
  EXPECT_EQ(lines[n - 1], "#[Buckets =           32, SubBuckets     =         2048]");
  EXPECT_EQ(text.back(), '\n');
}

TEST(HistogramHgrm, OutputIsByteIdenticalToHdrHistogramJava) {
  // Golden text from HdrHistogram 2.1.11 (Java): new Histogram(1, 3_600_000_000_000L, 3), the
  // same recordValueWithCount calls, outputPercentileDistribution(out, 2, 1000.0). The max is a
  // bucket top so Java's Max (bucket upper edge) and ours (exact max) coincide.
  Histogram h;
  h.record(1, 1);
  h.record(2, 3);
  h.record(3, 1);
  h.record(1500, 2);
  h.record(2049, 1);
  h.record(100'000, 5);
  h.record(123'456'789, 2);
  h.record(4'294'967'295, 1);
  const std::string expected =
      "       Value     Percentile TotalCount 1/(1-Percentile)\n"
      "\n"
      "       0.001 0.000000000000          1           1.00\n"
      "       0.002 0.250000000000          4           1.33\n"
      "       2.049 0.500000000000          8           2.00\n"
      "     100.031 0.625000000000         13           2.67\n"
      "     100.031 0.750000000000         13           4.00\n"
      "     100.031 0.812500000000         13           5.33\n"
      "  123469.823 0.875000000000         15           8.00\n"
      "  123469.823 0.906250000000         15          10.67\n"
      "  123469.823 0.937500000000         15          16.00\n"
      " 4294967.295 0.953125000000         16          21.33\n"
      " 4294967.295 1.000000000000         16\n"
      "#[Mean    =   283831.118, StdDeviation   =  1036196.464]\n"
      "#[Max     =  4294967.295, Total count    =           16]\n"
      "#[Buckets =           32, SubBuckets     =         2048]\n";
  EXPECT_EQ(h.percentile_distribution(2, 1000.0), expected);
}

TEST(HistogramHgrm, EachLineReportsTheFirstValueReachingItsPercentile) {
  const std::vector<HgrmLine> lines = parse_data_lines(one_to_thousand().percentile_distribution());
  ASSERT_GT(lines.size(), 30u);
  for (size_t i = 0; i + 1 < lines.size(); ++i) {
    const HgrmLine& line = lines[i];
    EXPECT_TRUE(line.has_inverse);
    // Values 1..1000 once each: value == cumulative count, and it is the first count whose
    // share reaches the line's percentile.
    EXPECT_EQ(static_cast<int64_t>(line.value), line.count);
    EXPECT_GE(static_cast<double>(line.count) / 1000.0, line.percentile - 1e-12);
    EXPECT_LT(static_cast<double>(line.count - 1) / 1000.0, line.percentile + 1e-12);
    if (i > 0) {
      EXPECT_GT(line.percentile, lines[i - 1].percentile);
      EXPECT_GE(line.value, lines[i - 1].value);
      EXPECT_GE(line.count, lines[i - 1].count);
    }
  }
  EXPECT_FALSE(lines.back().has_inverse);
  EXPECT_EQ(lines.back().percentile, 1.0);
  EXPECT_EQ(lines.back().count, 1000);
}

TEST(HistogramHgrm, PercentileStepsHalveWithEachHalfDistance) {
  // One tick per half distance: the levels are exactly 0, 1/2, 3/4, 7/8, ...
  Histogram h;
  for (int64_t v = 1; v <= 100'000; ++v) h.record(v);
  const std::vector<HgrmLine> lines = parse_data_lines(h.percentile_distribution(1));
  ASSERT_GE(lines.size(), 10u);
  for (size_t i = 0; i + 1 < lines.size(); ++i) {
    EXPECT_NEAR(lines[i].percentile, 1.0 - std::ldexp(1.0, -static_cast<int>(i)), 1e-12) << i;
  }
  // More ticks per half distance means more lines, never fewer.
  EXPECT_GT(parse_data_lines(h.percentile_distribution(5)).size(), lines.size());
  EXPECT_GT(parse_data_lines(h.percentile_distribution(10)).size(),
            parse_data_lines(h.percentile_distribution(5)).size());
}

TEST(HistogramHgrm, PercentilesAreNonDecreasingOnWideRandomData) {
  Histogram h;
  std::mt19937_64 rng(6);
  std::uniform_real_distribution<double> exponent(0.0, std::log(1e12));
  for (int i = 0; i < 100'000; ++i) h.record(std::llround(std::exp(exponent(rng))));
  const std::vector<HgrmLine> lines = parse_data_lines(h.percentile_distribution());
  ASSERT_GT(lines.size(), 50u);
  for (size_t i = 1; i < lines.size(); ++i) {
    EXPECT_GE(lines[i].percentile, lines[i - 1].percentile);
    EXPECT_GE(lines[i].value, lines[i - 1].value);
    EXPECT_GE(lines[i].count, lines[i - 1].count);
    EXPECT_GE(static_cast<double>(lines[i].count) / 100'000.0, lines[i].percentile - 1e-12);
  }
  EXPECT_EQ(lines.back().percentile, 1.0);
  EXPECT_EQ(lines.back().count, 100'000);
  // Lines report bucket upper edges, within resolution of the exact max.
  EXPECT_GE(lines.back().value, static_cast<double>(h.max()));
  EXPECT_LE(lines.back().value, static_cast<double>(h.max()) * (1 + 1.0 / 1024) + 1);
}

TEST(HistogramHgrm, SingleValueHistogramHasOnlyTheZeroAndHundredPercentLines) {
  Histogram h;
  h.record(42, 10);
  const std::vector<HgrmLine> lines = parse_data_lines(h.percentile_distribution());
  ASSERT_EQ(lines.size(), 2u);
  EXPECT_EQ(lines[0].percentile, 0.0);
  EXPECT_EQ(lines[0].value, 42.0);
  EXPECT_EQ(lines[0].count, 10);
  EXPECT_EQ(lines[1].percentile, 1.0);
  EXPECT_EQ(lines[1].count, 10);
}

TEST(HistogramHgrm, EmptyHistogramPrintsHeaderAndZeroFooter) {
  const std::vector<std::string> lines = split_lines(Histogram().percentile_distribution());
  ASSERT_EQ(lines.size(), 5u);
  EXPECT_EQ(lines[2], "#[Mean    =        0.000, StdDeviation   =        0.000]");
  EXPECT_EQ(lines[3], "#[Max     =        0.000, Total count    =            0]");
}

TEST(HistogramHgrm, UnitRatioScalesValuesMeanAndMaxButNotCounts) {
  const std::string text = one_to_thousand().percentile_distribution(5, 1000.0);
  const std::vector<std::string> lines = split_lines(text);
  EXPECT_NE(std::find(lines.begin(), lines.end(),
                      "       0.500 0.500000000000        500           2.00"),
            lines.end())
      << text;
  const size_t n = lines.size();
  EXPECT_EQ(lines[n - 4], "       1.000 1.000000000000       1000");
  // 500.5 / 1000 is 0.50049999... in binary: printf would say 0.500, Java (and we) round the
  // shortest decimal form 0.5005 half-up.
  EXPECT_EQ(lines[n - 3], "#[Mean    =        0.501, StdDeviation   =        0.289]");
  EXPECT_EQ(lines[n - 2], "#[Max     =        1.000, Total count    =         1000]");
}

TEST(HistogramHgrm, WritesTheSameTextToAFile) {
  const Histogram h = one_to_thousand();
  const std::string path = ::testing::TempDir() + "/histogram_test_out.hgrm";
  ASSERT_TRUE(h.write_percentile_distribution(path, 5, 1000.0).ok());
  EXPECT_EQ(testing::read_file(path), h.percentile_distribution(5, 1000.0));
  // Rewriting truncates rather than appends.
  Histogram small;
  small.record(1);
  ASSERT_TRUE(small.write_percentile_distribution(path).ok());
  EXPECT_EQ(testing::read_file(path), small.percentile_distribution());
  std::remove(path.c_str());
}

TEST(HistogramHgrm, WriteToBadPathNamesThePathAndTheReason) {
  const std::string path = "/nonexistent-sluice-dir/sub/out.hgrm";
  const absl::Status status = one_to_thousand().write_percentile_distribution(path);
  ASSERT_FALSE(status.ok());
  EXPECT_EQ(status.code(), absl::StatusCode::kNotFound);
  EXPECT_NE(status.message().find(path), std::string::npos) << status;
  EXPECT_NE(status.message().find(std::strerror(ENOENT)), std::string::npos) << status;
}

}  // namespace
}  // namespace sluice
