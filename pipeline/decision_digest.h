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
#include "pipeline/processor.h"

namespace sluice {

class DecisionDigest {
 public:
  void add(const DecisionRecord& d) noexcept {
    uint64_t h = mix(static_cast<uint64_t>(d.seq));
    h = mix(h ^ static_cast<uint64_t>(static_cast<unsigned char>(d.type)));
    h = mix(h ^ d.account_id);
    h = mix(h ^ d.client_id);
    h = mix(h ^ d.client_seq);
    h = mix(h ^ (static_cast<uint64_t>(d.verdict) | uint64_t{d.reason} << 8 |
                 uint64_t{d.flags} << 16));
    sum_ += h;
    ++count_;
  }
  void combine(const DecisionDigest& other) noexcept {
    sum_ += other.sum_;
    count_ += other.count_;
  }

  uint64_t value() const noexcept { return mix(sum_ ^ mix(count_)); }
  uint64_t count() const noexcept { return count_; }
  std::string hex() const { return absl::StrFormat("%016x", value()); }

  bool operator==(const DecisionDigest& o) const { return value() == o.value(); }

 private:
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
