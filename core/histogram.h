// Histogram: HdrHistogram-style log-linear latency histogram with 3 significant decimal digits.
//
// Contract:
//   - Tracks values 0 .. highest_trackable() (default one hour in nanoseconds). Every value is
//     kept to within 1/1024 of itself (better than 3 decimal digits): values below 2048 exactly,
//     above that in buckets whose width doubles with every power of two.
//   - record() is O(1), branch-light and never allocates: the single counts array is sized and
//     allocated once in the constructor. Values <= 0 are recorded as 0; values above
//     highest_trackable() are recorded as highest_trackable() and also counted in saturated(),
//     so a clamped tail is visible instead of silently becoming "the max".
//   - Queries (percentiles, mean, output) walk the counts array and are cold-path only.
//   - Memory: (bucket_count() + 1) * 1024 * 8 bytes for the counts; 270,336 bytes (264 KiB) for
//     the default range. memory_footprint() reports it.
//
// REQUIRES: highest_trackable >= 2048 (smaller values are raised to 2048).
//
// Thread safety: none. One thread records; reading (or merging from) a histogram while another
// thread records into it is a data race. To report from another thread, have the recording thread
// hand over a copy or a swapped-out instance.
#ifndef SLUICE_CORE_HISTOGRAM_H_
#define SLUICE_CORE_HISTOGRAM_H_

#include <bit>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "absl/status/status.h"

namespace sluice {

class Histogram {
 public:
  static constexpr int64_t kDefaultHighest = 3'600'000'000'000;  // one hour in ns
  static constexpr int kSignificantDigits = 3;
  // 2 * 10^3 values must be distinguishable within one bucket, rounded up to a power of two.
  static constexpr int kSubBucketCountMagnitude = 11;
  static constexpr int64_t kSubBucketCount = int64_t{1} << kSubBucketCountMagnitude;  // 2048
  static constexpr int kSubBucketHalfCountMagnitude = kSubBucketCountMagnitude - 1;
  static constexpr int64_t kSubBucketHalfCount = int64_t{1} << kSubBucketHalfCountMagnitude;
  static constexpr int64_t kLowestHighestTrackable = kSubBucketCount;

  explicit Histogram(int64_t highest_trackable = kDefaultHighest);

  // Hot path. REQUIRES count >= 1 (count <= 0 is ignored).
  void record(int64_t value) noexcept { record(value, 1); }
  void record(int64_t value, int64_t count) noexcept {
    if (count <= 0) return;
    if (value > highest_) {
      value = highest_;
      saturated_ += count;
    }
    if (value < 0) value = 0;
    counts_[static_cast<size_t>(index_of(value))] += count;
    total_ += count;
    if (value < min_) min_ = value;
    if (value > max_) max_ = value;
  }

  // Clears all counts; keeps the allocation.
  void reset() noexcept;

  // Adds other's counts, min/max, total and saturated counts into this histogram.
  // Returns InvalidArgument (and changes nothing) if the ranges differ.
  absl::Status merge(const Histogram& other);

  int64_t total_count() const noexcept { return total_; }
  // Number of recorded counts whose value was above highest_trackable() and got clamped.
  int64_t saturated() const noexcept { return saturated_; }
  // Exact smallest / largest recorded value (after clamping); 0 when empty.
  int64_t min() const noexcept { return total_ == 0 ? 0 : min_; }
  int64_t max() const noexcept { return total_ == 0 ? 0 : max_; }
  // Computed from bucket midpoints, as HdrHistogram does: accurate to the value resolution.
  // Population standard deviation. Both 0 when empty.
  double mean() const noexcept;
  double stddev() const noexcept;

  // The value below or at which p percent of the recorded values fall (p clamped to [0, 100]).
  // Rank k = max(1, ceil(p/100 * total_count())) (a relative 1e-12 slack absorbs floating-point
  // error, so p=99.9 of 1000 values is rank 999, not 1000); returns the highest value equivalent
  // to the k-th smallest recorded value, capped at max(). p == 0 returns min(), p == 100 max().
  // 0 when empty.
  int64_t value_at_percentile(double p) const noexcept;

  // Count recorded in the bucket holding v (v clamped to the trackable range).
  int64_t count_at_value(int64_t v) const noexcept;
  // Bucket edges: every value in [lowest_equivalent(v), highest_equivalent(v)] shares a counter.
  static int64_t lowest_equivalent(int64_t v) noexcept;
  static int64_t highest_equivalent(int64_t v) noexcept;

  int64_t highest_trackable() const noexcept { return highest_; }
  int bucket_count() const noexcept { return bucket_count_; }

  // The flat counts layout, for histograms kept elsewhere (core/shared_histogram.h): the
  // number of counters a histogram of range `highest` holds, the counter a value goes to, and
  // the lowest value that counter holds (so record(value_from_index(i)) lands in counter i).
  static constexpr size_t counts_length(int64_t highest) noexcept {
    const int width = std::bit_width(static_cast<uint64_t>(
        highest < kLowestHighestTrackable ? kLowestHighestTrackable : highest));
    const int buckets = width - kSubBucketHalfCountMagnitude < 1
                            ? 1
                            : width - kSubBucketHalfCountMagnitude;
    return static_cast<size_t>((buckets + 1) * kSubBucketHalfCount);
  }
  static int64_t index_of(int64_t v) noexcept {
    const int bucket = bucket_index(v);
    return (static_cast<int64_t>(bucket) << kSubBucketHalfCountMagnitude) + (v >> bucket);
  }
  static int64_t value_from_index(int64_t index) noexcept;
  int64_t sub_bucket_count() const noexcept { return kSubBucketCount; }
  // Bytes owned by this object, including the counts array. Constant over its lifetime.
  size_t memory_footprint() const noexcept {
    return sizeof(*this) + counts_.capacity() * sizeof(int64_t);
  }

  // HdrHistogram's percentile-distribution text (.hgrm), byte-compatible with the Java
  // AbstractHistogram.outputPercentileDistribution: each halving of the remaining distance to
  // 100% is reported in ticks_per_half_distance steps; values are divided by unit_ratio (e.g.
  // 1000.0 to print microseconds from nanoseconds). As in Java, line values are bucket upper
  // edges (highest_equivalent), while the footer Max is the exact max().
  // REQUIRES: ticks_per_half_distance >= 1 (smaller is treated as 1), unit_ratio > 0.
  std::string percentile_distribution(int ticks_per_half_distance = 5,
                                      double unit_ratio = 1.0) const;
  // Writes percentile_distribution() to path (created or truncated).
  absl::Status write_percentile_distribution(const std::string& path,
                                             int ticks_per_half_distance = 5,
                                             double unit_ratio = 1.0) const;

 private:
  // Bucket b >= 0 holds values with bit width 11 + b (bucket 0 also everything below 2048);
  // within a bucket the top 11 bits select the sub-bucket. Buckets after the first only use
  // their upper half of sub-buckets (the lower half overlaps the previous bucket), which is why
  // the flat index advances 1024 per bucket.
  static int bucket_index(int64_t v) noexcept {
    return (64 - kSubBucketCountMagnitude) -
           std::countl_zero(static_cast<uint64_t>(v) | static_cast<uint64_t>(kSubBucketCount - 1));
  }
  static int64_t median_equivalent(int64_t v) noexcept;
  // Index one past the last bucket that can hold a recorded value; bounds the query walks.
  int64_t used_index_end() const noexcept { return total_ == 0 ? 0 : index_of(max_) + 1; }

  int64_t highest_;
  int bucket_count_;
  std::vector<int64_t> counts_;
  int64_t total_ = 0;
  int64_t saturated_ = 0;
  int64_t min_ = std::numeric_limits<int64_t>::max();
  int64_t max_ = 0;
};

}  // namespace sluice

#endif  // SLUICE_CORE_HISTOGRAM_H_
