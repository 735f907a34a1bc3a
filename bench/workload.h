// The synthetic event stream the processor, state store, replay and snapshot benchmarks share.
//
// `accounts` accounts drawn uniformly; event time advances by 30 s / accounts per event, so an
// account sees an event every ~30 s of event time and holds ~2.2 transactions in the fraud
// window plus lateness (60 s + 5 s): the state grows with the account count, not with time, and
// 10k, 1M and 10M accounts differ only in how much memory the state spans (L2, L3, DRAM).
// One event in ten is out of order by up to 1 s (within the 5 s lateness). Orders use one
// instrument per account (position keys <= accounts, so the tables reach their steady size in
// the warm-up and no table grows while a benchmark measures), quantities 1..100.
//
// Account ids are 1..accounts, or, with SLUICE_BENCH_IDS=scrambled in the environment, those
// numbers through a 64-bit bijection: ids spread over the whole 64-bit range, for checking that a
// result does not rest on sequential ids (a multiplicative table hash spreads those unusually
// evenly).
#ifndef SLUICE_BENCH_WORKLOAD_H_
#define SLUICE_BENCH_WORKLOAD_H_

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <span>
#include <string_view>

#include "core/wire_format.h"

namespace sluice::bench {

enum class Mix : uint8_t { kFraud, kRisk, kMixed };

class EventGen {
 public:
  EventGen(uint64_t accounts, Mix mix, uint64_t seed = 0x5eed)
      : accounts_(accounts),
        mix_(mix),
        rng_(seed | 1),
        step_(static_cast<int64_t>(30'000'000'000 / accounts) + 1) {}

  // Writes the next event's frame into out (>= 64 bytes); returns its length.
  size_t next(std::byte* out) {
    now_ += step_;
    const uint64_t r = rand();
    int64_t t = now_;
    if (r % 10 == 0) t -= static_cast<int64_t>((r >> 8) % 1'000'000'000);
    const uint64_t account = id(1 + (r >> 16) % accounts_);
    ++seq_;
    const bool order = mix_ == Mix::kRisk || (mix_ == Mix::kMixed && (r >> 60) % 2 == 0);
    std::span<std::byte> buf(out, 64);
    if (!order) {
      return wire::encode(
          wire::Transaction{.client_seq = seq_,
                            .event_time_ns = t,
                            .account_id = account,
                            .amount_minor = static_cast<int64_t>(1 + (r >> 40) % 10'000),
                            .merchant_id = 7,
                            .currency = 978,
                            .channel = 1},
          buf);
    }
    return wire::encode(wire::Order{.client_seq = seq_,
                                    .event_time_ns = t,
                                    .account_id = account,
                                    .order_id = seq_,
                                    .instrument_id = 1,
                                    .side = static_cast<uint8_t>(1 + (r >> 52) % 2),
                                    .quantity = static_cast<int64_t>(1 + (r >> 40) % 100),
                                    .price = static_cast<int64_t>(1 + (r >> 30) % 1000)},
                        buf);
  }

  // The raw fields, for the state store benchmark (no frame).
  struct Raw {
    uint64_t account;
    int64_t time;
    int64_t amount;
  };
  Raw next_raw() {
    now_ += step_;
    const uint64_t r = rand();
    int64_t t = now_;
    if (r % 10 == 0) t -= static_cast<int64_t>((r >> 8) % 1'000'000'000);
    return Raw{id(1 + (r >> 16) % accounts_), t, static_cast<int64_t>(1 + (r >> 40) % 10'000)};
  }

  uint64_t accounts() const { return accounts_; }

 private:
  static bool scrambled_ids() {
    const char* v = std::getenv("SLUICE_BENCH_IDS");
    return v != nullptr && std::string_view(v) == "scrambled";
  }
  uint64_t id(uint64_t n) const {
    if (!scrambled_) return n;
    // splitmix64's finaliser: a bijection, so distinct numbers stay distinct ids (and n != 0
    // never maps to 0).
    n ^= n >> 30;
    n *= 0xbf58476d1ce4e5b9ull;
    n ^= n >> 27;
    n *= 0x94d049bb133111ebull;
    n ^= n >> 31;
    return n;
  }
  uint64_t rand() {
    // xorshift64*: a few cycles, good enough to spread accounts.
    rng_ ^= rng_ >> 12;
    rng_ ^= rng_ << 25;
    rng_ ^= rng_ >> 27;
    return rng_ * 0x2545F4914F6CDD1Dull;
  }

  const uint64_t accounts_;
  const Mix mix_;
  const bool scrambled_ = scrambled_ids();
  uint64_t rng_;
  const int64_t step_;
  int64_t now_ = 1'700'000'000'000'000'000;
  uint64_t seq_ = 0;
};

// Events needed before the state is in its steady size: every account seen ~3 times.
inline int64_t warmup_events(uint64_t accounts) { return static_cast<int64_t>(3 * accounts); }

}  // namespace sluice::bench

#endif  // SLUICE_BENCH_WORKLOAD_H_
