// The built-in processors, exactly as SPEC section 2 defines them: fraud (TRANSACTION:
// VELOCITY_EXCEEDED, AMOUNT_ANOMALY) and risk (ORDER: MAX_ORDER_QTY, MAX_ORDER_NOTIONAL,
// POSITION_LIMIT, ORDER_RATE), and the Shard that feeds them.
//
// A Shard reads every event of the journal in sequence order (the input ring is multicast),
// keeps the event-time clock (maxT) from all of them, and evaluates only the accounts it owns
// (shard_of(account, N) == index). State that no future non-late event can see is evicted by
// event-time timers as maxT passes them, so state stays bounded by the window and eviction never
// changes an answer.
//
// Integer arithmetic throughout, 128-bit where a product can overflow 64 bits; values reported
// in alerts saturate to int64.
//
// Shards and processors are values: each holds its own copy of the config, so copying or moving
// one never leaves it reading another's.
//
// Thread safety: a Shard and its processors are used by one thread.
#ifndef SLUICE_PIPELINE_KEYED_PROCESSORS_H_
#define SLUICE_PIPELINE_KEYED_PROCESSORS_H_

#include <cstdint>
#include <queue>
#include <span>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/inlined_vector.h"
#include "core/int128.h"
#include "core/wire_format.h"
#include "pipeline/processor.h"

namespace sluice {

// Rule evaluation output for one event: the verdict and the alerts.
struct Evaluation {
  wire::Verdict verdict = wire::Verdict::kAccept;
  uint8_t reason = 0;
  uint32_t flags = 0;
  absl::InlinedVector<AlertRecord, 4> alerts;

  void fire(wire::Rule rule, int64_t seq, int64_t event_time_ns, uint64_t account_id,
            int64_t value, int64_t threshold);
};

// Per-key time-ordered entries with counts and sums over a window: the state both processors
// need (transaction history; accepted order times).
class WindowedHistory {
 public:
  struct Entry {
    int64_t time = 0;
    int64_t amount = 0;
  };
  struct Stats {
    int64_t count = 0;
    Int128 sum = 0;
  };

  // Entries of `key` with lo < time <= hi.
  Stats query(uint64_t key, int64_t lo, int64_t hi) const;
  void add(uint64_t key, int64_t time, int64_t amount);
  // Drops entries of `key` with time <= cutoff; forgets the key when none is left.
  void evict(uint64_t key, int64_t cutoff);

  size_t keys() const { return entries_.size(); }
  size_t entries() const { return total_; }

 private:
  // Sorted by time; out-of-order (non-late) events insert near the back.
  absl::flat_hash_map<uint64_t, absl::InlinedVector<Entry, 6>> entries_;
  size_t total_ = 0;
};

// Event-time timers: (time, key) pairs fired in time order once maxT reaches them.
class TimerQueue {
 public:
  void add(int64_t time, uint64_t key) { heap_.push({time, key}); }
  // Pops every timer with time <= now, calling fire(key, time) for each.
  template <typename F>
  void advance(int64_t now, F&& fire) {
    while (!heap_.empty() && heap_.top().first <= now) {
      const auto [time, key] = heap_.top();
      heap_.pop();
      fire(key, time);
    }
  }
  size_t size() const { return heap_.size(); }

 private:
  using Timer = std::pair<int64_t, uint64_t>;
  std::priority_queue<Timer, std::vector<Timer>, std::greater<Timer>> heap_;
};

class FraudProcessor {
 public:
  explicit FraudProcessor(const ProcessorConfig& config) : config_(config) {}

  // A non-late transaction: evaluates the rules, then joins the account's history.
  Evaluation on_transaction(int64_t seq, const wire::Transaction& t);
  // maxT moved to `max_time`: evicts what no future non-late transaction can see.
  void on_watermark(int64_t max_time);

  const WindowedHistory& history() const { return history_; }

 private:
  ProcessorConfig config_;  // a copy: a processor stays valid when its shard is copied or moved
  WindowedHistory history_;
  TimerQueue timers_;
};

class RiskProcessor {
 public:
  explicit RiskProcessor(const ProcessorConfig& config) : config_(config) {}

  Evaluation on_order(int64_t seq, const wire::Order& o);
  void on_watermark(int64_t max_time);

  int64_t position(uint64_t account_id, uint32_t instrument_id) const;
  size_t position_keys() const { return positions_.size(); }
  const WindowedHistory& accepted() const { return accepted_; }

 private:
  ProcessorConfig config_;  // a copy: a processor stays valid when its shard is copied or moved
  absl::flat_hash_map<std::pair<uint64_t, uint32_t>, int64_t> positions_;
  WindowedHistory accepted_;  // times of accepted non-late orders, per account
  TimerQueue timers_;
};

// One shard: the event-time clock, ownership, INVALID / LATE, and the two processors.
class Shard {
 public:
  Shard(const ProcessorConfig& config, uint32_t index, uint32_t count, DecisionSink& sink);

  // One journaled event, in sequence order. Frames of unknown type are skipped (forward
  // compatibility); a frame too short for its type is skipped too (ingest never journals one).
  void on_event(int64_t seq, uint64_t client_id, uint32_t connection_id,
                std::span<const std::byte> frame);

  uint32_t index() const { return index_; }
  uint32_t count() const { return count_; }
  int64_t max_time() const { return clock_.max_time(); }
  const FraudProcessor& fraud() const { return fraud_; }
  const RiskProcessor& risk() const { return risk_; }

 private:
  void advance(int64_t event_time_ns);

  ProcessorConfig config_;
  uint32_t index_;
  uint32_t count_;
  DecisionSink& sink_;
  EventClock clock_;
  FraudProcessor fraud_;
  RiskProcessor risk_;
};

}  // namespace sluice

#endif  // SLUICE_PIPELINE_KEYED_PROCESSORS_H_
