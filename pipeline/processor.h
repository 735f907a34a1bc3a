// The keyed processing API: what a processor sees of an event and how it answers.
//
// In the spirit of Flink's KeyedProcessFunction: a processor gets on_event(ctx, event) for the
// events of the keys its shard owns and on_timer(ctx, key, time) when the watermark passes a
// timer it registered; the context carries the journal sequence, the event-time watermark and
// emit() for decisions and alerts. Everything a processor does is a pure function of the journal
// (sequence order, event times, payloads): no wall clock, no randomness, no dependence on the
// shard count. That is what lets a replay reproduce every decision bit for bit.
//
// Thread safety: a processor instance belongs to one shard and is called from its thread only.
#ifndef SLUICE_PIPELINE_PROCESSOR_H_
#define SLUICE_PIPELINE_PROCESSOR_H_

#include <cstdint>
#include <limits>
#include <string>

#include "absl/status/statusor.h"
#include "core/output_event.h"
#include "core/wire_format.h"

namespace sluice {

// SPEC section 2's thresholds; the defaults are SPEC's.
struct ProcessorConfig {
  int64_t window_ns = 60'000'000'000;
  int64_t velocity_max = 5;
  int64_t anomaly_multiplier_milli = 3000;
  int64_t anomaly_min_history = 3;
  int64_t allowed_lateness_ns = 5'000'000'000;
  int64_t max_order_qty = 10'000;
  int64_t max_order_notional = 1'000'000'000'000;
  int64_t position_limit = 100'000;
  int64_t rate_limit = 100;
  int64_t rate_window_ns = 1'000'000'000;
  bool fraud = true;  // evaluate TRANSACTIONs
  bool risk = true;   // evaluate ORDERs
};

// Checks the ranges a sane deployment needs (all positive, lateness >= 0); the error names the
// key.
absl::Status validate(const ProcessorConfig& config);

// A 64-bit fingerprint of every field of the config (and of the state layout version), stored in
// snapshots so that state built under other thresholds is never restored into this config.
uint64_t config_fingerprint(const ProcessorConfig& config);

// One answered TRANSACTION or ORDER, with what the decisions file and the DECISION frame need.
struct DecisionRecord {
  int64_t seq = 0;  // journal sequence (0: not journaled)
  char type = 'T';  // 'T' transaction, 'O' order
  uint64_t account_id = 0;
  uint64_t client_id = 0;
  uint64_t client_seq = 0;
  wire::Verdict verdict = wire::Verdict::kAccept;
  uint8_t reason = 0;          // lowest rule code that fired, 0 if none
  uint32_t flags = 0;          // bit (rule - 1) for every rule that fired
  uint32_t connection_id = 0;  // routing only: not part of the decision's identity
  bool operator==(const DecisionRecord& o) const {
    return seq == o.seq && type == o.type && account_id == o.account_id &&
           client_id == o.client_id && client_seq == o.client_seq && verdict == o.verdict &&
           reason == o.reason && flags == o.flags;
  }
};

struct AlertRecord {
  int64_t seq = 0;
  int64_t event_time_ns = 0;
  uint64_t account_id = 0;
  wire::Rule rule = wire::Rule::kNone;
  int64_t value = 0;
  int64_t threshold = 0;
  bool operator==(const AlertRecord&) const = default;
};

// The output-ring slots (core/output_event.h) of a decision and of an alert; receive_ticks is
// the event's (InputEvent::receive_ticks), 0 when unknown.
inline OutputEvent to_output_event(const DecisionRecord& d, int64_t receive_ticks) noexcept {
  OutputEvent o;
  o.kind = OutputEvent::Kind::kDecision;
  o.type = d.type;
  o.verdict = static_cast<uint8_t>(d.verdict);
  o.reason = d.reason;
  o.connection_id = d.connection_id;
  o.flags = d.flags;
  o.seq = d.seq;
  o.account_id = d.account_id;
  o.client_id = d.client_id;
  o.client_seq = d.client_seq;
  o.receive_ticks = receive_ticks;
  return o;
}
inline OutputEvent to_output_event(const AlertRecord& a, int64_t receive_ticks) noexcept {
  OutputEvent o;
  o.kind = OutputEvent::Kind::kAlert;
  o.rule = static_cast<uint16_t>(a.rule);
  o.seq = a.seq;
  o.account_id = a.account_id;
  o.receive_ticks = receive_ticks;
  o.event_time_ns = a.event_time_ns;
  o.value = a.value;
  o.threshold = a.threshold;
  return o;
}

// Where a shard's answers go (the output ring in the daemon, vectors in replay and tests).
class DecisionSink {
 public:
  virtual ~DecisionSink() = default;
  virtual void on_decision(const DecisionRecord& d) = 0;
  virtual void on_alert(const AlertRecord& a) = 0;
};

// The event-time clock every shard keeps identically: maxT, the largest event_time_ns of all
// TRANSACTION, ORDER and WATERMARK events so far in journal order (SPEC 2). Every shard sees
// every event, so every shard agrees on it whatever the shard count.
class EventClock {
 public:
  static constexpr int64_t kNone = std::numeric_limits<int64_t>::min();

  // maxT before the current event (kNone when no event came yet).
  int64_t max_time() const noexcept { return max_time_; }

  // SPEC 2: late when event_time < maxT - allowed_lateness (and some event came before).
  bool is_late(int64_t event_time_ns, int64_t allowed_lateness_ns) const noexcept {
    return max_time_ != kNone && event_time_ns < max_time_ - allowed_lateness_ns;
  }

  // Advances after the event was handled; returns true if maxT moved.
  bool observe(int64_t event_time_ns) noexcept {
    if (max_time_ != kNone && event_time_ns <= max_time_) return false;
    max_time_ = event_time_ns;
    return true;
  }

  void restore(int64_t max_time) noexcept { max_time_ = max_time; }

 private:
  int64_t max_time_ = kNone;
};

// Which of `shard_count` shards owns an account: a fixed 64-bit mix of the id, so accounts with
// patterned ids still spread, and the answer never depends on anything but the two numbers.
inline uint32_t shard_of(uint64_t account_id, uint32_t shard_count) noexcept {
  uint64_t x = account_id;
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdull;
  x ^= x >> 33;
  x *= 0xc4ceb9fe1a85ec53ull;
  x ^= x >> 33;
  return static_cast<uint32_t>(x % shard_count);
}

}  // namespace sluice

#endif  // SLUICE_PIPELINE_PROCESSOR_H_
