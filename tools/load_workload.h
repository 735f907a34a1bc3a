// LoadWorkload: the events `sluice load` sends. It decides what each TRANSACTION or ORDER says
// (SPEC section 1.2); when it is sent, and with which client_seq, is the generator's business.
//
// The values are chosen so most events ACCEPT under the default processor config (SPEC 2) and
// a configurable share fires a rule, so FLAG, REJECT and alerts happen:
//   - accounts are ranks 1..accounts drawn from a Zipf distribution with exponent `skew` (0 is
//     uniform); the hot accounts are the low ids.
//   - a TRANSACTION's amount is its account's typical amount (a fixed function of the account,
//     5.00 .. 205.00 in minor units) times 0.5 .. 1.5, which never exceeds 3x an account's mean
//     history, so AMOUNT_ANOMALY fires only on the `rule_rate` share given 10x the typical amount.
//     VELOCITY_EXCEEDED depends on how often an account comes up, i.e. on rate, accounts and
//     skew: more than 5 transactions of one account inside 60 s flags it.
//   - an ORDER buys or sells 1..100 of one of 100 instruments near the instrument's price; the
//     `rule_rate` share asks for 20000 (MAX_ORDER_QTY) or, one time in four of those, a notional
//     over 10^12 (MAX_ORDER_NOTIONAL). Hot accounts may also hit ORDER_RATE (100 orders a second).
// The event stream of a (options, stream) pair is fully determined by the seed.
//
// Thread safety: a LoadWorkload is used by one thread.
#ifndef SLUICE_TOOLS_LOAD_WORKLOAD_H_
#define SLUICE_TOOLS_LOAD_WORKLOAD_H_

#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>

#include "absl/status/statusor.h"
#include "core/random.h"
#include "core/wire_format.h"

namespace sluice::tools {

enum class LoadMix : uint8_t {
  kFraud,  // TRANSACTION events
  kRisk,   // ORDER events
  kBoth,   // each event TRANSACTION or ORDER with equal chance
};

// Parses "fraud", "risk" or "both" (the --mix flag).
absl::StatusOr<LoadMix> parse_load_mix(std::string_view name);
std::string_view load_mix_name(LoadMix mix);

struct WorkloadOptions {
  LoadMix mix = LoadMix::kFraud;
  uint64_t accounts = 1'000'000;  // account ids 1..accounts
  double skew = 0.0;              // Zipf exponent over accounts; 0 uniform, 1 classic Zipf
  double rule_rate = 0.005;       // share of events given a value that fires a value rule
  uint64_t seed = 1;
};

class LoadWorkload {
 public:
  // The longest event encode_next() writes (an ORDER frame).
  static constexpr size_t kMaxEventSize = wire::kHeaderSize + wire::kOrderPayload;
  static constexpr uint32_t kInstruments = 100;

  // `stream` separates the event streams of different connections under one seed.
  LoadWorkload(const WorkloadOptions& options, uint64_t stream) noexcept;

  // Writes the next event as a frame with this client_seq and event time; returns its length.
  // REQUIRES: out.size() >= kMaxEventSize.
  size_t encode_next(uint64_t client_seq, int64_t event_time_ns, std::span<std::byte> out) noexcept;

  // The typical amount of an account and the reference price of an instrument (minor units).
  static int64_t typical_amount(uint64_t account_id) noexcept;
  static int64_t reference_price(uint32_t instrument_id) noexcept;

 private:
  WorkloadOptions options_;
  uint64_t stream_;
  FastRandom random_;
  ZipfDistribution accounts_;
};

}  // namespace sluice::tools

#endif  // SLUICE_TOOLS_LOAD_WORKLOAD_H_
