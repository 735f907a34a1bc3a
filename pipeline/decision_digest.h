// DecisionDigest: a fingerprint of a decision stream that does not depend on arrival order.
//
// The live daemon answers from N shards whose outputs interleave; a replay produces decisions in
// sequence order. Both must agree, so the digest is a sum (mod 2^64) of a strong 64-bit hash of
// each decision's identity (seq, type, account, client, client_seq, verdict, reason, flags),
// plus the count: equal streams give equal digests in any order, and a changed, missing or
// extra decision changes it.
//
// Thread safety: none; one instance per thread, combine() to merge.
#ifndef SLUICE_PIPELINE_DECISION_DIGEST_H_
#define SLUICE_PIPELINE_DECISION_DIGEST_H_

#include <cstdint>
#include <string>

#include "absl/strings/str_format.h"
#include "core/int128.h"
#include "pipeline/processor.h"

namespace sluice {

class DecisionDigest {
 public:
  void add(const DecisionRecord& d) noexcept {
    sum_ += hash(d);
    ++count_;
  }

  // One decision's contribution; the digest is the sum of these (mod 2^64) and the count.
  // Two independent folded 64x64->128-bit multiplies, then one over both: a short dependency
  // chain (replay computes one per event), and every field reaches every output bit.
  static uint64_t hash(const DecisionRecord& d) noexcept {
    const uint64_t tail = static_cast<uint64_t>(static_cast<unsigned char>(d.type)) |
                          static_cast<uint64_t>(d.verdict) << 8 | uint64_t{d.reason} << 16 |
                          uint64_t{d.flags} << 32;
    const uint64_t a = fold(static_cast<uint64_t>(d.seq) ^ 0xa0761d6478bd642full,
                            d.account_id ^ 0xe7037ed1a0b428dbull);
    const uint64_t b = fold(d.client_id ^ 0x8ebc6af09c88c6e3ull,
                            d.client_seq ^ 0x589965cc75374cc3ull);
    return fold(a ^ tail ^ 0x1d8e4e27c47d124full, b ^ 0x9e3779b97f4a7c15ull);
  }

  // A digest kept elsewhere as its two parts (e.g. counters in the stats file).
  static DecisionDigest from_parts(uint64_t sum, uint64_t count) noexcept {
    DecisionDigest d;
    d.sum_ = sum;
    d.count_ = count;
    return d;
  }
  uint64_t sum() const noexcept { return sum_; }

  void combine(const DecisionDigest& other) noexcept {
    sum_ += other.sum_;
    count_ += other.count_;
  }

  uint64_t value() const noexcept { return mix(sum_ ^ mix(count_)); }
  uint64_t count() const noexcept { return count_; }
  std::string hex() const { return absl::StrFormat("%016x", value()); }

  bool operator==(const DecisionDigest& o) const { return value() == o.value(); }

 private:
  // The high and low halves of the 128-bit product, xor'ed.
  static constexpr uint64_t fold(uint64_t x, uint64_t y) noexcept {
    const Uint128 p = static_cast<Uint128>(x) * y;
    return static_cast<uint64_t>(p) ^ static_cast<uint64_t>(p >> 64);
  }
  // splitmix64's finaliser: every input bit flips about half the output bits.
  static constexpr uint64_t mix(uint64_t x) noexcept {
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
  }

  uint64_t sum_ = 0;
  uint64_t count_ = 0;
};

}  // namespace sluice

#endif  // SLUICE_PIPELINE_DECISION_DIGEST_H_
