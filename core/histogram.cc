#include "core/histogram.h"

#include <algorithm>
#include <cassert>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <string_view>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "core/errno_status.h"

namespace sluice {
namespace {

// Smallest bucket count that reaches `highest`: the last bucket ends just below
// 2^(kSubBucketHalfCountMagnitude + bucket_count), so that power must exceed highest.
int buckets_needed(int64_t highest) {
  return static_cast<int>(Histogram::counts_length(highest) / Histogram::kSubBucketHalfCount) - 1;
}

// The percentile level after `level` in HdrHistogram's percentile iteration: the distance to
// 100% is cut into halves, and each half into `ticks` equal steps, so resolution grows toward
// the tail. The log/pow arithmetic mirrors the Java implementation so the levels (and hence the
// .hgrm lines) come out bit-identical.
double next_percentile_level(double level, int ticks) {
  const double remaining = 100.0 - level;
  if (!(remaining > 0.0)) return 100.0;
  const auto halvings = static_cast<int64_t>(std::log(100.0 / remaining) / std::log(2.0));
  // Java multiplies in int64; ticks * 2^(halvings+1) is exact in a double for any level < 100,
  // and a double cannot overflow the way the integer product could for huge ticks.
  const double reporting_ticks =
      static_cast<double>(ticks) * std::ldexp(1.0, static_cast<int>(halvings) + 1);
  const double next = level + 100.0 / reporting_ticks;
  // Within a few ulps of 100 the step can vanish; force progress so output always terminates.
  return next > level ? next : std::nextafter(level, 101.0);
}

// Appends v as Java's String.format("%<width>.<precision>f") would. Java rounds the shortest
// round-trip decimal form of v half-up, whereas printf rounds the exact binary value half-even,
// so they differ on values like 0.5005 (binary 0.50049999...): Java prints 0.501, printf 0.500.
// Matching Java keeps .hgrm files byte-identical to those of the reference implementation.
void append_java_fixed(std::string* out, double v, int width, int precision) {
  std::string text;
  if (std::isnan(v)) {
    text = "NaN";
  } else if (std::isinf(v)) {
    text = v > 0 ? "Infinity" : "-Infinity";
  } else {
    char buffer[400];  // a double's shortest fixed form is at most ~330 characters
    const std::to_chars_result r =
        std::to_chars(buffer, buffer + sizeof(buffer), v, std::chars_format::fixed);
    std::string_view shortest(buffer, static_cast<size_t>(r.ptr - buffer));
    const bool negative = !shortest.empty() && shortest.front() == '-';
    if (negative) shortest.remove_prefix(1);
    const size_t dot = shortest.find('.');
    std::string digits(shortest.substr(0, dot));  // integer part, then `precision` decimals
    std::string_view fraction =
        dot == std::string_view::npos ? std::string_view() : shortest.substr(dot + 1);
    const auto keep = static_cast<size_t>(precision);
    const bool round_up = fraction.size() > keep && fraction[keep] >= '5';
    digits.append(fraction.substr(0, std::min(keep, fraction.size())));
    digits.append(keep - std::min(keep, fraction.size()), '0');
    if (round_up) {
      size_t i = digits.size();
      while (i > 0 && digits[i - 1] == '9') digits[--i] = '0';
      if (i == 0) {
        digits.insert(digits.begin(), '1');
      } else {
        ++digits[i - 1];
      }
    }
    const size_t new_int_digits = digits.size() - keep;  // grew by one if the carry ran out
    text = negative ? "-" : "";
    text.append(digits, 0, new_int_digits);
    if (keep > 0) {
      text.push_back('.');
      text.append(digits, new_int_digits, keep);
    }
  }
  if (text.size() < static_cast<size_t>(width)) {
    out->append(static_cast<size_t>(width) - text.size(), ' ');
  }
  out->append(text);
}

}  // namespace

Histogram::Histogram(int64_t highest_trackable)
    : highest_(std::max(highest_trackable, kLowestHighestTrackable)),
      bucket_count_(buckets_needed(highest_)),
      counts_(static_cast<size_t>((bucket_count_ + 1) * kSubBucketHalfCount), 0) {
  assert(highest_trackable >= kLowestHighestTrackable);
}

void Histogram::reset() noexcept {
  std::fill(counts_.begin(), counts_.end(), 0);
  total_ = 0;
  saturated_ = 0;
  min_ = std::numeric_limits<int64_t>::max();
  max_ = 0;
}

absl::Status Histogram::merge(const Histogram& other) {
  if (other.highest_ != highest_) {
    return absl::InvalidArgumentError(
        absl::StrCat("cannot merge histograms with different ranges: highest_trackable ",
                     other.highest_, " into ", highest_));
  }
  if (other.total_ == 0) return absl::OkStatus();
  const int64_t end = other.used_index_end();
  for (int64_t i = 0; i < end; ++i) {
    counts_[static_cast<size_t>(i)] += other.counts_[static_cast<size_t>(i)];
  }
  total_ += other.total_;
  saturated_ += other.saturated_;
  min_ = std::min(min_, other.min_);
  max_ = std::max(max_, other.max_);
  return absl::OkStatus();
}

int64_t Histogram::value_from_index(int64_t index) noexcept {
  int64_t bucket = (index >> kSubBucketHalfCountMagnitude) - 1;
  int64_t sub_bucket = (index & (kSubBucketHalfCount - 1)) + kSubBucketHalfCount;
  if (bucket < 0) {
    // Bucket 0 owns its lower half too (values 0..1023).
    sub_bucket -= kSubBucketHalfCount;
    bucket = 0;
  }
  return sub_bucket << bucket;
}

int64_t Histogram::lowest_equivalent(int64_t v) noexcept {
  if (v <= 0) return 0;
  const int bucket = bucket_index(v);
  return (v >> bucket) << bucket;
}

int64_t Histogram::highest_equivalent(int64_t v) noexcept {
  if (v <= 0) return 0;
  const int bucket = bucket_index(v);
  return lowest_equivalent(v) + ((int64_t{1} << bucket) - 1);
}

int64_t Histogram::median_equivalent(int64_t v) noexcept {
  const int64_t lowest = lowest_equivalent(v);
  return lowest + (highest_equivalent(v) - lowest + 1) / 2;
}

int64_t Histogram::count_at_value(int64_t v) const noexcept {
  const int64_t clamped = std::clamp<int64_t>(v, 0, highest_);
  return counts_[static_cast<size_t>(index_of(clamped))];
}

double Histogram::mean() const noexcept {
  if (total_ == 0) return 0.0;
  double sum = 0.0;
  const int64_t end = used_index_end();
  for (int64_t i = 0; i < end; ++i) {
    const int64_t count = counts_[static_cast<size_t>(i)];
    if (count == 0) continue;
    sum += static_cast<double>(median_equivalent(value_from_index(i))) * static_cast<double>(count);
  }
  return sum / static_cast<double>(total_);
}

double Histogram::stddev() const noexcept {
  if (total_ == 0) return 0.0;
  const double avg = mean();
  double sum_sq = 0.0;
  const int64_t end = used_index_end();
  for (int64_t i = 0; i < end; ++i) {
    const int64_t count = counts_[static_cast<size_t>(i)];
    if (count == 0) continue;
    const double dev = static_cast<double>(median_equivalent(value_from_index(i))) - avg;
    sum_sq += dev * dev * static_cast<double>(count);
  }
  return std::sqrt(sum_sq / static_cast<double>(total_));
}

int64_t Histogram::value_at_percentile(double p) const noexcept {
  if (total_ == 0) return 0;
  if (!(p > 0.0)) return min_;  // also catches NaN
  if (p >= 100.0) return max_;
  const double exact_rank = p / 100.0 * static_cast<double>(total_);
  const double rank_d = std::ceil(exact_rank - exact_rank * 1e-12);
  const int64_t rank = std::clamp<int64_t>(static_cast<int64_t>(rank_d), 1, total_);
  int64_t cumulative = 0;
  const int64_t end = used_index_end();
  for (int64_t i = 0; i < end; ++i) {
    cumulative += counts_[static_cast<size_t>(i)];
    if (cumulative >= rank) return std::min(highest_equivalent(value_from_index(i)), max_);
  }
  return max_;  // unreachable while counts_ and total_ agree
}

std::string Histogram::percentile_distribution(int ticks_per_half_distance,
                                               double unit_ratio) const {
  const int ticks = std::max(ticks_per_half_distance, 1);
  std::string out;
  absl::StrAppendFormat(&out, "%12s %14s %10s %14s\n\n", "Value", "Percentile", "TotalCount",
                        "1/(1-Percentile)");

  // Java format strings: "%12.3f %2.12f %10d %14.2f\n", the last line without the final column.
  auto append_line = [&out](double value, double fraction, int64_t cumulative, bool last) {
    append_java_fixed(&out, value, 12, kSignificantDigits);
    out.push_back(' ');
    append_java_fixed(&out, fraction, 2, 12);
    absl::StrAppendFormat(&out, " %10d", cumulative);
    if (!last) {
      out.push_back(' ');
      append_java_fixed(&out, 1.0 / (1.0 - fraction), 14, 2);
    }
    out.push_back('\n');
  };

  if (total_ > 0) {
    const double total = static_cast<double>(total_);
    double level = 0.0;
    int64_t cumulative = 0;
    const int64_t end = used_index_end();
    for (int64_t i = 0; i < end; ++i) {
      const int64_t count = counts_[static_cast<size_t>(i)];
      if (count == 0) continue;
      cumulative += count;
      const double value =
          static_cast<double>(highest_equivalent(value_from_index(i))) / unit_ratio;
      // One bucket can cross several reporting levels; each gets its own line (same value).
      // Once the last count is reached only one regular line is written, then the 100% line.
      while (100.0 * static_cast<double>(cumulative) / total >= level) {
        append_line(value, level / 100.0, cumulative, /*last=*/false);
        level = next_percentile_level(level, ticks);
        if (cumulative == total_) break;
      }
      if (cumulative == total_) {
        append_line(value, 1.0, cumulative, /*last=*/true);
        break;
      }
    }
  }

  out.append("#[Mean    = ");
  append_java_fixed(&out, mean() / unit_ratio, 12, kSignificantDigits);
  out.append(", StdDeviation   = ");
  append_java_fixed(&out, stddev() / unit_ratio, 12, kSignificantDigits);
  out.append("]\n#[Max     = ");
  append_java_fixed(&out, static_cast<double>(max()) / unit_ratio, 12, kSignificantDigits);
  absl::StrAppendFormat(&out, ", Total count    = %12d]\n", total_);
  absl::StrAppendFormat(&out, "#[Buckets = %12d, SubBuckets     = %12d]\n", bucket_count_,
                        kSubBucketCount);
  return out;
}

absl::Status Histogram::write_percentile_distribution(const std::string& path,
                                                      int ticks_per_half_distance,
                                                      double unit_ratio) const {
  const std::string text = percentile_distribution(ticks_per_half_distance, unit_ratio);
  std::FILE* file = std::fopen(path.c_str(), "w");
  if (file == nullptr) {
    return errno_status(errno, absl::StrCat("cannot open ", path, " for writing"));
  }
  errno = 0;
  const size_t written = std::fwrite(text.data(), 1, text.size(), file);
  // fwrite may report a short count without errno (e.g. on a full disk only fclose fails).
  const int write_errno = written == text.size() ? 0 : (errno != 0 ? errno : EIO);
  const bool close_failed = std::fclose(file) != 0;
  if (write_errno != 0) {
    return errno_status(write_errno, absl::StrCat("cannot write ", path));
  }
  if (close_failed) return errno_status(errno, absl::StrCat("cannot write ", path));
  return absl::OkStatus();
}

}  // namespace sluice
