// A brute-force reference model of SPEC section 2, written from the SPEC's text, against the real
// shards on long random journals, for 1, 2, 3 and 4 shards.
//
// The model keeps the whole journal and answers each event by scanning what came before it: P
// is every earlier non-late transaction of the account inside the window, n every earlier
// accepted order of the account inside the rate window, pos(a, i) the sum of every earlier
// accepted order of (a, i). Nothing is evicted, nothing is incremental except maxT (a running
// maximum, the same as scanning), and all arithmetic is exact 128-bit. It shares no code with
// pipeline/keyed_processors.cc.
#include <algorithm>
#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <limits>
#include <map>
#include <memory>
#include <random>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "core/wire_format.h"
#include "gtest/gtest.h"
#include "pipeline/keyed_processors.h"
#include "pipeline/processor.h"
#include "tests/test_util.h"

namespace sluice {
namespace {

__extension__ typedef __int128 I128;

using wire::Rule;
using wire::Verdict;

constexpr int64_t kI64Max = std::numeric_limits<int64_t>::max();
constexpr int64_t kI64Min = std::numeric_limits<int64_t>::min();

int64_t sat64(I128 v) {
  if (v > kI64Max) return kI64Max;
  if (v < kI64Min) return kI64Min;
  return static_cast<int64_t>(v);
}

// ---------------------------------------------------------------------------------------------
// The journal.

struct Event {
  enum class Kind : uint8_t { kTransaction, kOrder, kWatermark };
  Kind kind = Kind::kTransaction;
  uint64_t client_id = 0;
  uint32_t connection_id = 0;
  wire::Transaction tx;
  wire::Order order;
  wire::Watermark wm;
};

std::vector<std::byte> encode(const Event& e) {
  std::vector<std::byte> f(wire::kMaxFrameSize);
  switch (e.kind) {
    case Event::Kind::kTransaction:
      f.resize(wire::encode(e.tx, f));
      break;
    case Event::Kind::kOrder:
      f.resize(wire::encode(e.order, f));
      break;
    case Event::Kind::kWatermark:
      f.resize(wire::encode(e.wm, f));
      break;
  }
  return f;
}

// ---------------------------------------------------------------------------------------------
// The model.

struct ModelResult {
  std::vector<DecisionRecord> decisions;               // in seq order
  std::map<int64_t, std::vector<AlertRecord>> alerts;  // by seq, in emission order
  bool has_max_t = false;
  int64_t max_t = 0;
  std::map<Verdict, int64_t> verdicts;
  std::map<Rule, int64_t> rules;
  std::map<std::pair<uint64_t, uint32_t>, I128> positions;  // accepted orders' sums
  int64_t visible_history = 0;  // non-late transactions a future non-late event can still see
  int64_t visible_accepted = 0;
  // The most a shard may still hold: cleanup timers fire at most one lateness late, so also
  // what a non-late event one lateness earlier could have seen.
  int64_t held_history_bound = 0;
  int64_t held_accepted_bound = 0;
};

ModelResult run_model(const ProcessorConfig& c, const std::vector<Event>& journal) {
  ModelResult r;
  // What the model remembers of each earlier event: the whole journal, answered.
  struct Answered {
    Event::Kind kind;
    bool valid = false;
    bool late = false;
    bool accepted = false;  // an ORDER that was answered ACCEPT
    int64_t time = 0;
  };
  std::vector<Answered> past;
  past.reserve(journal.size());
  // Indexes into `past` by account, only to avoid scanning other accounts' events: the scans
  // below still look at every earlier event of the account.
  std::map<uint64_t, std::vector<size_t>> tx_of, orders_of;

  for (size_t i = 0; i < journal.size(); ++i) {
    const Event& e = journal[i];
    const auto seq = static_cast<int64_t>(i + 1);
    Answered me{e.kind};
    if (e.kind == Event::Kind::kWatermark) {
      me.valid = e.wm.event_time_ns >= 0;
      me.time = e.wm.event_time_ns;
    } else {
      const bool is_tx = e.kind == Event::Kind::kTransaction;
      const uint64_t account = is_tx ? e.tx.account_id : e.order.account_id;
      const int64_t t = is_tx ? e.tx.event_time_ns : e.order.event_time_ns;
      me.time = t;
      if (is_tx) {
        me.valid = account != 0 && e.tx.amount_minor > 0 && t >= 0;
      } else {
        me.valid = account != 0 && (e.order.side == 1 || e.order.side == 2) &&
                   e.order.quantity > 0 && e.order.price > 0 && t >= 0;
      }
      DecisionRecord d;
      d.seq = seq;
      d.type = is_tx ? 'T' : 'O';
      d.account_id = account;
      d.client_id = e.client_id;
      d.client_seq = is_tx ? e.tx.client_seq : e.order.client_seq;
      d.connection_id = e.connection_id;
      std::vector<AlertRecord> alerts;
      auto fire = [&](Rule rule, I128 value, I128 threshold) {
        d.flags |= 1u << (static_cast<int>(rule) - 1);
        if (d.reason == 0) d.reason = static_cast<uint8_t>(rule);  // fired in code order
        alerts.push_back(AlertRecord{seq, t, account, rule, sat64(value), sat64(threshold)});
      };
      if (!me.valid) {
        d.verdict = Verdict::kInvalid;
      } else if (r.has_max_t && I128{t} < I128{r.max_t} - c.allowed_lateness_ns) {
        d.verdict = Verdict::kLate;
        me.late = true;
      } else if (is_tx) {
        const I128 x = e.tx.amount_minor;
        int64_t count = 0;
        I128 sum = 0;
        for (size_t j : tx_of[account]) {
          const I128 pt = past[j].time;
          if (I128{t} - c.window_ns < pt && pt <= t) {
            ++count;
            sum += journal[j].tx.amount_minor;
          }
        }
        if (count + 1 > c.velocity_max) fire(Rule::kVelocityExceeded, count + 1, c.velocity_max);
        if (count >= c.anomaly_min_history) {
          // x * |P| * 1000 > mult * sum, exactly: lhs fits 128 bits (x < 2^63, |P| < 2^40);
          // mult * sum might not, so compare sum <= floor((lhs - 1) / mult) instead (mult > 0).
          const I128 lhs = x * count * 1000;
          if (sum <= (lhs - 1) / c.anomaly_multiplier_milli) {
            const I128 rhs = I128{c.anomaly_multiplier_milli} * sum;  // < lhs: fits
            fire(Rule::kAmountAnomaly, x, rhs / (I128{count} * 1000));
          }
        }
        d.verdict = d.flags != 0 ? Verdict::kFlag : Verdict::kAccept;
        tx_of[account].push_back(i);  // joins the history either way
      } else {
        const wire::Order& o = e.order;
        const I128 q = o.quantity;
        const I128 s = o.side == 1 ? q : -q;
        I128 pos = 0;
        int64_t n = 0;
        for (size_t j : orders_of[account]) {
          if (!past[j].accepted) continue;
          const wire::Order& p = journal[j].order;
          if (p.instrument_id == o.instrument_id) {
            pos += p.side == 1 ? I128{p.quantity} : -I128{p.quantity};
          }
          const I128 pt = past[j].time;
          if (I128{t} - c.rate_window_ns < pt && pt <= t) ++n;
        }
        if (q > c.max_order_qty) fire(Rule::kMaxOrderQty, q, c.max_order_qty);
        if (q * o.price > c.max_order_notional) {
          fire(Rule::kMaxOrderNotional, q * o.price, c.max_order_notional);
        }
        const I128 after = pos + s;
        if ((after < 0 ? -after : after) > c.position_limit) {
          fire(Rule::kPositionLimit, after, c.position_limit);
        }
        if (n + 1 > c.rate_limit) fire(Rule::kOrderRate, n + 1, c.rate_limit);
        if (d.flags != 0) {
          d.verdict = Verdict::kReject;
        } else {
          d.verdict = Verdict::kAccept;
          me.accepted = true;
          r.positions[{account, o.instrument_id}] = after;
        }
        orders_of[account].push_back(i);
      }
      ++r.verdicts[d.verdict];
      for (const AlertRecord& a : alerts) ++r.rules[a.rule];
      if (!alerts.empty()) r.alerts[seq] = std::move(alerts);
      r.decisions.push_back(d);
    }
    // maxT: the largest event time of all valid TRANSACTION, ORDER and WATERMARK events so far.
    if (me.valid && (!r.has_max_t || me.time > r.max_t)) {
      r.has_max_t = true;
      r.max_t = me.time;
    }
    past.push_back(me);
  }

  // What a future non-late event (time >= maxT - lateness) can still see.
  if (r.has_max_t) {
    const I128 earliest = I128{r.max_t} - c.allowed_lateness_ns;
    const I128 held = earliest - c.allowed_lateness_ns;
    for (const auto& [account, idx] : tx_of) {
      for (size_t j : idx) {
        r.visible_history += past[j].time > earliest - c.window_ns;
        r.held_history_bound += past[j].time > held - c.window_ns;
      }
    }
    for (const auto& [account, idx] : orders_of) {
      for (size_t j : idx) {
        r.visible_accepted += past[j].accepted && past[j].time > earliest - c.rate_window_ns;
        r.held_accepted_bound += past[j].accepted && past[j].time > held - c.rate_window_ns;
      }
    }
  }
  return r;
}

// ---------------------------------------------------------------------------------------------
// The generator: phases of different shapes so every rule and edge comes up often.

class Generator {
 public:
  Generator(const ProcessorConfig& c, uint64_t seed, int64_t start_time)
      : c_(c), rng_(seed), now_(start_time) {}

  std::vector<Event> generate(int64_t count) {
    std::vector<Event> out;
    out.reserve(static_cast<size_t>(count));
    while (static_cast<int64_t>(out.size()) < count) {
      new_phase();
      const int64_t len = between(200, 3'000);
      for (int64_t k = 0; k < len && static_cast<int64_t>(out.size()) < count; ++k) {
        out.push_back(next());
      }
    }
    return out;
  }

 private:
  enum class Shape {
    kRateBurst,
    kVelocity,
    kSparse,
    kManyAccounts,
    kPositionDrift,
    kHuge,
    kFrozen
  };

  // Uniform in [lo, hi] (hi >= lo), exact over the whole int64 range.
  int64_t between(int64_t lo, int64_t hi) {
    const auto span = static_cast<uint64_t>(hi) - static_cast<uint64_t>(lo);
    const uint64_t r = span == std::numeric_limits<uint64_t>::max() ? rng_() : rng_() % (span + 1);
    return static_cast<int64_t>(static_cast<uint64_t>(lo) + r);
  }
  bool chance(int per_mille) { return between(0, 999) < per_mille; }
  static int64_t clamp(I128 v) { return v < 0 ? 0 : sat64(v); }
  static int64_t at_least1(I128 v) { return v < 1 ? 1 : sat64(v); }

  void new_phase() {
    shape_ = static_cast<Shape>(between(0, 6));
    accounts_.clear();
    if (shape_ == Shape::kManyAccounts) {
      for (int i = 0; i < 2'000; ++i)
        accounts_.push_back(static_cast<uint64_t>(between(1, 1'000'000)));
    } else {
      const int64_t k = between(1, 4);
      for (int64_t i = 0; i < k; ++i) accounts_.push_back(static_cast<uint64_t>(between(1, 6)));
    }
    const int64_t w = c_.window_ns, rw = c_.rate_window_ns;
    switch (shape_) {
      case Shape::kRateBurst:
        step_max_ = std::max<int64_t>(0, rw / (10 * c_.rate_limit));
        break;
      case Shape::kVelocity:
        step_max_ = std::max<int64_t>(1, w / (2 * c_.velocity_max));
        break;
      case Shape::kSparse:
        step_max_ = w;
        break;
      case Shape::kManyAccounts:
        step_max_ = std::max<int64_t>(1, w / 50);
        break;
      case Shape::kPositionDrift:
        step_max_ = std::max<int64_t>(1, w / 10);
        break;
      case Shape::kHuge:
        step_max_ = std::max<int64_t>(1, w / 5);
        break;
      case Shape::kFrozen:
        step_max_ = 1;
        break;
    }
    tx_per_mille_ = shape_ == Shape::kRateBurst || shape_ == Shape::kPositionDrift ? 150
                    : shape_ == Shape::kVelocity                                   ? 800
                                                                                   : 480;
    buy_per_mille_ = shape_ == Shape::kPositionDrift ? (chance(500) ? 900 : 100) : 500;
  }

  int64_t pick_time(uint64_t account) {
    const int64_t l = c_.allowed_lateness_ns;
    const int64_t u = between(0, 99);
    if (u < 68) return now_;
    if (u < 83) return clamp(I128{now_} - between(0, l));          // out of order, likely not late
    if (u < 87) return clamp(I128{max_} - l);                      // exactly the lateness edge
    if (u < 90) return clamp(I128{max_} - l - 1 - between(0, l));  // late (mostly)
    if (u < 97) {
      // Window edges against an earlier event of the same account: t - w (out), t - w + 1 (in),
      // t - w - 1 (out), or equal to the account's latest time (in), where w is the window or
      // the rate window. Only times up to now, so max_ is not pushed ahead.
      const auto it = times_.find(account);
      if (it == times_.end()) return now_;
      const std::vector<int64_t>& v = it->second;
      const int64_t edge = between(-1, 2);
      if (edge == 2) return v.back();
      const int64_t w = chance(500) ? c_.window_ns : c_.rate_window_ns;
      for (size_t j = v.size(), seen = 0; j-- > 0 && seen < 4'096; ++seen) {
        const I128 t = I128{v[j]} + w + edge;
        if (t <= now_) return clamp(t);
      }
      return now_;
    }
    return clamp(I128{now_} + between(0, l / 2 + 1));  // a little ahead
  }

  Event next() {
    now_ = clamp(I128{now_} + between(0, step_max_));
    if (chance(2))
      now_ = clamp(I128{now_} + between(c_.window_ns, 5 * (c_.window_ns + c_.allowed_lateness_ns)));
    Event e;
    e.client_id = static_cast<uint64_t>(between(1, 4));
    e.connection_id = static_cast<uint32_t>(between(0, 7));
    const uint64_t account =
        accounts_[static_cast<size_t>(between(0, static_cast<int64_t>(accounts_.size()) - 1))];
    const bool huge = shape_ == Shape::kHuge ? chance(300) : chance(3);
    ++client_seq_;
    const int64_t r = between(0, 999);
    if (r < 70) {
      e.kind = Event::Kind::kWatermark;
      int64_t t = clamp(I128{now_} + between(0, c_.allowed_lateness_ns));
      if (chance(30)) {
        // Far ahead: everything visible expires, and the events that follow are late for a
        // while (up to ~100 events) until time catches up.
        t = clamp(I128{now_} +
                  between(c_.allowed_lateness_ns, 3 * (c_.window_ns + c_.allowed_lateness_ns)));
        now_ = std::max(now_,
                        clamp(I128{t} - c_.allowed_lateness_ns - between(0, 100 * step_max_ / 2)));
      }
      if (chance(5)) t = -between(1, 1'000);  // invalid: no effect
      e.wm.event_time_ns = t;
      note(0, t);
      return e;
    }
    const int64_t t = pick_time(account);
    if (r < 70 + tx_per_mille_) {
      e.kind = Event::Kind::kTransaction;
      const int64_t base = 100 + static_cast<int64_t>(account % 7) * 50;
      int64_t amount = between(base / 2, base * 2);
      if (chance(40)) amount *= between(3, 20);
      if (chance(20)) amount = 1;
      if (huge) amount = between(kI64Max / 4, kI64Max);
      e.tx = wire::Transaction{.client_seq = client_seq_,
                               .event_time_ns = t,
                               .account_id = account,
                               .amount_minor = amount,
                               .merchant_id = 3,
                               .currency = 840,
                               .channel = 1};
      if (chance(5)) {
        switch (between(0, 2)) {
          case 0:
            e.tx.account_id = 0;
            break;
          case 1:
            e.tx.amount_minor = -between(0, 5);
            break;
          default:
            e.tx.event_time_ns = -between(1, 5);
            break;
        }
      }
      note(account, e.tx.event_time_ns);
      return e;
    }
    e.kind = Event::Kind::kOrder;
    const int64_t typical = std::max<int64_t>(1, std::min(c_.max_order_qty, c_.position_limit) / 5);
    int64_t qty = between(1, typical);
    if (chance(50)) qty = at_least1(I128{c_.max_order_qty} + between(1, typical));
    if (chance(20)) qty = c_.max_order_qty;  // the edge: not above the limit
    if (huge) {
      // Large enough to overflow int64 products; sometimes so close to INT64_MAX that
      // pos + s itself overflows int64.
      qty = chance(300) ? clamp(I128{kI64Max} - between(0, c_.position_limit))
                        : between(int64_t{1} << 40, kI64Max);
    }
    const int64_t target = std::max<int64_t>(1, c_.max_order_notional / qty);
    int64_t price =
        chance(850) ? between(1, target) : at_least1(I128{target} + between(0, target / 2 + 1));
    if (chance(50)) price = target;  // q * price == max_order_notional when q divides it
    if (huge && chance(500)) price = between(int64_t{1} << 30, kI64Max);
    e.order =
        wire::Order{.client_seq = client_seq_,
                    .event_time_ns = t,
                    .account_id = account,
                    .order_id = client_seq_,
                    .instrument_id = static_cast<uint32_t>(between(1, 3)),
                    .side = static_cast<uint8_t>(chance(static_cast<int>(buy_per_mille_)) ? 1 : 2),
                    .quantity = qty,
                    .price = price};
    if (chance(5)) {
      switch (between(0, 4)) {
        case 0:
          e.order.account_id = 0;
          break;
        case 1:
          e.order.side = static_cast<uint8_t>(chance(500) ? 0 : between(3, 255));
          break;
        case 2:
          e.order.quantity = -between(0, 5);
          break;
        case 3:
          e.order.price = -between(0, 5);
          break;
        default:
          e.order.event_time_ns = -between(1, 5);
          break;
      }
    }
    note(account, e.order.event_time_ns);
    return e;
  }

  void note(uint64_t account, int64_t t) {
    if (t < 0) return;
    max_ = std::max(max_, t);
    if (account != 0) times_[account].push_back(t);
  }

  const ProcessorConfig& c_;
  std::mt19937_64 rng_;
  int64_t now_;
  int64_t max_ = 0;
  uint64_t client_seq_ = 0;
  Shape shape_ = Shape::kSparse;
  std::vector<uint64_t> accounts_;
  int64_t step_max_ = 1;
  int64_t tx_per_mille_ = 500;
  int64_t buy_per_mille_ = 500;
  std::map<uint64_t, std::vector<int64_t>> times_;  // every valid event time, per account
};

// ---------------------------------------------------------------------------------------------
// Running the real shards and comparing.

std::string str(const DecisionRecord& d) {
  return absl::StrCat("seq=", d.seq, " type=", std::string(1, d.type), " account=", d.account_id,
                      " client=", d.client_id, " client_seq=", d.client_seq,
                      " conn=", d.connection_id, " ", std::string(wire::verdict_name(d.verdict)),
                      " reason=", d.reason, " flags=0x", absl::Hex(d.flags));
}

std::string str(const AlertRecord& a) {
  return absl::StrCat("seq=", a.seq, " t=", a.event_time_ns, " account=", a.account_id, " ",
                      std::string(wire::rule_name(a.rule)), " value=", a.value,
                      " threshold=", a.threshold);
}

std::string str(const std::vector<AlertRecord>& v) {
  std::string s = "[";
  for (const AlertRecord& a : v) absl::StrAppend(&s, s.size() > 1 ? "; " : "", str(a));
  return s + "]";
}

class Collector final : public DecisionSink {
 public:
  void on_decision(const DecisionRecord& d) override { decisions.push_back(d); }
  void on_alert(const AlertRecord& a) override { alerts.push_back(a); }
  std::vector<DecisionRecord> decisions;
  std::vector<AlertRecord> alerts;
};

struct Coverage {
  std::map<Verdict, int64_t> verdicts;
  std::map<Rule, int64_t> rules;
  void add(const ModelResult& m) {
    for (const auto& [v, n] : m.verdicts) verdicts[v] += n;
    for (const auto& [r, n] : m.rules) rules[r] += n;
  }
  std::string summary() const {
    std::string s;
    for (const auto& [v, n] : verdicts)
      absl::StrAppend(&s, std::string(wire::verdict_name(v)), "=", n, " ");
    for (const auto& [r, n] : rules)
      absl::StrAppend(&s, std::string(wire::rule_name(r)), "=", n, " ");
    return s;
  }
};

// Feeds `journal` to `shards` shards and compares everything with the model. Returns the model.
ModelResult check_against_model(const ProcessorConfig& config, const std::vector<Event>& journal,
                                const std::string& label) {
  const ModelResult model = run_model(config, journal);
  std::vector<std::vector<std::byte>> frames;
  frames.reserve(journal.size());
  for (const Event& e : journal) frames.push_back(encode(e));

  for (uint32_t n : {1u, 2u, 3u, 4u}) {
    SCOPED_TRACE(absl::StrCat(label, ", ", n, " shard(s)"));
    std::vector<Collector> sinks(n);
    std::vector<std::unique_ptr<Shard>> shards;
    for (uint32_t i = 0; i < n; ++i)
      shards.push_back(std::make_unique<Shard>(config, i, n, sinks[i]));
    for (size_t s = 0; s < frames.size(); ++s) {
      for (auto& shard : shards) {
        shard->on_event(static_cast<int64_t>(s + 1), journal[s].client_id, journal[s].connection_id,
                        frames[s]);
      }
    }

    // Merge by seq; each decision must come from the shard that owns its account.
    std::map<int64_t, DecisionRecord> decisions;
    std::map<int64_t, std::vector<AlertRecord>> alerts;
    int64_t errors = 0;
    auto report = [&errors](const std::string& what) {
      if (++errors <= 10) ADD_FAILURE() << what;
    };
    for (uint32_t i = 0; i < n; ++i) {
      for (const DecisionRecord& d : sinks[i].decisions) {
        if (shard_of(d.account_id, n) != i) report(absl::StrCat("shard ", i, " answered ", str(d)));
        if (!decisions.emplace(d.seq, d).second)
          report(absl::StrCat("seq ", d.seq, " answered twice"));
      }
      for (const AlertRecord& a : sinks[i].alerts) alerts[a.seq].push_back(a);
      EXPECT_EQ(shards[i]->max_time(), model.has_max_t ? model.max_t : EventClock::kNone);
    }
    EXPECT_EQ(decisions.size(), model.decisions.size());
    for (const DecisionRecord& want : model.decisions) {
      auto it = decisions.find(want.seq);
      if (it == decisions.end()) {
        report(absl::StrCat("missing decision: want ", str(want)));
        continue;
      }
      const DecisionRecord& got = it->second;
      if (!(got == want) || got.connection_id != want.connection_id) {
        const Event& e = journal[static_cast<size_t>(want.seq - 1)];
        report(absl::StrCat(
            "decision differs\n  got  ", str(got), "\n  want ", str(want), "\n  event time ",
            e.kind == Event::Kind::kTransaction ? e.tx.event_time_ns : e.order.event_time_ns,
            "\n  got alerts  ", str(alerts[want.seq]), "\n  want alerts ",
            model.alerts.count(want.seq) ? str(model.alerts.at(want.seq)) : "[]"));
      }
    }
    for (const auto& [seq, want] : model.alerts) {
      auto it = alerts.find(seq);
      const std::vector<AlertRecord> got =
          it == alerts.end() ? std::vector<AlertRecord>{} : it->second;
      if (got != want) {
        report(absl::StrCat("alerts of seq ", seq, " differ\n  got  ", str(got), "\n  want ",
                            str(want)));
      }
    }
    for (const auto& [seq, got] : alerts) {
      if (!got.empty() && !model.alerts.count(seq)) {
        report(absl::StrCat("unexpected alerts of seq ", seq, ": ", str(got)));
      }
    }
    EXPECT_EQ(errors, 0) << "mismatches (first 10 shown above)";

    // State: positions as the model sums them, and windowed state that holds everything a
    // future non-late event can see (eviction never drops anything visible: the decisions above
    // agree) and at most what one a lateness earlier could have seen (cleanup timers fire at
    // most a lateness late).
    size_t history = 0, accepted = 0;
    for (auto& shard : shards) {
      history += shard->fraud().history().entries();
      accepted += shard->risk().accepted().entries();
    }
    EXPECT_GE(history, static_cast<size_t>(model.visible_history));
    EXPECT_LE(history, static_cast<size_t>(model.held_history_bound));
    EXPECT_GE(accepted, static_cast<size_t>(model.visible_accepted));
    EXPECT_LE(accepted, static_cast<size_t>(model.held_accepted_bound));
    int64_t position_errors = 0;
    for (const auto& [key, pos] : model.positions) {
      const Shard& owner = *shards[shard_of(key.first, n)];
      if (I128{owner.risk().position(key.first, key.second)} != pos && ++position_errors <= 5) {
        ADD_FAILURE() << "position of account " << key.first << " instrument " << key.second
                      << ": got " << owner.risk().position(key.first, key.second) << " want "
                      << sat64(pos);
      }
    }
    EXPECT_EQ(position_errors, 0);
  }
  return model;
}

int64_t scaled(int64_t events) {
  return std::max<int64_t>(500, events / sluice::testing::kStressScale);
}

// The brief's small config: every rule fires often.
ProcessorConfig small_config() {
  ProcessorConfig c;
  c.window_ns = 1'000;
  c.allowed_lateness_ns = 200;
  c.velocity_max = 3;
  c.anomaly_min_history = 2;
  c.anomaly_multiplier_milli = 2'500;  // thresholds with a fractional part
  c.rate_window_ns = 500;
  c.rate_limit = 3;
  c.position_limit = 50;
  c.max_order_qty = 40;
  c.max_order_notional = 4'000;
  return c;
}

// Everything at its tightest: no lateness, rate window of 1 ns (only equal times count),
// velocity 1 (any history fires), anomaly against a history of one.
ProcessorConfig extreme_config() {
  ProcessorConfig c;
  c.window_ns = 50;
  c.allowed_lateness_ns = 0;
  c.velocity_max = 1;
  c.anomaly_min_history = 1;
  c.anomaly_multiplier_milli = 1'000;
  c.rate_window_ns = 1;
  c.rate_limit = 1;
  c.position_limit = 3;
  c.max_order_qty = 2;
  c.max_order_notional = 5;
  return c;
}

void expect_full_coverage(const Coverage& cov) {
  for (Rule r : {Rule::kVelocityExceeded, Rule::kAmountAnomaly, Rule::kMaxOrderQty,
                 Rule::kMaxOrderNotional, Rule::kPositionLimit, Rule::kOrderRate}) {
    EXPECT_GT(cov.rules.count(r) ? cov.rules.at(r) : 0, 10)
        << std::string(wire::rule_name(r)) << " rarely fired";
  }
  for (Verdict v :
       {Verdict::kAccept, Verdict::kFlag, Verdict::kReject, Verdict::kLate, Verdict::kInvalid}) {
    EXPECT_GT(cov.verdicts.count(v) ? cov.verdicts.at(v) : 0, 10)
        << std::string(wire::verdict_name(v));
  }
}

TEST(ReferenceModel, SmallConfigMatchesForAnyShardCount) {
  const ProcessorConfig c = small_config();
  Coverage cov;
  for (uint64_t seed : {1, 2, 3}) {
    Generator g(c, seed, 0);
    cov.add(check_against_model(c, g.generate(scaled(30'000)), absl::StrCat("seed ", seed)));
  }
  expect_full_coverage(cov);
  std::printf("  small config: %s\n", cov.summary().c_str());
}

TEST(ReferenceModel, SpecDefaultsMatchForAnyShardCount) {
  const ProcessorConfig c;
  Coverage cov;
  for (uint64_t seed : {11, 12, 13}) {
    Generator g(c, seed, 1'700'000'000'000'000'000);
    cov.add(check_against_model(c, g.generate(scaled(30'000)), absl::StrCat("seed ", seed)));
  }
  expect_full_coverage(cov);
  std::printf("  defaults: %s\n", cov.summary().c_str());
}

TEST(ReferenceModel, ExtremeConfigMatchesForAnyShardCount) {
  const ProcessorConfig c = extreme_config();
  Coverage cov;
  for (uint64_t seed : {21, 22}) {
    Generator g(c, seed, 5);
    cov.add(check_against_model(c, g.generate(scaled(20'000)), absl::StrCat("seed ", seed)));
  }
  expect_full_coverage(cov);
  std::printf("  extreme config: %s\n", cov.summary().c_str());
}

TEST(ReferenceModel, EventTimesAtTheTopOfTheInt64RangeMatch) {
  // Times run into INT64_MAX (the generator clamps there): windows, lateness and eviction
  // timers all meet the end of the range.
  Coverage cov;
  {
    const ProcessorConfig c = small_config();
    Generator g(c, 31, kI64Max - 300'000);
    cov.add(check_against_model(c, g.generate(scaled(15'000)), "small config near INT64_MAX"));
  }
  {
    const ProcessorConfig c;
    Generator g(c, 32, kI64Max - 20 * (c.window_ns + c.allowed_lateness_ns));
    cov.add(check_against_model(c, g.generate(scaled(15'000)), "defaults near INT64_MAX"));
  }
  EXPECT_GT(cov.verdicts[Verdict::kLate], 0);
  EXPECT_GT(cov.verdicts[Verdict::kFlag], 0);
  std::printf("  near INT64_MAX: %s\n", cov.summary().c_str());
}

}  // namespace
}  // namespace sluice
