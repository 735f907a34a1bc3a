#include "pipeline/keyed_processors.h"

#include <algorithm>
#include <cstring>
#include <limits>

#include "absl/strings/str_cat.h"

namespace sluice {
namespace {

using wire::Rule;
using wire::Verdict;

constexpr int64_t kMax = std::numeric_limits<int64_t>::max();
constexpr int64_t kMin = std::numeric_limits<int64_t>::min();

int64_t saturate(Int128 v) {
  if (v > kMax) return kMax;
  if (v < kMin) return kMin;
  return static_cast<int64_t>(v);
}

// a + b without overflow (timer times near the end of int64).
int64_t add_saturated(int64_t a, int64_t b) {
  int64_t r;
  return __builtin_add_overflow(a, b, &r) ? (b > 0 ? kMax : kMin) : r;
}

// time - window, saturating; the lower bound of a window that ends at `time`.
int64_t window_start(int64_t time, int64_t window) { return add_saturated(time, -window); }

}  // namespace

absl::Status validate(const ProcessorConfig& c) {
  auto positive = [](int64_t v, const char* key) -> absl::Status {
    if (v > 0) return absl::OkStatus();
    return absl::InvalidArgumentError(absl::StrCat(key, " must be positive, got ", v));
  };
  for (auto [v, key] : {std::pair{c.window_ns, "window_ns"},
                        {c.velocity_max, "velocity_max"},
                        {c.anomaly_multiplier_milli, "anomaly_multiplier_milli"},
                        {c.anomaly_min_history, "anomaly_min_history"},
                        {c.max_order_qty, "max_order_qty"},
                        {c.max_order_notional, "max_order_notional"},
                        {c.position_limit, "position_limit"},
                        {c.rate_limit, "rate_limit"},
                        {c.rate_window_ns, "rate_window_ns"}}) {
    if (absl::Status s = positive(v, key); !s.ok()) return s;
  }
  if (c.allowed_lateness_ns < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("allowed_lateness_ns must be >= 0, got ", c.allowed_lateness_ns));
  }
  return absl::OkStatus();
}

uint64_t config_fingerprint(const ProcessorConfig& c) {
  // Bump kLayout whenever the meaning of the state changes without a config change.
  // 2: state_hash became Fibonacci hashing (keys sit in other slots).
  // 3: tables grow incrementally (an old slot array and a growth cursor per table).
  constexpr uint64_t kLayout = 3;
  uint64_t h = 0x736c756963650001ull ^ kLayout;
  auto mix = [&h](uint64_t v) {
    h ^= v + 0x9e3779b97f4a7c15ull + (h << 6) + (h >> 2);
    h ^= h >> 31;
    h *= 0xbf58476d1ce4e5b9ull;
    h ^= h >> 29;
  };
  for (int64_t v : {c.window_ns, c.velocity_max, c.anomaly_multiplier_milli, c.anomaly_min_history,
                    c.allowed_lateness_ns, c.max_order_qty, c.max_order_notional, c.position_limit,
                    c.rate_limit, c.rate_window_ns}) {
    mix(static_cast<uint64_t>(v));
  }
  mix(uint64_t{c.fraud} | uint64_t{c.risk} << 1);
  return h;
}

// ---- fraud ------------------------------------------------------------------------------------

FraudProcessor::FraudProcessor(const ProcessorConfig& config, StateCapture& capture)
    : config_(config), history_(capture, "fraud.history"), timers_(capture, "fraud.timers") {}

void FraudProcessor::on_event(EventContext& ctx, const wire::Transaction& t) {
  // P is the history before this transaction, which joins it either way (and leaves it once no
  // future non-late event can see it): one lookup for both.
  const WindowStats stats =
      ctx.state(history_).query_then_add(window_start(t.event_time_ns, config_.window_ns),
                                         t.event_time_ns, TxEntry{t.event_time_ns, t.amount_minor});
  const int64_t p = stats.count;
  if (p + 1 > config_.velocity_max) {
    ctx.emit(Rule::kVelocityExceeded, p + 1, config_.velocity_max);
  }
  if (p >= config_.anomaly_min_history) {
    // x * |P| * 1000 > multiplier * sum(P): the left side fits 128 bits (x < 2^63, |P| < 2^40
    // entries in memory); the right side may not, and then it is the larger.
    const Int128 lhs = static_cast<Int128>(t.amount_minor) * p * 1000;
    Int128 rhs;
    const bool rhs_overflows = __builtin_mul_overflow(
        static_cast<Int128>(config_.anomaly_multiplier_milli), stats.sum, &rhs);
    if (!rhs_overflows && lhs > rhs) {
      ctx.emit(Rule::kAmountAnomaly, t.amount_minor,
               saturate(rhs / (static_cast<Int128>(p) * 1000)));
    }
  }
  ctx.emit(ctx.flags() != 0 ? Verdict::kFlag : Verdict::kAccept);
  ctx.register_cleanup_timer(add_saturated(
      add_saturated(t.event_time_ns, config_.allowed_lateness_ns), config_.window_ns));
}

void FraudProcessor::on_timer(TimerContext& ctx, uint64_t /*key*/, int64_t /*time*/) {
  // A future non-late event has t >= maxT - lateness and sees p only if p > t - window.
  const int64_t cutoff =
      window_start(window_start(ctx.watermark(), config_.allowed_lateness_ns), config_.window_ns);
  ctx.state(history_).evict(cutoff);
}

absl::Status FraudProcessor::restore(RegionReader& in) {
  if (absl::Status s = history_.restore(in); !s.ok()) return s;
  return timers_.restore(in);
}

// ---- risk -------------------------------------------------------------------------------------

RiskProcessor::RiskProcessor(const ProcessorConfig& config, StateCapture& capture)
    : config_(config),
      positions_(capture, "risk.positions"),
      accepted_(capture, "risk.accepted"),
      timers_(capture, "risk.timers") {}

void RiskProcessor::on_event(EventContext& ctx, const wire::Order& o) {
  const int64_t q = o.quantity;
  // q for a buy, -q for a sell (0 < q, so -q fits), without a branch on the side: sides are a
  // coin toss in a real order stream, and a branch on one mispredicts half the time.
  const int64_t sell = -static_cast<int64_t>(o.side != static_cast<uint8_t>(wire::Side::kBuy));
  const Int128 signed_qty = (q ^ sell) - sell;
  if (q > config_.max_order_qty) ctx.emit(Rule::kMaxOrderQty, q, config_.max_order_qty);
  const Int128 notional = static_cast<Int128>(q) * o.price;
  if (notional > config_.max_order_notional) {
    ctx.emit(Rule::kMaxOrderNotional, saturate(notional), config_.max_order_notional);
  }
  // One lookup in each table: what the rules read is what an accepted order then updates.
  auto positions = ctx.state(positions_);
  const auto position = positions.find(o.instrument_id);
  const Int128 new_pos = position.value + signed_qty;
  if ((new_pos < 0 ? -new_pos : new_pos) > config_.position_limit) {
    ctx.emit(Rule::kPositionLimit, saturate(new_pos), config_.position_limit);
  }
  auto accepted = ctx.state(accepted_);
  const auto history = accepted.find();
  const int64_t n =
      accepted.query(history, window_start(o.event_time_ns, config_.rate_window_ns),
                     o.event_time_ns)
          .count;
  if (n + 1 > config_.rate_limit) ctx.emit(Rule::kOrderRate, n + 1, config_.rate_limit);
  if (ctx.flags() != 0) {
    ctx.emit(Verdict::kReject);  // state unchanged
    return;
  }
  ctx.emit(Verdict::kAccept);
  // |new_pos| <= position_limit here, so it fits; a zero position is no entry.
  positions.put(position, static_cast<int64_t>(new_pos));
  accepted.add(history, TimeEntry{o.event_time_ns});
  ctx.register_cleanup_timer(add_saturated(
      add_saturated(o.event_time_ns, config_.allowed_lateness_ns), config_.rate_window_ns));
}

void RiskProcessor::on_timer(TimerContext& ctx, uint64_t /*key*/, int64_t /*time*/) {
  const int64_t cutoff = window_start(window_start(ctx.watermark(), config_.allowed_lateness_ns),
                                      config_.rate_window_ns);
  ctx.state(accepted_).evict(cutoff);
}

absl::Status RiskProcessor::restore(RegionReader& in) {
  if (absl::Status s = positions_.restore(in); !s.ok()) return s;
  if (absl::Status s = accepted_.restore(in); !s.ok()) return s;
  return timers_.restore(in);
}

// ---- shard ------------------------------------------------------------------------------------

Shard::Shard(const ProcessorConfig& config, uint32_t index, uint32_t count, DecisionSink& sink,
             StateStore::Options store)
    : config_(config),
      index_(index),
      count_(count),
      sink_(&sink),
      store_(store),
      clock_(store_.capture(), "shard.clock"),
      fraud_(config, store_.capture()),
      risk_(config, store_.capture()),
      clients_(store_.capture(), "shard.clients") {}

void Shard::advance(int64_t event_time_ns) {
  const int64_t max_time = clock_.get().max_time;
  if (max_time != EventClock::kNone && event_time_ns <= max_time) return;
  clock_.mut().max_time = event_time_ns;
  fraud_.timers().advance(event_time_ns, [&](uint64_t key, int64_t time) {
    TimerContext ctx(event_time_ns, key, fraud_.timers());
    fraud_.on_timer(ctx, key, time);
  });
  risk_.timers().advance(event_time_ns, [&](uint64_t key, int64_t time) {
    TimerContext ctx(event_time_ns, key, risk_.timers());
    risk_.on_timer(ctx, key, time);
  });
}

void Shard::note_client(uint64_t client_id, uint64_t client_seq) {
  if (index_ != 0 || client_id == 0) return;
  // Consecutive events mostly come from the same client: skip the probe then.
  if (client_id != cached_client_) {
    cached_client_index_ = clients_.insert(client_id).first;
    cached_client_ = client_id;
  }
  const size_t i = cached_client_index_;
  if (clients_.at(i).last_client_seq < client_seq) clients_.mut(i).last_client_seq = client_seq;
}

void Shard::emit(int64_t seq, char type, uint64_t account, uint64_t client_id, uint64_t client_seq,
                 uint32_t connection_id, Verdict verdict, uint8_t reason, uint32_t flags,
                 std::span<const AlertRecord> alerts) {
  sink_->on_decision(DecisionRecord{seq, type, account, client_id, client_seq, verdict, reason,
                                    flags, connection_id});
  for (const AlertRecord& a : alerts) sink_->on_alert(a);
}

void Shard::on_event(int64_t seq, uint64_t client_id, uint32_t connection_id,
                     std::span<const std::byte> frame) {
  clock_.mut().last_sequence = seq;
  if (frame.size() < wire::kHeaderSize) return;
  const wire::FrameHeader h = wire::decode_header(frame.data());
  const size_t need = wire::kHeaderSize + wire::min_payload(h.type);
  if (need == wire::kHeaderSize || frame.size() < need) return;  // unknown or short: skip

  const int64_t max_time = clock_.get().max_time;
  auto is_late = [&](int64_t t) {
    return max_time != EventClock::kNone && t < max_time - config_.allowed_lateness_ns;
  };

  switch (static_cast<wire::FrameType>(h.type)) {
    case wire::FrameType::kWatermark: {
      const wire::Watermark w = wire::decode_watermark(frame);
      if (wire::is_valid(w)) advance(w.event_time_ns);
      return;
    }
    case wire::FrameType::kTransaction: {
      const wire::Transaction t = wire::decode_transaction(frame);
      note_client(client_id, t.client_seq);
      const bool mine = owns(t.account_id);
      if (!wire::is_valid(t)) {  // never journaled by ingest; a hand-made journal may hold one
        if (mine)
          emit(seq, 'T', t.account_id, client_id, t.client_seq, connection_id, Verdict::kInvalid, 0,
               0, {});
        return;
      }
      if (mine) {
        if (is_late(t.event_time_ns)) {
          emit(seq, 'T', t.account_id, client_id, t.client_seq, connection_id, Verdict::kLate, 0, 0,
               {});
        } else if (config_.fraud) {
          EventContext ctx(seq, t.event_time_ns, max_time, t.account_id, fraud_.timers());
          fraud_.on_event(ctx, t);
          emit(seq, 'T', t.account_id, client_id, t.client_seq, connection_id, ctx.verdict(),
               ctx.reason(), ctx.flags(), ctx.alerts());
        } else {
          emit(seq, 'T', t.account_id, client_id, t.client_seq, connection_id, Verdict::kAccept, 0,
               0, {});
        }
      }
      advance(t.event_time_ns);
      return;
    }
    case wire::FrameType::kOrder: {
      const wire::Order o = wire::decode_order(frame);
      note_client(client_id, o.client_seq);
      const bool mine = owns(o.account_id);
      if (!wire::is_valid(o)) {
        if (mine)
          emit(seq, 'O', o.account_id, client_id, o.client_seq, connection_id, Verdict::kInvalid, 0,
               0, {});
        return;
      }
      if (mine) {
        if (is_late(o.event_time_ns)) {
          emit(seq, 'O', o.account_id, client_id, o.client_seq, connection_id, Verdict::kLate, 0, 0,
               {});
        } else if (config_.risk) {
          EventContext ctx(seq, o.event_time_ns, max_time, o.account_id, risk_.timers());
          risk_.on_event(ctx, o);
          emit(seq, 'O', o.account_id, client_id, o.client_seq, connection_id, ctx.verdict(),
               ctx.reason(), ctx.flags(), ctx.alerts());
        } else {
          emit(seq, 'O', o.account_id, client_id, o.client_seq, connection_id, Verdict::kAccept, 0,
               0, {});
        }
      }
      advance(o.event_time_ns);
      return;
    }
    default:
      return;  // HELLO, SUBSCRIBE and server frames are never journaled; skip them
  }
}

// How far behind the front of a timer FIFO to look when prefetching: about as many timers fire
// per event as events arrive, so this is roughly the event prefetch distance.
constexpr size_t kTimerPrefetchAhead = 4;

void Shard::prefetch(std::span<const std::byte> frame) const noexcept {
  // The timers about to fire evict accounts of their own, whatever this event is: their slots
  // are the other likely misses. Both queues advance on every event that moves the clock.
  if (const uint64_t k = fraud_.timers().fifo_key_ahead(kTimerPrefetchAhead); k != 0) {
    __builtin_prefetch(fraud_.history().table().home_slot(k));
  }
  if (const uint64_t k = risk_.timers().fifo_key_ahead(kTimerPrefetchAhead); k != 0) {
    __builtin_prefetch(risk_.accepted().table().home_slot(k));
  }
  if (frame.size() < wire::kHeaderSize + wire::kTransactionPayload) return;
  const uint8_t type = wire::load<uint8_t>(frame.data() + 2);
  // account_id sits at payload offset 16 in both TRANSACTION and ORDER.
  const uint64_t account = wire::load<uint64_t>(frame.data() + wire::kHeaderSize + 16);
  if (account == 0 || !owns(account)) return;
  if (type == static_cast<uint8_t>(wire::FrameType::kTransaction)) {
    __builtin_prefetch(fraud_.history().table().home_slot(account));
  } else if (type == static_cast<uint8_t>(wire::FrameType::kOrder) &&
             frame.size() >= wire::kHeaderSize + wire::kOrderPayload) {
    const uint32_t instrument = wire::load<uint32_t>(frame.data() + wire::kHeaderSize + 32);
    __builtin_prefetch(risk_.positions().home_slot(account, instrument));
    __builtin_prefetch(risk_.accepted().table().home_slot(account));
  }
}

ShardStateCounts Shard::state_counts() const {
  return ShardStateCounts{
      .accounts = fraud_.history().keys(),
      .history_entries = fraud_.history().entries(),
      .positions = risk_.position_keys(),
      .rate_accounts = risk_.accepted().keys(),
      .rate_entries = risk_.accepted().entries(),
      .timers = fraud_.timers().size() + risk_.timers().size(),
      .clients = clients_.size(),
  };
}

absl::Status Shard::restore(std::span<const std::byte> image) {
  cached_client_ = 0;
  StateCapture& capture = store_.capture();
  if (capture.active()) return absl::FailedPreconditionError("a snapshot is being captured");
  auto regions = capture.parse_directory(image);
  if (!regions.ok()) return regions.status();
  RegionReader in(image, *std::move(regions));
  if (absl::Status s = clock_.restore(in); !s.ok()) return s;
  if (absl::Status s = fraud_.restore(in); !s.ok()) return s;
  if (absl::Status s = risk_.restore(in); !s.ok()) return s;
  if (absl::Status s = clients_.restore(in); !s.ok()) return s;
  if (!in.done()) return absl::DataLossError("image has regions this shard does not know");
  return absl::OkStatus();
}

}  // namespace sluice
