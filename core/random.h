// Random variates for load generation and tests: a fast seeded generator and a Zipf
// distribution over 1..n. Neither is cryptographic; both are deterministic for a given seed, so
// a load run can be repeated event for event.
//
// FastRandom is xoshiro256++ (Blackman and Vigna), its state seeded through splitmix64 so any
// 64-bit seed, 0 included, gives a well-mixed state. ZipfDistribution draws k in 1..n with
// P(k) proportional to 1 / k^s by rejection-inversion (Hoermann and Derflinger, "Rejection-
// inversion to generate variates from monotone discrete distributions", 1996): O(1) time and
// memory whatever n is, no table, and on average well under two uniforms per draw.
//
// Thread safety: none; give each thread (or each stream that must be reproducible) its own
// generator. A ZipfDistribution is immutable after construction and may be shared.
#ifndef SLUICE_CORE_RANDOM_H_
#define SLUICE_CORE_RANDOM_H_

#include <algorithm>
#include <cmath>
#include <cstdint>

namespace sluice {

// One step of splitmix64: a bijective 64-bit mixer; also a good hash of small integers.
inline constexpr uint64_t splitmix64(uint64_t x) noexcept {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

class FastRandom {
 public:
  explicit FastRandom(uint64_t seed = 0) noexcept {
    uint64_t x = seed;
    for (uint64_t& word : state_) {
      word = splitmix64(x);
      x += 0x9E3779B97F4A7C15ull;
    }
  }

  uint64_t next() noexcept {
    const uint64_t result = rotl(state_[0] + state_[3], 23) + state_[0];
    const uint64_t t = state_[1] << 17;
    state_[2] ^= state_[0];
    state_[3] ^= state_[1];
    state_[1] ^= state_[2];
    state_[0] ^= state_[3];
    state_[2] ^= t;
    state_[3] = rotl(state_[3], 45);
    return result;
  }

  // Uniform in [0, 1): the top 53 bits as a double's mantissa.
  double next_double() noexcept { return static_cast<double>(next() >> 11) * 0x1.0p-53; }

  // Uniform in [0, n) for n >= 1, by the multiply-shift reduction. Its bias is at most
  // n / 2^64, far below anything a load test can see, so no rejection loop.
  uint64_t below(uint64_t n) noexcept {
    __extension__ typedef unsigned __int128 Uint128;
    return static_cast<uint64_t>((Uint128{next()} * n) >> 64);
  }

  // True with probability p (p <= 0 never, p >= 1 always).
  bool chance(double p) noexcept { return next_double() < p; }

 private:
  static constexpr uint64_t rotl(uint64_t x, int k) noexcept { return (x << k) | (x >> (64 - k)); }

  uint64_t state_[4];
};

class ZipfDistribution {
 public:
  // REQUIRES: n >= 1, exponent >= 0 (values outside are clamped). exponent 0 is uniform.
  ZipfDistribution(uint64_t n, double exponent) noexcept
      : n_(std::max<uint64_t>(n, 1)), s_(std::max(exponent, 0.0)) {
    h_integral_x1_ = h_integral(1.5) - 1.0;
    h_integral_n_ = h_integral(static_cast<double>(n_) + 0.5);
    quick_accept_ = 2.0 - h_integral_inverse(h_integral(2.5) - h(2.0));
  }

  uint64_t n() const noexcept { return n_; }
  double exponent() const noexcept { return s_; }

  // A rank in 1..n; rank 1 is the most frequent.
  uint64_t operator()(FastRandom& random) const noexcept {
    if (s_ == 0.0) return 1 + random.below(n_);
    // Each rank k owns the interval [H(k + 1/2) - h(k), H(k + 1/2)] of the u axis, of width
    // h(k) ~ P(k); ranks are packed so the intervals tile [H(3/2) - 1, H(n + 1/2)] except for
    // small gaps. Draw u, invert H to the nearest rank, and accept if u falls in its interval.
    while (true) {
      const double u = h_integral_n_ + random.next_double() * (h_integral_x1_ - h_integral_n_);
      const double x = h_integral_inverse(u);
      const double rounded = std::floor(x + 0.5);
      const uint64_t k = static_cast<uint64_t>(std::clamp(rounded, 1.0, static_cast<double>(n_)));
      const double kd = static_cast<double>(k);
      // The first test accepts most draws without computing H(k + 1/2) (the squeeze).
      if (kd - x <= quick_accept_ || u >= h_integral(kd + 0.5) - h(kd)) return k;
    }
  }

 private:
  // h(x) = x^-s, the unnormalised density; H(x) = integral of h = (x^(1-s) - 1) / (1-s),
  // which is log(x) at s = 1. Both are written through log1p / expm1 forms that stay accurate
  // as s approaches 1.
  double h(double x) const noexcept { return std::exp(-s_ * std::log(x)); }
  double h_integral(double x) const noexcept {
    const double log_x = std::log(x);
    return expm1_over_x((1.0 - s_) * log_x) * log_x;
  }
  double h_integral_inverse(double y) const noexcept {
    double t = y * (1.0 - s_);
    if (t < -1.0) t = -1.0;  // rounding can step just outside H's range
    return std::exp(log1p_over_x(t) * y);
  }
  static double log1p_over_x(double x) noexcept {
    if (std::abs(x) > 1e-8) return std::log1p(x) / x;
    return 1.0 - x * (0.5 - x * (1.0 / 3.0 - 0.25 * x));
  }
  static double expm1_over_x(double x) noexcept {
    if (std::abs(x) > 1e-8) return std::expm1(x) / x;
    return 1.0 + x * 0.5 * (1.0 + x / 3.0 * (1.0 + 0.25 * x));
  }

  uint64_t n_;
  double s_;
  double h_integral_x1_ = 0;
  double h_integral_n_ = 0;
  double quick_accept_ = 0;
};

}  // namespace sluice

#endif  // SLUICE_CORE_RANDOM_H_
