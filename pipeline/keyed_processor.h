// The keyed processor API, in the spirit of Flink's KeyedProcessFunction.
//
// A keyed processor is a class with
//
//   void on_event(EventContext& ctx, const Event& event);   // an event of a key its shard owns
//   void on_timer(TimerContext& ctx, uint64_t key, int64_t time);  // the watermark passed `time`
//
// The context gives the journal sequence, the event time, the watermark (maxT: the largest event
// time of the journal before this event), the keyed state of the current key (ctx.state(s) for a
// state object the processor declared on its shard's StateStore), event-time timers for the
// current key, and emit(decision) / emit(alert). Everything a processor does must be a pure
// function of the journal (sequence order, event times, payloads): no wall clock, no randomness,
// no dependence on the shard count. That is what lets a replay reproduce every decision bit for
// bit and a snapshot be restored into any later run.
//
// Processors are called directly (not through virtual functions): the Shard knows its
// processors' types, and the KeyedProcessor concept below states what it relies on.
//
// Thread safety: contexts live for one call on the shard's thread.
#ifndef SLUICE_PIPELINE_KEYED_PROCESSOR_H_
#define SLUICE_PIPELINE_KEYED_PROCESSOR_H_

#include <concepts>
#include <cstddef>
#include <cstdint>
#include <new>
#include <span>
#include <type_traits>

#include "core/wire_format.h"
#include "pipeline/processor.h"
#include "pipeline/state_store.h"

namespace sluice {

// An event answers with one decision and at most this many alerts (ORDER has four rules).
inline constexpr size_t kMaxAlertsPerEvent = 4;
// A shard's output per event, at most: what an output ring must have room for.
inline constexpr size_t kMaxOutputsPerEvent = 1 + kMaxAlertsPerEvent;

// The current key's view of a state object.
template <typename Entry, size_t kInline>
class KeyedHistory {
 public:
  KeyedHistory(HistoryState<Entry, kInline>& state, uint64_t key) : state_(state), key_(key) {}
  WindowStats query(int64_t lo, int64_t hi) const { return state_.query(key_, lo, hi); }
  std::span<const Entry> entries() const { return state_.get(key_); }
  void add(const Entry& e) { state_.add(key_, e); }
  // query(lo, hi), then add(e), with one lookup.
  WindowStats query_then_add(int64_t lo, int64_t hi, const Entry& e) {
    return state_.query_then_add(key_, lo, hi, e);
  }
  void evict(int64_t cutoff) { state_.evict(key_, cutoff); }
  // The key's slot, for a query() and an add() with no other change in between (one lookup).
  using Found = typename HistoryState<Entry, kInline>::Found;
  Found find() const { return state_.find(key_); }
  WindowStats query(const Found& f, int64_t lo, int64_t hi) const {
    return state_.query(f, lo, hi);
  }
  void add(const Found& f, const Entry& e) { state_.add(f, e); }

 private:
  HistoryState<Entry, kInline>& state_;
  const uint64_t key_;
};

template <typename Value>
class KeyedMap {
 public:
  KeyedMap(MapState<Value>& state, uint64_t key) : state_(state), key_(key) {}
  Value get(uint32_t user_key) const { return state_.get(key_, user_key); }
  void put(uint32_t user_key, const Value& v) { state_.put(key_, user_key, v); }
  // get() and the slot it found, for a put() with no other change to the map in between.
  using Found = typename MapState<Value>::Found;
  Found find(uint32_t user_key) const { return state_.find(key_, user_key); }
  void put(const Found& f, const Value& v) { state_.put(f, v); }

 private:
  MapState<Value>& state_;
  const uint64_t key_;
};

// What on_timer sees.
class TimerContext {
 public:
  TimerContext(int64_t watermark, uint64_t key, TimerQueue& timers)
      : watermark_(watermark), key_(key), timers_(timers) {}

  int64_t watermark() const noexcept { return watermark_; }
  uint64_t key() const noexcept { return key_; }
  void register_timer(int64_t time) { timers_.add(time, key_); }
  void register_cleanup_timer(int64_t time) { timers_.add_cleanup(time, key_); }

  template <typename Entry, size_t kInline>
  KeyedHistory<Entry, kInline> state(HistoryState<Entry, kInline>& s) const {
    return {s, key_};
  }
  template <typename Value>
  KeyedMap<Value> state(MapState<Value>& s) const {
    return {s, key_};
  }

 private:
  const int64_t watermark_;
  const uint64_t key_;
  TimerQueue& timers_;
};

// What on_event sees, and what it emitted (the Shard sends the decision, then the alerts).
class EventContext {
 public:
  EventContext(int64_t sequence, int64_t event_time, int64_t watermark, uint64_t key,
               TimerQueue& timers)
      : sequence_(sequence),
        event_time_(event_time),
        watermark_(watermark),
        key_(key),
        timers_(timers) {}
  EventContext(const EventContext&) = delete;
  EventContext& operator=(const EventContext&) = delete;

  int64_t sequence() const noexcept { return sequence_; }
  int64_t event_time() const noexcept { return event_time_; }
  // maxT before this event; EventClock::kNone when no event came before.
  int64_t watermark() const noexcept { return watermark_; }
  uint64_t key() const noexcept { return key_; }

  // An event-time timer for the current key: on_timer(ctx, key, time) once maxT >= time.
  void register_timer(int64_t time) { timers_.add(time, key_); }
  // A cleanup timer for the current key: on_timer once maxT >= time, or later, with the
  // timers registered before it (TimerQueue::add_cleanup). Cheaper than register_timer when
  // events arrive out of order; for state expiry, whose moment changes no answer.
  void register_cleanup_timer(int64_t time) { timers_.add_cleanup(time, key_); }

  template <typename Entry, size_t kInline>
  KeyedHistory<Entry, kInline> state(HistoryState<Entry, kInline>& s) const {
    return {s, key_};
  }
  template <typename Value>
  KeyedMap<Value> state(MapState<Value>& s) const {
    return {s, key_};
  }

  // An alert for `rule` about this event (its sequence, event time and key); sets the rule's
  // bit in the decision's flags and lowers its reason to the lowest rule that fired.
  // REQUIRES: at most kMaxAlertsPerEvent per event.
  void emit(wire::Rule rule, int64_t value, int64_t threshold) noexcept {
    const auto code = static_cast<uint16_t>(rule);
    flags_ |= 1u << (code - 1);
    if (reason_ == 0 || code < reason_) reason_ = static_cast<uint8_t>(code);
    ::new (&alerts_[alert_count_++ * sizeof(AlertRecord)])
        AlertRecord{sequence_, event_time_, key_, rule, value, threshold};
  }
  // The event's decision; reason and flags are those of the alerts emitted.
  void emit(wire::Verdict verdict) noexcept {
    verdict_ = verdict;
    decided_ = true;
  }

  bool decided() const noexcept { return decided_; }
  wire::Verdict verdict() const noexcept { return verdict_; }
  uint8_t reason() const noexcept { return reason_; }
  uint32_t flags() const noexcept { return flags_; }
  std::span<const AlertRecord> alerts() const noexcept {
    return {std::launder(reinterpret_cast<const AlertRecord*>(alerts_)), alert_count_};
  }

 private:
  const int64_t sequence_;
  const int64_t event_time_;
  const int64_t watermark_;
  const uint64_t key_;
  TimerQueue& timers_;
  wire::Verdict verdict_ = wire::Verdict::kAccept;
  bool decided_ = false;
  uint8_t reason_ = 0;
  uint32_t flags_ = 0;
  size_t alert_count_ = 0;
  // Raw storage, constructed as alerts are emitted: a context is made per event, and most
  // events emit none.
  static_assert(std::is_trivially_destructible_v<AlertRecord>);
  alignas(AlertRecord) std::byte alerts_[sizeof(AlertRecord) * kMaxAlertsPerEvent];
};

template <typename P>
concept KeyedProcessor = requires(P p, EventContext& ectx, TimerContext& tctx,
                                  const typename P::Event& event, uint64_t key, int64_t time) {
  { p.on_event(ectx, event) } -> std::same_as<void>;
  { p.on_timer(tctx, key, time) } -> std::same_as<void>;
};

}  // namespace sluice

#endif  // SLUICE_PIPELINE_KEYED_PROCESSOR_H_
