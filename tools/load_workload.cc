#include "tools/load_workload.h"

#include "absl/strings/str_cat.h"
#include "core/absl_compat.h"

namespace sluice::tools {

absl::StatusOr<LoadMix> parse_load_mix(std::string_view name) {
  if (name == "fraud") return LoadMix::kFraud;
  if (name == "risk") return LoadMix::kRisk;
  if (name == "both") return LoadMix::kBoth;
  return absl::InvalidArgumentError(
      absl::StrCat("unknown mix '", to_absl(name), "' (expected fraud, risk or both)"));
}

std::string_view load_mix_name(LoadMix mix) {
  switch (mix) {
    case LoadMix::kFraud:
      return "fraud";
    case LoadMix::kRisk:
      return "risk";
    case LoadMix::kBoth:
      return "both";
  }
  return "unknown";
}

LoadWorkload::LoadWorkload(const WorkloadOptions& options, uint64_t stream) noexcept
    : options_(options),
      stream_(stream),
      random_(splitmix64(options.seed) ^ splitmix64(stream + 0x5eed)),
      accounts_(options.accounts, options.skew) {}

int64_t LoadWorkload::typical_amount(uint64_t account_id) noexcept {
  return 500 + static_cast<int64_t>(splitmix64(account_id) % 20'000);
}

int64_t LoadWorkload::reference_price(uint32_t instrument_id) noexcept {
  return 1'000 + static_cast<int64_t>(splitmix64(uint64_t{instrument_id} << 32) % 99'000);
}

size_t LoadWorkload::encode_next(uint64_t client_seq, int64_t event_time_ns,
                                 std::span<std::byte> out) noexcept {
  const uint64_t account = accounts_(random_);
  const bool fire_rule = random_.chance(options_.rule_rate);
  const bool order = options_.mix == LoadMix::kRisk ||
                     (options_.mix == LoadMix::kBoth && (random_.next() & 1) != 0);
  if (!order) {
    const int64_t typical = typical_amount(account);
    // lo .. 3 lo with lo = typical / 2: the largest is exactly 3x the smallest, so a history of
    // these never makes a normal amount an anomaly (SPEC 2.1 needs more than 3x the mean).
    const int64_t lo = typical / 2;
    int64_t amount = lo + static_cast<int64_t>(random_.below(static_cast<uint64_t>(2 * lo) + 1));
    if (fire_rule) amount = typical * 10;
    static constexpr uint16_t kCurrencies[] = {978, 840, 826, 756};  // EUR USD GBP CHF
    const wire::Transaction t{
        .client_seq = client_seq,
        .event_time_ns = event_time_ns,
        .account_id = account,
        .amount_minor = amount,
        .merchant_id = static_cast<uint32_t>(1 + random_.below(10'000)),
        .currency = kCurrencies[random_.below(4)],
        .channel = static_cast<uint8_t>(random_.below(4)),
    };
    return wire::encode(t, out);
  }
  const auto instrument = static_cast<uint32_t>(1 + random_.below(kInstruments));
  const int64_t reference = reference_price(instrument);
  int64_t quantity = 1 + static_cast<int64_t>(random_.below(100));
  // Within 1% of the reference price.
  int64_t price = reference - reference / 100 +
                  static_cast<int64_t>(random_.below(static_cast<uint64_t>(reference / 50) + 1));
  if (fire_rule) {
    if (random_.below(4) == 0) {
      quantity = 2'000;
      price = 1'000'000'000;  // notional 2 * 10^12 > max_order_notional 10^12
    } else {
      quantity = 20'000;  // > max_order_qty 10000
    }
  }
  const wire::Order o{
      .client_seq = client_seq,
      .event_time_ns = event_time_ns,
      .account_id = account,
      // Unique per stream: the stream in the top bits, the client_seq below.
      .order_id = ((stream_ + 1) << 40) | (client_seq & ((uint64_t{1} << 40) - 1)),
      .instrument_id = instrument,
      .side = static_cast<uint8_t>(1 + random_.below(2)),
      .quantity = quantity,
      .price = price,
  };
  return wire::encode(o, out);
}

}  // namespace sluice::tools
