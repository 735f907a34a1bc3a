#include "pipeline/keyed_processors.h"

#include <algorithm>
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
  for (auto [v, key] : {std::pair{c.window_ns, "window_ns"}, {c.velocity_max, "velocity_max"},
                        {c.anomaly_multiplier_milli, "anomaly_multiplier_milli"},
                        {c.anomaly_min_history, "anomaly_min_history"},
                        {c.max_order_qty, "max_order_qty"},
                        {c.max_order_notional, "max_order_notional"},
                        {c.position_limit, "position_limit"}, {c.rate_limit, "rate_limit"},
                        {c.rate_window_ns, "rate_window_ns"}}) {
    if (absl::Status s = positive(v, key); !s.ok()) return s;
  }
  if (c.allowed_lateness_ns < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("allowed_lateness_ns must be >= 0, got ", c.allowed_lateness_ns));
  }
  return absl::OkStatus();
}

void Evaluation::fire(Rule rule, int64_t seq, int64_t event_time_ns, uint64_t account_id,
                      int64_t value, int64_t threshold) {
  const auto code = static_cast<uint16_t>(rule);
  flags |= 1u << (code - 1);
  if (reason == 0 || code < reason) reason = static_cast<uint8_t>(code);
  alerts.push_back(AlertRecord{seq, event_time_ns, account_id, rule, value, threshold});
}

WindowedHistory::Stats WindowedHistory::query(uint64_t key, int64_t lo, int64_t hi) const {
  Stats stats;
  auto it = entries_.find(key);
  if (it == entries_.end()) return stats;
  const auto& v = it->second;
  // Sorted by time: the window is one contiguous run.
  auto first = std::upper_bound(v.begin(), v.end(), lo,
                                [](int64_t t, const Entry& e) { return t < e.time; });
  for (auto e = first; e != v.end() && e->time <= hi; ++e) {
    ++stats.count;
    stats.sum += e->amount;
  }
  return stats;
}

void WindowedHistory::add(uint64_t key, int64_t time, int64_t amount) {
  auto& v = entries_[key];
  // After the last entry with time <= this one: equal times keep journal order.
  auto at = std::upper_bound(v.begin(), v.end(), time,
                             [](int64_t t, const Entry& e) { return t < e.time; });
  v.insert(at, Entry{time, amount});
  ++total_;
}

void WindowedHistory::evict(uint64_t key, int64_t cutoff) {
  auto it = entries_.find(key);
  if (it == entries_.end()) return;
  auto& v = it->second;
  auto end = std::upper_bound(v.begin(), v.end(), cutoff,
                              [](int64_t t, const Entry& e) { return t < e.time; });
  total_ -= static_cast<size_t>(end - v.begin());
  v.erase(v.begin(), end);
  if (v.empty()) entries_.erase(it);
}

Evaluation FraudProcessor::on_transaction(int64_t seq, const wire::Transaction& t) {
  Evaluation ev;
  const auto stats = history_.query(t.account_id, window_start(t.event_time_ns, config_.window_ns),
                                    t.event_time_ns);
  const int64_t p = stats.count;
  if (p + 1 > config_.velocity_max) {
    ev.fire(Rule::kVelocityExceeded, seq, t.event_time_ns, t.account_id, p + 1,
            config_.velocity_max);
  }
  if (p >= config_.anomaly_min_history) {
    // x * |P| * 1000 > multiplier * sum(P): the left side fits 128 bits (< 2^63 * 2^63 / 2^53
    // ... p < 2^53 entries in memory); the right side may not, and then it is the larger.
    const Int128 lhs = static_cast<Int128>(t.amount_minor) * p * 1000;
    Int128 rhs;
    const bool rhs_overflows =
        __builtin_mul_overflow(static_cast<Int128>(config_.anomaly_multiplier_milli), stats.sum,
                               &rhs);
    if (!rhs_overflows && lhs > rhs) {
      ev.fire(Rule::kAmountAnomaly, seq, t.event_time_ns, t.account_id, t.amount_minor,
              saturate(rhs / (static_cast<Int128>(p) * 1000)));
    }
  }
  ev.verdict = ev.flags != 0 ? wire::Verdict::kFlag : wire::Verdict::kAccept;
  // It joins the history either way, and leaves it once no future non-late event can see it.
  history_.add(t.account_id, t.event_time_ns, t.amount_minor);
  timers_.add(add_saturated(add_saturated(t.event_time_ns, config_.allowed_lateness_ns),
                            config_.window_ns),
              t.account_id);
  return ev;
}

void FraudProcessor::on_watermark(int64_t max_time) {
  // A future non-late event has t >= maxT - lateness and sees p only if p > t - window.
  const int64_t cutoff =
      window_start(window_start(max_time, config_.allowed_lateness_ns), config_.window_ns);
  timers_.advance(max_time, [&](uint64_t account, int64_t) { history_.evict(account, cutoff); });
}

Evaluation RiskProcessor::on_order(int64_t seq, const wire::Order& o) {
  Evaluation ev;
  const int64_t q = o.quantity;
  const Int128 signed_qty = o.side == static_cast<uint8_t>(wire::Side::kBuy) ? q : -Int128{q};
  if (q > config_.max_order_qty) {
    ev.fire(Rule::kMaxOrderQty, seq, o.event_time_ns, o.account_id, q, config_.max_order_qty);
  }
  const Int128 notional = static_cast<Int128>(q) * o.price;
  if (notional > config_.max_order_notional) {
    ev.fire(Rule::kMaxOrderNotional, seq, o.event_time_ns, o.account_id, saturate(notional),
            config_.max_order_notional);
  }
  const auto key = std::pair{o.account_id, o.instrument_id};
  auto pos_it = positions_.find(key);
  const int64_t pos = pos_it == positions_.end() ? 0 : pos_it->second;
  const Int128 new_pos = pos + signed_qty;
  if ((new_pos < 0 ? -new_pos : new_pos) > config_.position_limit) {
    ev.fire(Rule::kPositionLimit, seq, o.event_time_ns, o.account_id, saturate(new_pos),
            config_.position_limit);
  }
  const int64_t n = accepted_.query(o.account_id, window_start(o.event_time_ns, config_.rate_window_ns),
                                    o.event_time_ns).count;
  if (n + 1 > config_.rate_limit) {
    ev.fire(Rule::kOrderRate, seq, o.event_time_ns, o.account_id, n + 1, config_.rate_limit);
  }
  if (ev.flags != 0) {
    ev.verdict = wire::Verdict::kReject;  // state unchanged
    return ev;
  }
  ev.verdict = wire::Verdict::kAccept;
  // |new_pos| <= position_limit here, so it fits.
  if (new_pos == 0) {
    if (pos_it != positions_.end()) positions_.erase(pos_it);
  } else {
    positions_[key] = static_cast<int64_t>(new_pos);
  }
  accepted_.add(o.account_id, o.event_time_ns, 0);
  timers_.add(add_saturated(add_saturated(o.event_time_ns, config_.allowed_lateness_ns),
                            config_.rate_window_ns),
              o.account_id);
  return ev;
}

void RiskProcessor::on_watermark(int64_t max_time) {
  const int64_t cutoff =
      window_start(window_start(max_time, config_.allowed_lateness_ns), config_.rate_window_ns);
  timers_.advance(max_time, [&](uint64_t account, int64_t) { accepted_.evict(account, cutoff); });
}

int64_t RiskProcessor::position(uint64_t account_id, uint32_t instrument_id) const {
  auto it = positions_.find(std::pair{account_id, instrument_id});
  return it == positions_.end() ? 0 : it->second;
}

Shard::Shard(const ProcessorConfig& config, uint32_t index, uint32_t count, DecisionSink& sink)
    : config_(config),
      index_(index),
      count_(count),
      sink_(sink),
      fraud_(config),
      risk_(config) {}

void Shard::advance(int64_t event_time_ns) {
  if (!clock_.observe(event_time_ns)) return;
  fraud_.on_watermark(clock_.max_time());
  risk_.on_watermark(clock_.max_time());
}

void Shard::on_event(int64_t seq, uint64_t client_id, uint32_t connection_id,
                     std::span<const std::byte> frame) {
  if (frame.size() < wire::kHeaderSize) return;
  const wire::FrameHeader h = wire::decode_header(frame.data());
  const size_t need = wire::kHeaderSize + wire::min_payload(h.type);
  if (need == wire::kHeaderSize || frame.size() < need) return;  // unknown or short: skip

  auto emit = [&](char type, uint64_t account, uint64_t client_seq, const Evaluation& ev) {
    sink_.on_decision(DecisionRecord{seq, type, account, client_id, client_seq, ev.verdict,
                                     ev.reason, ev.flags, connection_id});
    for (const AlertRecord& a : ev.alerts) sink_.on_alert(a);
  };
  auto simple = [](Verdict v) {
    Evaluation ev;
    ev.verdict = v;
    return ev;
  };

  switch (static_cast<wire::FrameType>(h.type)) {
    case wire::FrameType::kWatermark: {
      const wire::Watermark w = wire::decode_watermark(frame);
      if (wire::is_valid(w)) advance(w.event_time_ns);
      return;
    }
    case wire::FrameType::kTransaction: {
      const wire::Transaction t = wire::decode_transaction(frame);
      const bool mine = shard_of(t.account_id, count_) == index_;
      if (!wire::is_valid(t)) {  // never journaled by ingest; a hand-made journal may hold one
        if (mine) emit('T', t.account_id, t.client_seq, simple(Verdict::kInvalid));
        return;
      }
      if (mine) {
        if (clock_.is_late(t.event_time_ns, config_.allowed_lateness_ns)) {
          emit('T', t.account_id, t.client_seq, simple(Verdict::kLate));
        } else if (config_.fraud) {
          emit('T', t.account_id, t.client_seq, fraud_.on_transaction(seq, t));
        } else {
          emit('T', t.account_id, t.client_seq, simple(Verdict::kAccept));
        }
      }
      advance(t.event_time_ns);
      return;
    }
    case wire::FrameType::kOrder: {
      const wire::Order o = wire::decode_order(frame);
      const bool mine = shard_of(o.account_id, count_) == index_;
      if (!wire::is_valid(o)) {
        if (mine) emit('O', o.account_id, o.client_seq, simple(Verdict::kInvalid));
        return;
      }
      if (mine) {
        if (clock_.is_late(o.event_time_ns, config_.allowed_lateness_ns)) {
          emit('O', o.account_id, o.client_seq, simple(Verdict::kLate));
        } else if (config_.risk) {
          emit('O', o.account_id, o.client_seq, risk_.on_order(seq, o));
        } else {
          emit('O', o.account_id, o.client_seq, simple(Verdict::kAccept));
        }
      }
      advance(o.event_time_ns);
      return;
    }
    default:
      return;  // HELLO, SUBSCRIBE and server frames are never journaled; skip them
  }
}

}  // namespace sluice
