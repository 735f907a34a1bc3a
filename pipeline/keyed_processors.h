// The built-in processors, exactly as SPEC section 2 defines them: fraud (TRANSACTION:
// VELOCITY_EXCEEDED, AMOUNT_ANOMALY) and risk (ORDER: MAX_ORDER_QTY, MAX_ORDER_NOTIONAL,
// POSITION_LIMIT, ORDER_RATE), written against the keyed processor API
// (pipeline/keyed_processor.h), and the Shard that feeds them.
//
// A Shard reads every event of the journal in sequence order (the input ring is multicast),
// keeps the event-time clock (maxT) from all of them, and evaluates only the accounts it owns
// (shard_of(account, N) == index). State that no future non-late event can see is evicted by
// event-time cleanup timers as maxT passes them (at most one allowed lateness late), so state
// stays bounded by the window and eviction never changes an answer.
//
// All of a shard's state lives in its StateStore (pipeline/state_store.h): the fraud history,
// the positions, the accepted-order times, both processors' timers, maxT and the last sequence,
// and on shard 0 the client table (SPEC 1.7's dedupe table). A snapshot is an image of that
// store; restore() puts one back.
//
// Integer arithmetic throughout, 128-bit where a product can overflow 64 bits; values reported
// in alerts saturate to int64.
//
// Thread safety: a Shard and its processors are used by one thread at a time.
#ifndef SLUICE_PIPELINE_KEYED_PROCESSORS_H_
#define SLUICE_PIPELINE_KEYED_PROCESSORS_H_

#include <cstdint>
#include <span>
#include <utility>

#include "absl/status/status.h"
#include "core/wire_format.h"
#include "pipeline/keyed_processor.h"
#include "pipeline/processor.h"
#include "pipeline/state_store.h"

namespace sluice {

// A transaction in an account's history.
struct TxEntry {
  int64_t time = 0;
  int64_t amount = 0;
};
// An accepted order's time, for the rate rule.
struct TimeEntry {
  int64_t time = 0;
};

class FraudProcessor {
 public:
  using Event = wire::Transaction;
  // Three transactions fit in a table slot (one cache line); longer histories go to the pool.
  using History = HistoryState<TxEntry, 3>;

  FraudProcessor(const ProcessorConfig& config, StateCapture& capture);

  // A non-late transaction of ctx.key(): evaluates the rules, then joins the account's history
  // with a timer for when no future non-late transaction can see it.
  void on_event(EventContext& ctx, const wire::Transaction& t);
  // Evicts what no future non-late transaction of `key` can see.
  void on_timer(TimerContext& ctx, uint64_t key, int64_t time);

  const History& history() const { return history_; }
  // Sizes the state for this many accounts up front (no growth while they arrive).
  void reserve(size_t accounts) {
    history_.reserve_keys(accounts);
    // A cleanup timer an entry (never in the heap); ~2 entries an account in the window.
    timers_.reserve(accounts * 2, 0);
  }
  TimerQueue& timers() { return timers_; }
  const TimerQueue& timers() const { return timers_; }
  absl::Status restore(RegionReader& in);

 private:
  const ProcessorConfig config_;
  History history_;
  TimerQueue timers_;
};

class RiskProcessor {
 public:
  using Event = wire::Order;
  using Accepted = HistoryState<TimeEntry, 2>;

  RiskProcessor(const ProcessorConfig& config, StateCapture& capture);

  void on_event(EventContext& ctx, const wire::Order& o);
  void on_timer(TimerContext& ctx, uint64_t key, int64_t time);

  int64_t position(uint64_t account_id, uint32_t instrument_id) const {
    return positions_.get(account_id, instrument_id);
  }
  size_t position_keys() const { return positions_.size(); }
  const MapState<int64_t>& positions() const { return positions_; }
  const Accepted& accepted() const { return accepted_; }
  // Sizes the state for this many accounts (one instrument each) up front.
  void reserve(size_t accounts) {
    positions_.reserve_keys(accounts);
    accepted_.reserve_keys(accounts);
    timers_.reserve(accounts, 0);
  }
  TimerQueue& timers() { return timers_; }
  const TimerQueue& timers() const { return timers_; }
  absl::Status restore(RegionReader& in);

 private:
  const ProcessorConfig config_;
  MapState<int64_t> positions_;  // (account, instrument) -> position; zero is no entry
  Accepted accepted_;            // times of accepted non-late orders, per account
  TimerQueue timers_;
};

static_assert(KeyedProcessor<FraudProcessor>);
static_assert(KeyedProcessor<RiskProcessor>);

// Shard 0's client table: client_id -> highest client_seq of the journaled TRANSACTION and
// ORDER events of that client (late and invalid ones included: it is a function of the journal,
// like ingest's dedupe table, which it rebuilds after a restart). Iterates as
// (client_id, last_client_seq) pairs, in no particular order.
class ClientTable {
 public:
  struct Slot {
    using Key = uint64_t;
    uint64_t key = 0;  // client_id
    uint64_t last_client_seq = 0;
    static uint64_t hash(uint64_t k) noexcept { return state_hash(k); }
  };
  using Table = FlatTable<Slot>;

  class iterator {
   public:
    using value_type = std::pair<uint64_t, uint64_t>;
    iterator(const Table* t, size_t i) : t_(t), i_(i) { skip(); }
    value_type operator*() const { return {t_->at(i_).key, t_->at(i_).last_client_seq}; }
    iterator& operator++() {
      ++i_;
      skip();
      return *this;
    }
    bool operator==(const iterator& o) const { return i_ == o.i_; }

   private:
    void skip() {
      while (i_ < t_->index_end() && Table::is_empty_key(t_->at(i_).key)) ++i_;
    }
    const Table* t_;
    size_t i_;
  };

  explicit ClientTable(const Table& table) : table_(&table) {}
  iterator begin() const { return {table_, 0}; }
  iterator end() const { return {table_, table_->index_end()}; }
  size_t size() const { return table_->size(); }
  // 0 if the client has no journaled event.
  uint64_t last_client_seq(uint64_t client_id) const {
    const Slot* s = client_id == 0 ? nullptr : table_->find(client_id);
    return s == nullptr ? 0 : s->last_client_seq;
  }

 private:
  const Table* table_;
};

// How much state a shard holds (the snapshot header carries these).
struct ShardStateCounts {
  uint64_t accounts = 0;         // accounts with fraud history
  uint64_t history_entries = 0;  // transactions in those histories
  uint64_t positions = 0;        // non-zero (account, instrument) positions
  uint64_t rate_accounts = 0;    // accounts with accepted orders in the rate window
  uint64_t rate_entries = 0;
  uint64_t timers = 0;
  uint64_t clients = 0;
};

// One shard: the event-time clock, ownership, INVALID / LATE, the two processors, the client
// table, and the store that holds all of it. Not copyable or movable (the store's arrays are
// registered by address).
class Shard {
 public:
  Shard(const ProcessorConfig& config, uint32_t index, uint32_t count, DecisionSink& sink,
        StateStore::Options store = {});
  Shard(const Shard&) = delete;
  Shard& operator=(const Shard&) = delete;

  // One journaled event, in sequence order. Frames of unknown type are skipped (forward
  // compatibility); a frame too short for its type is skipped too (ingest never journals one).
  void on_event(int64_t seq, uint64_t client_id, uint32_t connection_id,
                std::span<const std::byte> frame);
  // Hints the cache lines on_event(frame) will touch (call a few events ahead).
  void prefetch(std::span<const std::byte> frame) const noexcept;

  // Where decisions and alerts go from now on.
  void set_sink(DecisionSink& sink) noexcept { sink_ = &sink; }

  uint32_t index() const { return index_; }
  uint32_t count() const { return count_; }
  const ProcessorConfig& config() const { return config_; }
  int64_t max_time() const { return clock_.get().max_time; }
  // The sequence of the last event handled (0 before any).
  int64_t last_sequence() const { return clock_.get().last_sequence; }
  const FraudProcessor& fraud() const { return fraud_; }
  const RiskProcessor& risk() const { return risk_; }
  ClientTable client_table() const { return ClientTable(clients_); }
  ShardStateCounts state_counts() const;
  // Sizes the processors' state for this many accounts of this shard up front, so a growing
  // set of accounts does not stall the shard with rehashes (engine.expected_accounts).
  void reserve(size_t accounts) {
    fraud_.reserve(accounts);
    risk_.reserve(accounts);
  }

  StateStore& store() { return store_; }
  StateCapture& capture() { return store_.capture(); }

  // Replaces the whole state with a snapshot image (made by capture() of a shard with the same
  // config, index and count: the caller checks the header). REQUIRES: no capture in progress.
  // On error the shard's state is unspecified: discard it.
  absl::Status restore(std::span<const std::byte> image);

 private:
  struct Clock {
    int64_t max_time = EventClock::kNone;
    int64_t last_sequence = 0;
  };

  // shard_of(account, count_) == index_; a single shard owns every account without the division.
  bool owns(uint64_t account) const noexcept {
    return count_ == 1 || shard_of(account, count_) == index_;
  }
  void advance(int64_t event_time_ns);
  void note_client(uint64_t client_id, uint64_t client_seq);
  void emit(int64_t seq, char type, uint64_t account, uint64_t client_id, uint64_t client_seq,
            uint32_t connection_id, wire::Verdict verdict, uint8_t reason, uint32_t flags,
            std::span<const AlertRecord> alerts);

  const ProcessorConfig config_;
  const uint32_t index_;
  const uint32_t count_;
  DecisionSink* sink_;
  // The store first: its capture outlives the arrays registered with it. The order of the
  // state members below is the order of regions in a snapshot.
  StateStore store_;
  ValueState<Clock> clock_;
  FraudProcessor fraud_;
  RiskProcessor risk_;
  ClientTable::Table clients_;
  // The slot of the client seen last (not state: an index into clients_, valid until it grows,
  // which only an insert of another client does, and that insert replaces the cache).
  uint64_t cached_client_ = 0;
  size_t cached_client_index_ = 0;
};

}  // namespace sluice

#endif  // SLUICE_PIPELINE_KEYED_PROCESSORS_H_
