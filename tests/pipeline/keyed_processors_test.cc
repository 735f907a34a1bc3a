// The built-in processors (SPEC section 2), rule by rule and edge by edge, through the Shard's
// public entry point: encoded frames in journal order, decisions and alerts out of the sink.
//
// The expectations come from SPEC 2's text, not from the code: every case names the sentence it
// checks. The brute-force model in reference_model_test.cc checks the same rules on long random
// streams.
#include "pipeline/keyed_processors.h"

#include <array>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <type_traits>
#include <vector>

#include "absl/strings/str_cat.h"
#include "core/int128.h"
#include "core/wire_format.h"
#include "gtest/gtest.h"
#include "pipeline/processor.h"

namespace sluice {
namespace {

using wire::Rule;
using wire::Side;
using wire::Verdict;

constexpr int64_t kI64Max = std::numeric_limits<int64_t>::max();
constexpr int64_t kI64Min = std::numeric_limits<int64_t>::min();
constexpr uint64_t kClient = 77;
constexpr uint32_t kConnection = 9;

// "FLAG reason=1 flags=0x3": the part of a decision the rules decide.
std::string outcome(const DecisionRecord& d) {
  return absl::StrCat(std::string(wire::verdict_name(d.verdict)), " reason=", d.reason, " flags=0x",
                      absl::Hex(d.flags));
}

// "VELOCITY_EXCEEDED value=4 threshold=3".
std::string describe(const AlertRecord& a) {
  return absl::StrCat(std::string(wire::rule_name(a.rule)), " value=", a.value,
                      " threshold=", a.threshold);
}

using Alerts = std::vector<std::string>;

class Recorder final : public DecisionSink {
 public:
  void on_decision(const DecisionRecord& d) override { decisions.push_back(d); }
  void on_alert(const AlertRecord& a) override { alerts.push_back(a); }
  std::vector<DecisionRecord> decisions;
  std::vector<AlertRecord> alerts;
};

// One shard (index 0 of 1 unless told) fed one event at a time, seq 1, 2, 3... Every helper
// checks the identity fields of what the event produced (seq, type, account, client, client_seq,
// connection; each alert's seq, event time and account), so the tests can focus on the outcome.
class Driver {
 public:
  explicit Driver(const ProcessorConfig& config = {}, uint32_t index = 0, uint32_t count = 1)
      : shard_(std::make_unique<Shard>(config, index, count, sink_)) {}
  Driver(const Driver&) = delete;
  Driver& operator=(const Driver&) = delete;

  // A TRANSACTION; returns its decision (a default record, and a test failure, if there is not
  // exactly one).
  DecisionRecord tx(uint64_t account, int64_t time, int64_t amount) {
    return feed(wire::Transaction{.client_seq = 1000 + next_seq_,
                                  .event_time_ns = time,
                                  .account_id = account,
                                  .amount_minor = amount,
                                  .merchant_id = 5,
                                  .currency = 978,
                                  .channel = 2});
  }
  DecisionRecord order(uint64_t account, int64_t time, Side side, int64_t qty, int64_t price,
                       uint32_t instrument = 1) {
    return feed(wire::Order{.client_seq = 1000 + next_seq_,
                            .event_time_ns = time,
                            .account_id = account,
                            .order_id = 500 + next_seq_,
                            .instrument_id = instrument,
                            .side = static_cast<uint8_t>(side),
                            .quantity = qty,
                            .price = price});
  }
  DecisionRecord buy(uint64_t account, int64_t time, int64_t qty, int64_t price = 1,
                     uint32_t instrument = 1) {
    return order(account, time, Side::kBuy, qty, price, instrument);
  }
  DecisionRecord sell(uint64_t account, int64_t time, int64_t qty, int64_t price = 1,
                      uint32_t instrument = 1) {
    return order(account, time, Side::kSell, qty, price, instrument);
  }
  // A WATERMARK: SPEC says it emits nothing.
  void watermark(int64_t time) {
    const size_t d = sink_.decisions.size(), a = sink_.alerts.size();
    std::array<std::byte, wire::kMaxFrameSize> buf{};
    const size_t n = wire::encode(wire::Watermark{.event_time_ns = time}, buf);
    shard_->on_event(static_cast<int64_t>(next_seq_++), kClient, kConnection,
                     std::span<const std::byte>(buf.data(), n));
    EXPECT_EQ(sink_.decisions.size(), d) << "a WATERMARK emitted a decision";
    EXPECT_EQ(sink_.alerts.size(), a) << "a WATERMARK emitted an alert";
  }

  DecisionRecord feed(const wire::Transaction& t) {
    std::array<std::byte, wire::kMaxFrameSize> buf{};
    const size_t n = wire::encode(t, buf);
    return deliver(buf, n, 'T', t.account_id, t.client_seq, t.event_time_ns);
  }
  DecisionRecord feed(const wire::Order& o) {
    std::array<std::byte, wire::kMaxFrameSize> buf{};
    const size_t n = wire::encode(o, buf);
    return deliver(buf, n, 'O', o.account_id, o.client_seq, o.event_time_ns);
  }

  // The alerts of the last event, in emission order.
  Alerts alerts() const { return last_alerts_; }
  int64_t last_seq() const { return static_cast<int64_t>(next_seq_) - 1; }
  const Shard& shard() const { return *shard_; }
  const Recorder& sink() const { return sink_; }

 private:
  DecisionRecord deliver(const std::array<std::byte, wire::kMaxFrameSize>& buf, size_t n, char type,
                         uint64_t account, uint64_t client_seq, int64_t time) {
    const size_t d0 = sink_.decisions.size(), a0 = sink_.alerts.size();
    const auto seq = static_cast<int64_t>(next_seq_++);
    shard_->on_event(seq, kClient, kConnection, std::span<const std::byte>(buf.data(), n));
    last_alerts_.clear();
    for (size_t i = a0; i < sink_.alerts.size(); ++i) {
      const AlertRecord& a = sink_.alerts[i];
      EXPECT_EQ(a.seq, seq);
      EXPECT_EQ(a.event_time_ns, time);
      EXPECT_EQ(a.account_id, account);
      last_alerts_.push_back(describe(a));
    }
    if (sink_.decisions.size() != d0 + 1) {
      ADD_FAILURE() << "event seq " << seq << " produced " << sink_.decisions.size() - d0
                    << " decisions, want 1";
      return DecisionRecord{};
    }
    const DecisionRecord& d = sink_.decisions.back();
    EXPECT_EQ(d.seq, seq);
    EXPECT_EQ(d.type, type);
    EXPECT_EQ(d.account_id, account);
    EXPECT_EQ(d.client_id, kClient);
    EXPECT_EQ(d.client_seq, client_seq);
    EXPECT_EQ(d.connection_id, kConnection);
    // One ALERT per fired rule: as many alerts as flag bits.
    EXPECT_EQ(static_cast<size_t>(__builtin_popcount(d.flags)), last_alerts_.size()) << outcome(d);
    return d;
  }

  Recorder sink_;
  std::unique_ptr<Shard> shard_;
  uint64_t next_seq_ = 1;
  std::vector<std::string> last_alerts_;
};

// A config that isolates the velocity rule: a window of 1000 ns, a large lateness so
// out-of-order events are not late, and AMOUNT_ANOMALY out of reach.
ProcessorConfig velocity_config(int64_t velocity_max) {
  ProcessorConfig c;
  c.window_ns = 1000;
  c.velocity_max = velocity_max;
  c.anomaly_min_history = 1'000'000;
  c.allowed_lateness_ns = 1'000'000;
  return c;
}

// With velocity_max 1 a transaction fires VELOCITY_EXCEEDED exactly when P is non-empty, and the
// alert's value is |P| + 1: a probe of |P|. Returns |P| (0 when nothing fired).
int64_t probe_window(Driver& d, uint64_t account, int64_t time) {
  const DecisionRecord r = d.tx(account, time, 100);
  if (r.verdict == Verdict::kAccept) return 0;
  if (r.verdict != Verdict::kFlag || d.alerts().size() != 1) {
    ADD_FAILURE() << "probe at " << time << ": " << outcome(r);
    return -1;
  }
  const AlertRecord& a = d.sink().alerts.back();
  EXPECT_EQ(a.rule, Rule::kVelocityExceeded);
  return a.value - 1;
}

ProcessorConfig anomaly_config() {
  ProcessorConfig c;  // multiplier 3000, min history 3, window 60 s
  c.velocity_max = 1'000'000;
  return c;
}

// A config that isolates the risk rules: every limit out of reach unless a test lowers it.
ProcessorConfig risk_config() {
  ProcessorConfig c;
  c.max_order_qty = kI64Max;
  c.max_order_notional = kI64Max;
  c.position_limit = kI64Max;
  c.rate_limit = kI64Max;
  c.rate_window_ns = 500;
  c.allowed_lateness_ns = 1'000'000;
  return c;
}

// ---------------------------------------------------------------------------------------------
// Fraud: VELOCITY_EXCEEDED and the window P.

TEST(FraudVelocity, FirstTransactionIsAcceptedWithNoReasonNoFlagsAndJoinsHistory) {
  Driver d;
  EXPECT_EQ(outcome(d.tx(42, 1'000, 500)), "ACCEPT reason=0 flags=0x0");
  EXPECT_TRUE(d.alerts().empty());
  EXPECT_EQ(d.shard().fraud().history().entries(), 1u);
  EXPECT_EQ(d.shard().fraud().history().keys(), 1u);
}

TEST(FraudVelocity, FiresWhenCountIncludingThisOneExceedsVelocityMax) {
  Driver d(velocity_config(3));
  for (int i = 0; i < 3; ++i) EXPECT_EQ(outcome(d.tx(1, 100 + i, 10)), "ACCEPT reason=0 flags=0x0");
  // |P| = 3: |P| + 1 = 4 > 3.
  EXPECT_EQ(outcome(d.tx(1, 103, 10)), "FLAG reason=1 flags=0x1");
  EXPECT_EQ(d.alerts(), (Alerts{"VELOCITY_EXCEEDED value=4 threshold=3"}));
  // A flagged transaction joins the history too: |P| = 4 now.
  EXPECT_EQ(outcome(d.tx(1, 104, 10)), "FLAG reason=1 flags=0x1");
  EXPECT_EQ(d.alerts(), (Alerts{"VELOCITY_EXCEEDED value=5 threshold=3"}));
}

TEST(FraudVelocity, CountsOnlyTheSameAccount) {
  Driver d(velocity_config(2));
  d.tx(1, 100, 10);
  d.tx(2, 100, 10);
  d.tx(3, 100, 10);
  EXPECT_EQ(outcome(d.tx(1, 100, 10)), "ACCEPT reason=0 flags=0x0");  // |P| = 1
  EXPECT_EQ(outcome(d.tx(1, 100, 10)), "FLAG reason=1 flags=0x1");    // |P| = 2
}

TEST(FraudWindow, EntryExactlyWindowOldIsNotInP) {
  Driver d(velocity_config(1));  // window 1000
  d.tx(1, 1'000, 10);
  // t - window < p.time fails for p.time == t - window.
  EXPECT_EQ(probe_window(d, 1, 2'000), 0);
}

TEST(FraudWindow, EntryOneNanosecondInsideTheWindowIsInP) {
  Driver d(velocity_config(1));
  d.tx(1, 1'001, 10);
  EXPECT_EQ(probe_window(d, 1, 2'000), 1);
}

TEST(FraudWindow, EntryWithEqualTimeIsInP) {
  Driver d(velocity_config(1));
  d.tx(1, 5'000, 10);
  d.tx(1, 5'000, 10);
  EXPECT_EQ(probe_window(d, 1, 5'000), 2);  // p.time <= t
}

TEST(FraudWindow, EarlierInJournalButLaterInTimeIsNotInP) {
  Driver d(velocity_config(1));  // lateness 1 ms: 4'500 after 5'000 is not late
  d.tx(1, 5'000, 10);
  EXPECT_EQ(probe_window(d, 1, 4'500), 0);  // 5'000 > 4'500: not in P
  // Both are in the history: a transaction at 5'000 sees both.
  EXPECT_EQ(probe_window(d, 1, 5'000), 2);
}

TEST(FraudWindow, OutOfOrderEntryStillCountsForLaterTransactions) {
  Driver d(velocity_config(1));
  d.tx(1, 5'000, 10);
  d.tx(1, 4'500, 10);  // out of order, not late; |P| = 0 for it
  // At 5'400: P = {5'000, 4'500} (5'400 - 1000 = 4'400 < both).
  EXPECT_EQ(probe_window(d, 1, 5'400), 2);
  // At 5'500 (a later probe): 4'500 is exactly window-old and out; 5'000 and 5'400 are in.
  EXPECT_EQ(probe_window(d, 1, 5'500), 2);
}

// ---------------------------------------------------------------------------------------------
// Fraud: AMOUNT_ANOMALY.

TEST(FraudAnomaly, NeverFiresBelowMinHistoryEvenForAHugeAmount) {
  Driver d(anomaly_config());  // min history 3
  d.tx(1, 1'000, 10);
  d.tx(1, 1'001, 10);
  // |P| = 2 = min_history - 1.
  EXPECT_EQ(outcome(d.tx(1, 1'002, kI64Max)), "ACCEPT reason=0 flags=0x0");
  EXPECT_TRUE(d.alerts().empty());
}

TEST(FraudAnomaly, FiresAtMinHistoryWithFlooredThreshold) {
  ProcessorConfig c = anomaly_config();
  c.anomaly_multiplier_milli = 2500;
  Driver d(c);
  d.tx(1, 1'000, 10);
  d.tx(1, 1'001, 10);
  d.tx(1, 1'002, 11);
  // |P| = 3, sum 31: 26 * 3 * 1000 = 78000 > 2500 * 31 = 77500. Threshold
  // floor(77500 / 3000) = floor(25.83) = 25.
  EXPECT_EQ(outcome(d.tx(1, 1'003, 26)), "FLAG reason=2 flags=0x2");
  EXPECT_EQ(d.alerts(), (Alerts{"AMOUNT_ANOMALY value=26 threshold=25"}));
}

TEST(FraudAnomaly, AmountBelowTheExactBoundDoesNotFireEvenAboveTheFlooredThreshold) {
  ProcessorConfig c = anomaly_config();
  c.anomaly_multiplier_milli = 2500;
  Driver d(c);
  d.tx(1, 1'000, 10);
  d.tx(1, 1'001, 10);
  d.tx(1, 1'002, 11);
  // 25 * 3000 = 75000 <= 77500: the rule compares exactly, not against the floored threshold.
  EXPECT_EQ(outcome(d.tx(1, 1'003, 25)), "ACCEPT reason=0 flags=0x0");
}

TEST(FraudAnomaly, EqualityDoesNotFire) {
  Driver d(anomaly_config());  // multiplier 3000
  d.tx(1, 1'000, 10);
  d.tx(1, 1'001, 10);
  d.tx(1, 1'002, 10);
  // 30 * 3 * 1000 = 90000 == 3000 * 30: strict >, no alert.
  EXPECT_EQ(outcome(d.tx(1, 1'003, 30)), "ACCEPT reason=0 flags=0x0");
  // The accepted 30 joined P: |P| = 4, sum 60; 46 * 4000 = 184000 > 180000.
  EXPECT_EQ(outcome(d.tx(2, 1'003, 10)), "ACCEPT reason=0 flags=0x0");
  EXPECT_EQ(outcome(d.tx(1, 1'004, 46)), "FLAG reason=2 flags=0x2");
  EXPECT_EQ(d.alerts(), (Alerts{"AMOUNT_ANOMALY value=46 threshold=45"}));
}

TEST(FraudAnomaly, OnlyTransactionsInTheWindowCountTowardsHistoryAndSum) {
  ProcessorConfig c = anomaly_config();
  c.window_ns = 1'000;
  c.anomaly_min_history = 2;
  Driver d(c);
  d.tx(1, 0, 1'000'000);  // will be exactly window-old: not in P
  d.tx(1, 500, 10);
  d.tx(1, 600, 10);
  // At 1000: P = {500, 600}, sum 20: 31 * 2000 = 62000 > 60000.
  EXPECT_EQ(outcome(d.tx(1, 1'000, 31)), "FLAG reason=2 flags=0x2");
  EXPECT_EQ(d.alerts(), (Alerts{"AMOUNT_ANOMALY value=31 threshold=30"}));
}

TEST(FraudAnomaly, VelocityAndAnomalyTogetherAlertInRuleOrder) {
  ProcessorConfig c;
  c.velocity_max = 3;
  c.anomaly_min_history = 3;
  Driver d(c);
  d.tx(9, 10, 100);
  d.tx(9, 11, 100);
  d.tx(9, 12, 100);
  EXPECT_EQ(outcome(d.tx(9, 13, 1'000)), "FLAG reason=1 flags=0x3");
  EXPECT_EQ(d.alerts(), (Alerts{"VELOCITY_EXCEEDED value=4 threshold=3",
                                "AMOUNT_ANOMALY value=1000 threshold=300"}));
}

TEST(FraudAnomaly, ProductsOfAmountsNearInt64MaxAreExact) {
  constexpr int64_t M = kI64Max;
  {
    // P = {M, M, M}: sum 3M overflows int64; x = M: 3000M vs 3000 * 3M = 9000M, no alert.
    Driver d(anomaly_config());
    d.tx(1, 1, M);
    d.tx(1, 2, M);
    d.tx(1, 3, M);
    EXPECT_EQ(outcome(d.tx(1, 4, M)), "ACCEPT reason=0 flags=0x0");
  }
  {
    // P = {1, 1, 1}, x = M: M * 3 * 1000 overflows 64 bits (and would wrap negative); exactly
    // it is far above 3000 * 3.
    Driver d(anomaly_config());
    d.tx(1, 1, 1);
    d.tx(1, 2, 1);
    d.tx(1, 3, 1);
    EXPECT_EQ(outcome(d.tx(1, 4, M)), "FLAG reason=2 flags=0x2");
    EXPECT_EQ(d.alerts(), (Alerts{absl::StrCat("AMOUNT_ANOMALY value=", M, " threshold=3")}));
  }
  {
    // P = {M, M, M}, multiplier 1000: 3000M == 1000 * 3M, equal, no alert.
    ProcessorConfig c = anomaly_config();
    c.anomaly_multiplier_milli = 1000;
    Driver d(c);
    d.tx(1, 1, M);
    d.tx(1, 2, M);
    d.tx(1, 3, M);
    EXPECT_EQ(outcome(d.tx(1, 4, M)), "ACCEPT reason=0 flags=0x0");
  }
  {
    // Multiplier 999: 3000M > 999 * 3M; threshold floor(2997M / 3000) = floor(999M / 1000).
    ProcessorConfig c = anomaly_config();
    c.anomaly_multiplier_milli = 999;
    Driver d(c);
    d.tx(1, 1, M);
    d.tx(1, 2, M);
    d.tx(1, 3, M);
    EXPECT_EQ(outcome(d.tx(1, 4, M)), "FLAG reason=2 flags=0x2");
    const auto threshold = static_cast<int64_t>(Int128{999} * M / 1000);
    EXPECT_EQ(threshold, 9'214'148'664'817'921'031);
    EXPECT_EQ(d.alerts(),
              (Alerts{absl::StrCat("AMOUNT_ANOMALY value=", M, " threshold=", threshold)}));
  }
  {
    // Multiplier near int64 max and sum 3M: the right side exceeds 2^127; x can't exceed it.
    ProcessorConfig c = anomaly_config();
    c.anomaly_multiplier_milli = kI64Max;
    Driver d(c);
    d.tx(1, 1, M);
    d.tx(1, 2, M);
    d.tx(1, 3, M);
    EXPECT_EQ(outcome(d.tx(1, 4, M)), "ACCEPT reason=0 flags=0x0");
  }
  for (const int64_t x : {M / 1000, M / 1000 + 1}) {
    // Multiplier int64 max, P = {1, 1, 1}: x * 3000 > 3M exactly when x > M / 1000 (not an
    // integer), threshold floor(3M / 3000) = M / 1000.
    ProcessorConfig c = anomaly_config();
    c.anomaly_multiplier_milli = kI64Max;
    Driver d(c);
    d.tx(1, 1, 1);
    d.tx(1, 2, 1);
    d.tx(1, 3, 1);
    if (x == M / 1000) {
      EXPECT_EQ(outcome(d.tx(1, 4, x)), "ACCEPT reason=0 flags=0x0");
    } else {
      EXPECT_EQ(outcome(d.tx(1, 4, x)), "FLAG reason=2 flags=0x2");
      EXPECT_EQ(d.alerts(),
                (Alerts{absl::StrCat("AMOUNT_ANOMALY value=", x, " threshold=", M / 1000)}));
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Event time and lateness.

TEST(ShardLateness, NoEventYetMeansNoMaxTAndTheFirstEventIsNeverLate) {
  ProcessorConfig c;
  c.allowed_lateness_ns = 0;
  Driver d(c);
  EXPECT_EQ(d.shard().max_time(), EventClock::kNone);
  EXPECT_EQ(outcome(d.tx(1, 0, 10)), "ACCEPT reason=0 flags=0x0");
  EXPECT_EQ(d.shard().max_time(), 0);
}

TEST(ShardLateness, ExactlyMaxTMinusLatenessIsNotLateOneLessIsLate) {
  ProcessorConfig c;
  c.allowed_lateness_ns = 100;
  Driver d(c);
  d.tx(1, 1'000, 10);
  EXPECT_EQ(outcome(d.tx(2, 900, 10)), "ACCEPT reason=0 flags=0x0");
  EXPECT_EQ(outcome(d.tx(2, 899, 10)), "LATE reason=0 flags=0x0");
  EXPECT_EQ(outcome(d.buy(3, 900, 1)), "ACCEPT reason=0 flags=0x0");
  EXPECT_EQ(outcome(d.buy(3, 899, 1)), "LATE reason=0 flags=0x0");
  EXPECT_TRUE(d.alerts().empty());
  EXPECT_EQ(d.shard().max_time(), 1'000);  // neither out-of-order nor late events lower it
}

TEST(ShardLateness, ZeroLatenessMakesAnyEarlierTimeLate) {
  ProcessorConfig c;
  c.allowed_lateness_ns = 0;
  Driver d(c);
  d.buy(1, 1'000, 1);
  EXPECT_EQ(outcome(d.buy(1, 1'000, 1)), "ACCEPT reason=0 flags=0x0");
  EXPECT_EQ(outcome(d.buy(1, 999, 1)), "LATE reason=0 flags=0x0");
  EXPECT_EQ(outcome(d.tx(1, 999, 1)), "LATE reason=0 flags=0x0");
}

TEST(ShardLateness, LateTransactionFiresNoRuleAndDoesNotJoinHistory) {
  ProcessorConfig c = velocity_config(1);  // window 1000
  c.allowed_lateness_ns = 100;
  Driver d(c);
  d.tx(1, 1'000, 10);                                                 // maxT 1'000
  EXPECT_EQ(outcome(d.tx(2, 850, 10)), "LATE reason=0 flags=0x0");    // 850 < 900
  EXPECT_EQ(outcome(d.tx(3, 950, 10)), "ACCEPT reason=0 flags=0x0");  // 950 >= 900
  EXPECT_EQ(outcome(d.tx(3, 899, 10)), "LATE reason=0 flags=0x0");
  EXPECT_EQ(outcome(d.tx(3, 800, kI64Max)), "LATE reason=0 flags=0x0");
  EXPECT_TRUE(d.alerts().empty());
  EXPECT_EQ(d.shard().fraud().history().entries(), 2u);  // 1'000 (acct 1) and 950 (acct 3)
  EXPECT_EQ(d.shard().fraud().history().keys(), 2u);
  // The late ones are not in P of later transactions whose windows cover their times.
  EXPECT_EQ(probe_window(d, 3, 950), 1);
  EXPECT_EQ(probe_window(d, 2, 950), 0);  // account 2's only transaction was late
}

TEST(ShardLateness, LateTransactionWhoseRulesWouldFireIsStillJustLate) {
  ProcessorConfig c = velocity_config(1);
  c.allowed_lateness_ns = 100;
  Driver d(c);
  d.tx(1, 700, 10);
  d.tx(2, 1'000, 10);  // maxT 1'000
  // Account 1 at 899: P would be {700}, VELOCITY would fire; but it is late.
  EXPECT_EQ(outcome(d.tx(1, 899, 10)), "LATE reason=0 flags=0x0");
  EXPECT_TRUE(d.alerts().empty());
}

TEST(ShardLateness, LateOrderDoesNotMovePositionOrCountForRate) {
  ProcessorConfig c = risk_config();
  c.allowed_lateness_ns = 100;
  c.rate_limit = 2;
  c.rate_window_ns = 10'000;
  c.max_order_qty = 10;  // a late order's rules are not evaluated either
  Driver d(c);
  EXPECT_EQ(outcome(d.buy(1, 1'000, 5)), "ACCEPT reason=0 flags=0x0");
  EXPECT_EQ(outcome(d.buy(1, 899, 5)), "LATE reason=0 flags=0x0");
  EXPECT_EQ(outcome(d.buy(1, 899, 1'000)), "LATE reason=0 flags=0x0");  // no MAX_ORDER_QTY
  EXPECT_TRUE(d.alerts().empty());
  EXPECT_EQ(d.shard().risk().position(1, 1), 5);
  EXPECT_EQ(d.shard().risk().accepted().entries(), 1u);
  // n = 1 (the late ones don't count): 2 > 2 is false.
  EXPECT_EQ(outcome(d.buy(1, 1'000, 5)), "ACCEPT reason=0 flags=0x0");
  EXPECT_EQ(d.shard().risk().position(1, 1), 10);
  // n = 2 now: 3 > 2.
  EXPECT_EQ(outcome(d.buy(1, 1'000, 5)), "REJECT reason=6 flags=0x20");
  EXPECT_EQ(d.alerts(), (Alerts{"ORDER_RATE value=3 threshold=2"}));
}

TEST(ShardLateness, WatermarkRaisesMaxTAndMakesLaterEventsLate) {
  ProcessorConfig c;
  c.allowed_lateness_ns = 100;
  Driver d(c);
  d.tx(1, 1'000, 10);
  d.watermark(5'000);
  EXPECT_EQ(d.shard().max_time(), 5'000);
  EXPECT_EQ(outcome(d.tx(1, 4'900, 10)), "ACCEPT reason=0 flags=0x0");
  EXPECT_EQ(outcome(d.tx(1, 4'899, 10)), "LATE reason=0 flags=0x0");
  EXPECT_EQ(outcome(d.buy(1, 4'899, 1)), "LATE reason=0 flags=0x0");
}

TEST(ShardLateness, OlderWatermarkDoesNotLowerMaxT) {
  ProcessorConfig c;
  c.allowed_lateness_ns = 100;
  Driver d(c);
  d.watermark(5'000);
  d.watermark(100);
  EXPECT_EQ(d.shard().max_time(), 5'000);
  EXPECT_EQ(outcome(d.tx(1, 4'899, 10)), "LATE reason=0 flags=0x0");
}

TEST(ShardLateness, FirstEventMayBeAWatermark) {
  ProcessorConfig c;
  c.allowed_lateness_ns = 10;
  Driver d(c);
  d.watermark(1'000);
  EXPECT_EQ(d.shard().max_time(), 1'000);
  EXPECT_EQ(outcome(d.tx(1, 989, 10)), "LATE reason=0 flags=0x0");
  EXPECT_EQ(outcome(d.tx(1, 990, 10)), "ACCEPT reason=0 flags=0x0");
}

TEST(ShardLateness, MaxTComesFromTransactionsOrdersAndWatermarks) {
  ProcessorConfig c;
  c.allowed_lateness_ns = 0;
  Driver d(c);
  d.tx(1, 10, 1);
  EXPECT_EQ(d.shard().max_time(), 10);
  d.buy(1, 20, 1);
  EXPECT_EQ(d.shard().max_time(), 20);
  d.watermark(30);
  EXPECT_EQ(d.shard().max_time(), 30);
  // A rejected order still moves maxT (it is a non-late ORDER event of the journal).
  ProcessorConfig c2;
  c2.allowed_lateness_ns = 0;
  c2.max_order_qty = 1;
  Driver d2(c2);
  EXPECT_EQ(outcome(d2.buy(1, 50, 2)), "REJECT reason=3 flags=0x4");
  EXPECT_EQ(d2.shard().max_time(), 50);
  EXPECT_EQ(outcome(d2.tx(1, 49, 1)), "LATE reason=0 flags=0x0");
}

// ---------------------------------------------------------------------------------------------
// INVALID.

TEST(ShardInvalid, InvalidTransactionsAreAnsweredInvalidAndChangeNothing) {
  ProcessorConfig c = velocity_config(1);
  c.allowed_lateness_ns = 100;
  Driver d(c);
  d.tx(1, 1'000, 10);
  const std::vector<wire::Transaction> invalid = {
      {.client_seq = 1, .event_time_ns = 9'000, .account_id = 0, .amount_minor = 10},
      {.client_seq = 2, .event_time_ns = 9'000, .account_id = 1, .amount_minor = 0},
      {.client_seq = 3, .event_time_ns = 9'000, .account_id = 1, .amount_minor = -1},
      {.client_seq = 4, .event_time_ns = 9'000, .account_id = 1, .amount_minor = kI64Min},
      {.client_seq = 5, .event_time_ns = -1, .account_id = 1, .amount_minor = 10},
      {.client_seq = 6, .event_time_ns = kI64Min, .account_id = 1, .amount_minor = 10},
      // Invalid beats LATE: invalid and (were it valid) late.
      {.client_seq = 7, .event_time_ns = 0, .account_id = 1, .amount_minor = 0},
  };
  for (const auto& t : invalid) {
    EXPECT_EQ(outcome(d.feed(t)), "INVALID reason=0 flags=0x0") << "client_seq " << t.client_seq;
    EXPECT_TRUE(d.alerts().empty());
  }
  EXPECT_EQ(d.shard().max_time(), 1'000);  // the 9'000s did not move maxT
  EXPECT_EQ(d.shard().fraud().history().entries(), 1u);
  EXPECT_EQ(d.shard().fraud().history().keys(), 1u);
  EXPECT_EQ(probe_window(d, 1, 1'000), 1);  // only the first transaction is in P
  EXPECT_EQ(outcome(d.tx(2, 900, 10)), "ACCEPT reason=0 flags=0x0");  // not late: maxT 1'000
}

TEST(ShardInvalid, InvalidOrdersAreAnsweredInvalidAndChangeNothing) {
  ProcessorConfig c = risk_config();
  c.allowed_lateness_ns = 100;
  c.rate_limit = 1;
  Driver d(c);
  EXPECT_EQ(outcome(d.buy(1, 1'000, 5)), "ACCEPT reason=0 flags=0x0");
  const wire::Order base{.client_seq = 1,
                         .event_time_ns = 9'000,
                         .account_id = 1,
                         .order_id = 1,
                         .instrument_id = 1,
                         .side = 1,
                         .quantity = 5,
                         .price = 3};
  std::vector<wire::Order> invalid;
  for (uint8_t side : {0, 3, 255}) {
    invalid.push_back(base);
    invalid.back().side = side;
  }
  for (int64_t q : {int64_t{0}, int64_t{-1}, kI64Min}) {
    invalid.push_back(base);
    invalid.back().quantity = q;
  }
  for (int64_t p : {int64_t{0}, int64_t{-7}, kI64Min}) {
    invalid.push_back(base);
    invalid.back().price = p;
  }
  invalid.push_back(base);
  invalid.back().account_id = 0;
  invalid.push_back(base);
  invalid.back().event_time_ns = -1;
  invalid.push_back(base);  // invalid and late
  invalid.back().event_time_ns = 0;
  invalid.back().quantity = 0;
  for (size_t i = 0; i < invalid.size(); ++i) {
    EXPECT_EQ(outcome(d.feed(invalid[i])), "INVALID reason=0 flags=0x0") << "case " << i;
    EXPECT_TRUE(d.alerts().empty());
  }
  EXPECT_EQ(d.shard().max_time(), 1'000);
  EXPECT_EQ(d.shard().risk().position(1, 1), 5);
  EXPECT_EQ(d.shard().risk().accepted().entries(), 1u);
  EXPECT_EQ(outcome(d.buy(2, 900, 5)), "ACCEPT reason=0 flags=0x0");  // maxT is still 1'000
  // The rate of account 1 still counts one order.
  EXPECT_EQ(outcome(d.buy(1, 1'000, 5)), "REJECT reason=6 flags=0x20");
  EXPECT_EQ(d.alerts(), (Alerts{"ORDER_RATE value=2 threshold=1"}));
}

TEST(ShardInvalid, WatermarkWithNegativeTimeEmitsNothingAndKeepsMaxT) {
  Driver d;
  d.tx(1, 1'000, 10);
  d.watermark(-5);
  EXPECT_EQ(d.shard().max_time(), 1'000);
}

// ---------------------------------------------------------------------------------------------
// Risk rules, each alone, then together.

TEST(RiskRules, AcceptedBuyAddsAndSellSubtractsPerAccountAndInstrument) {
  Driver d(risk_config());
  EXPECT_EQ(outcome(d.buy(1, 10, 10, 3, 7)), "ACCEPT reason=0 flags=0x0");
  EXPECT_EQ(d.shard().risk().position(1, 7), 10);
  EXPECT_EQ(outcome(d.sell(1, 11, 25, 3, 7)), "ACCEPT reason=0 flags=0x0");
  EXPECT_EQ(d.shard().risk().position(1, 7), -15);
  d.buy(1, 12, 4, 3, 8);
  d.sell(2, 12, 6, 3, 7);
  EXPECT_EQ(d.shard().risk().position(1, 7), -15);
  EXPECT_EQ(d.shard().risk().position(1, 8), 4);
  EXPECT_EQ(d.shard().risk().position(2, 7), -6);
  EXPECT_EQ(d.shard().risk().position(2, 8), 0);
}

TEST(RiskRules, MaxOrderQtyFiresAboveTheLimitOnly) {
  ProcessorConfig c = risk_config();
  c.max_order_qty = 100;
  Driver d(c);
  EXPECT_EQ(outcome(d.buy(1, 10, 100)), "ACCEPT reason=0 flags=0x0");
  EXPECT_EQ(outcome(d.buy(1, 11, 101)), "REJECT reason=3 flags=0x4");
  EXPECT_EQ(d.alerts(), (Alerts{"MAX_ORDER_QTY value=101 threshold=100"}));
  EXPECT_EQ(outcome(d.sell(1, 12, 101)), "REJECT reason=3 flags=0x4");  // q, not s
  EXPECT_EQ(d.alerts(), (Alerts{"MAX_ORDER_QTY value=101 threshold=100"}));
  EXPECT_EQ(d.shard().risk().position(1, 1), 100);
}

TEST(RiskRules, MaxOrderNotionalFiresAboveTheLimitOnly) {
  ProcessorConfig c = risk_config();
  c.max_order_notional = 1'000;
  Driver d(c);
  EXPECT_EQ(outcome(d.buy(1, 10, 10, 100)), "ACCEPT reason=0 flags=0x0");
  EXPECT_EQ(outcome(d.buy(1, 11, 7, 143)), "REJECT reason=4 flags=0x8");  // 1001
  EXPECT_EQ(d.alerts(), (Alerts{"MAX_ORDER_NOTIONAL value=1001 threshold=1000"}));
  EXPECT_EQ(outcome(d.sell(1, 12, 1, 1'001)), "REJECT reason=4 flags=0x8");
  EXPECT_EQ(d.alerts(), (Alerts{"MAX_ORDER_NOTIONAL value=1001 threshold=1000"}));
}

TEST(RiskRules, MaxOrderNotionalUses128BitProductsAndSaturatesTheValue) {
  ProcessorConfig c = risk_config();
  c.max_order_notional = 1'000'000'000'000;  // SPEC default
  Driver d(c);
  // (2^32 + 1) * 2^32 = 2^64 + 2^32: wraps to 2^32 (under the limit) in 64 bits.
  const int64_t q = (int64_t{1} << 32) + 1, p = int64_t{1} << 32;
  EXPECT_EQ(outcome(d.buy(1, 10, q, p)), "REJECT reason=4 flags=0x8");
  EXPECT_EQ(
      d.alerts(),
      (Alerts{absl::StrCat("MAX_ORDER_NOTIONAL value=", kI64Max, " threshold=1000000000000")}));
  EXPECT_EQ(outcome(d.buy(1, 11, kI64Max, kI64Max)), "REJECT reason=4 flags=0x8");
  EXPECT_EQ(
      d.alerts(),
      (Alerts{absl::StrCat("MAX_ORDER_NOTIONAL value=", kI64Max, " threshold=1000000000000")}));
  // 2^62 * 2 = 2^63: one past int64 max, still saturated.
  EXPECT_EQ(outcome(d.buy(1, 12, int64_t{1} << 62, 2)), "REJECT reason=4 flags=0x8");
  EXPECT_EQ(
      d.alerts(),
      (Alerts{absl::StrCat("MAX_ORDER_NOTIONAL value=", kI64Max, " threshold=1000000000000")}));
  // With the limit at int64 max, a product of exactly int64 max is not above it.
  ProcessorConfig c2 = risk_config();
  Driver d2(c2);
  EXPECT_EQ(outcome(d2.buy(1, 10, kI64Max, 1)), "ACCEPT reason=0 flags=0x0");
  EXPECT_EQ(outcome(d2.sell(1, 11, 1, kI64Max)), "ACCEPT reason=0 flags=0x0");
  EXPECT_EQ(outcome(d2.sell(1, 12, 2, kI64Max / 2 + 1)), "REJECT reason=4 flags=0x8");
  EXPECT_EQ(d2.alerts(),
            (Alerts{absl::StrCat("MAX_ORDER_NOTIONAL value=", kI64Max, " threshold=", kI64Max)}));
}

TEST(RiskRules, PositionLimitUsesTheAbsolutePositionAfterTheOrder) {
  ProcessorConfig c = risk_config();
  c.position_limit = 50;
  Driver d(c);
  EXPECT_EQ(outcome(d.buy(1, 10, 50)), "ACCEPT reason=0 flags=0x0");
  EXPECT_EQ(outcome(d.buy(1, 11, 1)), "REJECT reason=5 flags=0x10");
  EXPECT_EQ(d.alerts(), (Alerts{"POSITION_LIMIT value=51 threshold=50"}));
  EXPECT_EQ(outcome(d.sell(1, 12, 100)), "ACCEPT reason=0 flags=0x0");  // 50 - 100 = -50
  EXPECT_EQ(d.shard().risk().position(1, 1), -50);
  EXPECT_EQ(outcome(d.sell(1, 13, 1)), "REJECT reason=5 flags=0x10");
  EXPECT_EQ(d.alerts(), (Alerts{"POSITION_LIMIT value=-51 threshold=50"}));
  // A single order larger than the limit from flat.
  EXPECT_EQ(outcome(d.sell(2, 14, 51)), "REJECT reason=5 flags=0x10");
  EXPECT_EQ(d.alerts(), (Alerts{"POSITION_LIMIT value=-51 threshold=50"}));
  // Rejected orders left everything where it was.
  EXPECT_EQ(d.shard().risk().position(1, 1), -50);
  EXPECT_EQ(d.shard().risk().position(2, 1), 0);
  // An order that brings |pos| back under the limit is fine from either side.
  EXPECT_EQ(outcome(d.buy(1, 15, 100)), "ACCEPT reason=0 flags=0x0");
  EXPECT_EQ(d.shard().risk().position(1, 1), 50);
}

TEST(RiskRules, PositionsOfInstrumentsAndAccountsAreIndependent) {
  ProcessorConfig c = risk_config();
  c.position_limit = 50;
  Driver d(c);
  EXPECT_EQ(outcome(d.buy(1, 10, 50, 1, 1)), "ACCEPT reason=0 flags=0x0");
  EXPECT_EQ(outcome(d.buy(1, 10, 50, 1, 2)), "ACCEPT reason=0 flags=0x0");
  EXPECT_EQ(outcome(d.buy(2, 10, 50, 1, 1)), "ACCEPT reason=0 flags=0x0");
  EXPECT_EQ(outcome(d.buy(1, 10, 1, 1, 1)), "REJECT reason=5 flags=0x10");
  EXPECT_EQ(outcome(d.buy(1, 10, 1, 1, 3)), "ACCEPT reason=0 flags=0x0");
}

TEST(RiskRules, PositionValueSaturatesWhenPosPlusSOverflowsInt64) {
  // SPEC: "POSITION_LIMIT ... (value pos(a,i)+s, threshold position_limit)", and every value is
  // reported as an i64. pos + s is computed exactly (|pos| <= position_limit, |s| < 2^63) and,
  // like q * price, saturated to the i64 range when it does not fit: INT64_MAX above, INT64_MIN
  // below.
  ProcessorConfig c = risk_config();
  c.position_limit = 100'000;
  Driver d(c);
  EXPECT_EQ(outcome(d.buy(1, 10, 100'000)), "ACCEPT reason=0 flags=0x0");
  EXPECT_EQ(outcome(d.buy(1, 11, kI64Max)), "REJECT reason=5 flags=0x10");
  EXPECT_EQ(d.alerts(),
            (Alerts{absl::StrCat("POSITION_LIMIT value=", kI64Max, " threshold=100000")}));
  EXPECT_EQ(outcome(d.sell(2, 12, 100'000)), "ACCEPT reason=0 flags=0x0");
  EXPECT_EQ(outcome(d.sell(2, 13, kI64Max)), "REJECT reason=5 flags=0x10");
  EXPECT_EQ(d.alerts(),
            (Alerts{absl::StrCat("POSITION_LIMIT value=", kI64Min, " threshold=100000")}));
  // From flat, -INT64_MAX fits exactly: not saturated.
  EXPECT_EQ(outcome(d.sell(3, 14, kI64Max)), "REJECT reason=5 flags=0x10");
  EXPECT_EQ(d.alerts(),
            (Alerts{absl::StrCat("POSITION_LIMIT value=", -kI64Max, " threshold=100000")}));
  // Buying back from -100'000 by INT64_MAX: -100'000 + INT64_MAX fits.
  EXPECT_EQ(outcome(d.buy(2, 15, kI64Max)), "REJECT reason=5 flags=0x10");
  EXPECT_EQ(
      d.alerts(),
      (Alerts{absl::StrCat("POSITION_LIMIT value=", kI64Max - 100'000, " threshold=100000")}));
  EXPECT_EQ(d.shard().risk().position(1, 1), 100'000);
  EXPECT_EQ(d.shard().risk().position(2, 1), -100'000);
}

TEST(RiskRules, OrderRateCountsAcceptedOrdersInTheRateWindow) {
  ProcessorConfig c = risk_config();
  c.rate_limit = 2;
  c.rate_window_ns = 500;
  Driver d(c);
  EXPECT_EQ(outcome(d.buy(1, 1'000, 1)), "ACCEPT reason=0 flags=0x0");
  EXPECT_EQ(outcome(d.buy(1, 1'000, 1)), "ACCEPT reason=0 flags=0x0");
  EXPECT_EQ(outcome(d.buy(1, 1'000, 1)), "REJECT reason=6 flags=0x20");  // n + 1 = 3 > 2
  EXPECT_EQ(d.alerts(), (Alerts{"ORDER_RATE value=3 threshold=2"}));
  EXPECT_EQ(outcome(d.buy(2, 1'000, 1)), "ACCEPT reason=0 flags=0x0");  // per account
  // At 1'499 both accepted orders (at 1'000) are still in (999, 1'499].
  EXPECT_EQ(outcome(d.buy(1, 1'499, 1)), "REJECT reason=6 flags=0x20");
  EXPECT_EQ(d.alerts(), (Alerts{"ORDER_RATE value=3 threshold=2"}));
  // At 1'500 they are exactly rate_window old: out.
  EXPECT_EQ(outcome(d.buy(1, 1'500, 1)), "ACCEPT reason=0 flags=0x0");
  EXPECT_EQ(d.shard().risk().position(1, 1), 3);
}

TEST(RiskRules, OrderRateWindowEdgesMatchTheFraudWindow) {
  ProcessorConfig c = risk_config();
  c.rate_limit = 1;
  c.rate_window_ns = 500;
  {
    Driver d(c);
    d.buy(1, 1'000, 1);
    EXPECT_EQ(outcome(d.buy(1, 1'500, 1)), "ACCEPT reason=0 flags=0x0");  // t - w: out
  }
  {
    Driver d(c);
    d.buy(1, 1'001, 1);
    EXPECT_EQ(outcome(d.buy(1, 1'500, 1)), "REJECT reason=6 flags=0x20");  // t - w + 1: in
    EXPECT_EQ(d.alerts(), (Alerts{"ORDER_RATE value=2 threshold=1"}));
  }
  {
    Driver d(c);
    d.buy(1, 1'500, 1);
    EXPECT_EQ(outcome(d.buy(1, 1'500, 1)), "REJECT reason=6 flags=0x20");  // equal time: in
  }
  {
    Driver d(c);
    d.buy(1, 1'500, 1);
    // Earlier in the journal, later in time (not late: lateness 1 ms): not counted.
    EXPECT_EQ(outcome(d.buy(1, 1'499, 1)), "ACCEPT reason=0 flags=0x0");
    // Both count for an order at 1'500.
    EXPECT_EQ(outcome(d.buy(1, 1'500, 1)), "REJECT reason=6 flags=0x20");
    EXPECT_EQ(d.alerts(), (Alerts{"ORDER_RATE value=3 threshold=1"}));
  }
}

TEST(RiskRules, RejectedOrdersDoNotCountForRateOrMovePosition) {
  ProcessorConfig c = risk_config();
  c.rate_limit = 2;
  c.max_order_qty = 10;
  Driver d(c);
  EXPECT_EQ(outcome(d.buy(1, 1'000, 5)), "ACCEPT reason=0 flags=0x0");
  EXPECT_EQ(outcome(d.buy(1, 1'000, 11)), "REJECT reason=3 flags=0x4");
  EXPECT_EQ(outcome(d.buy(1, 1'000, 12)), "REJECT reason=3 flags=0x4");
  EXPECT_EQ(d.shard().risk().position(1, 1), 5);
  EXPECT_EQ(d.shard().risk().accepted().entries(), 1u);
  EXPECT_EQ(outcome(d.buy(1, 1'000, 5)), "ACCEPT reason=0 flags=0x0");  // n = 1
  // n = 2: ORDER_RATE fires; and the REJECT by rate does not count either.
  EXPECT_EQ(outcome(d.buy(1, 1'000, 5)), "REJECT reason=6 flags=0x20");
  EXPECT_EQ(outcome(d.buy(1, 1'000, 5)), "REJECT reason=6 flags=0x20");
  EXPECT_EQ(d.alerts(), (Alerts{"ORDER_RATE value=3 threshold=2"}));
  EXPECT_EQ(d.shard().risk().position(1, 1), 10);
}

TEST(RiskRules, AllFourRulesAtOnceSetAllFlagsReasonIsLowestAlertsInRuleOrder) {
  ProcessorConfig c = risk_config();
  c.max_order_qty = 40;
  c.max_order_notional = 4'000;
  c.position_limit = 50;
  c.rate_limit = 1;
  Driver d(c);
  EXPECT_EQ(outcome(d.buy(1, 100, 30, 10)), "ACCEPT reason=0 flags=0x0");
  // q 41 > 40; 41 * 100 = 4100 > 4000; 30 + 41 = 71 > 50; n + 1 = 2 > 1.
  EXPECT_EQ(outcome(d.buy(1, 100, 41, 100)), "REJECT reason=3 flags=0x3c");
  EXPECT_EQ(
      d.alerts(),
      (Alerts{"MAX_ORDER_QTY value=41 threshold=40", "MAX_ORDER_NOTIONAL value=4100 threshold=4000",
              "POSITION_LIMIT value=71 threshold=50", "ORDER_RATE value=2 threshold=1"}));
  EXPECT_EQ(d.shard().risk().position(1, 1), 30);
  EXPECT_EQ(d.shard().risk().accepted().entries(), 1u);
}

TEST(RiskRules, TwoRulesAtOnceReasonIsTheLowestCodeThatFired) {
  ProcessorConfig c = risk_config();
  c.max_order_notional = 4'000;
  c.rate_limit = 1;
  c.position_limit = 50;
  Driver d(c);
  d.buy(1, 100, 1, 1);
  // Notional and rate, not qty or position.
  EXPECT_EQ(outcome(d.sell(1, 100, 2, 2'001)), "REJECT reason=4 flags=0x28");
  EXPECT_EQ(d.alerts(), (Alerts{"MAX_ORDER_NOTIONAL value=4002 threshold=4000",
                                "ORDER_RATE value=2 threshold=1"}));
  // Position and rate only.
  EXPECT_EQ(outcome(d.buy(1, 100, 50, 1)), "REJECT reason=5 flags=0x30");
  EXPECT_EQ(d.alerts(),
            (Alerts{"POSITION_LIMIT value=51 threshold=50", "ORDER_RATE value=2 threshold=1"}));
}

TEST(RiskRules, SpecDefaultsApply) {
  Driver d;  // max qty 10000, notional 1e12, position 100000, rate 100 / s
  EXPECT_EQ(outcome(d.buy(1, 0, 10'000, 100'000'000)), "ACCEPT reason=0 flags=0x0");  // 1e12
  EXPECT_EQ(outcome(d.buy(1, 1, 10'001, 1)), "REJECT reason=3 flags=0x4");
  EXPECT_EQ(d.alerts(), (Alerts{"MAX_ORDER_QTY value=10001 threshold=10000"}));
  EXPECT_EQ(outcome(d.buy(1, 2, 10'000, 100'000'001)), "REJECT reason=4 flags=0x8");
  EXPECT_EQ(d.alerts(), (Alerts{"MAX_ORDER_NOTIONAL value=1000000010000 threshold=1000000000000"}));
  for (int i = 0; i < 9; ++i) d.buy(1, 3, 10'000);  // position 100'000
  EXPECT_EQ(d.shard().risk().position(1, 1), 100'000);
  EXPECT_EQ(outcome(d.buy(1, 4, 1)), "REJECT reason=5 flags=0x10");
  EXPECT_EQ(d.alerts(), (Alerts{"POSITION_LIMIT value=100001 threshold=100000"}));
  // 10 accepted so far within 1 s; 90 more (balanced) reach 100, the next is the 101st.
  for (int i = 0; i < 45; ++i) {
    EXPECT_EQ(d.sell(1, 5, 1).verdict, Verdict::kAccept);
    EXPECT_EQ(d.buy(1, 5, 1).verdict, Verdict::kAccept);
  }
  EXPECT_EQ(outcome(d.sell(1, 999'999'999, 1)), "REJECT reason=6 flags=0x20");
  EXPECT_EQ(d.alerts(), (Alerts{"ORDER_RATE value=101 threshold=100"}));
  // At 1 s + 1 the orders at 0 have left the window (the one at 0 was the only one there).
  EXPECT_EQ(outcome(d.sell(1, 1'000'000'000, 1)), "ACCEPT reason=0 flags=0x0");
}

TEST(FraudVelocity, SpecDefaultsApply) {
  Driver d;  // window 60 s, velocity 5, multiplier 3000, min history 3
  for (int i = 0; i < 5; ++i) d.tx(1, int64_t{i} * 10'000'000'000, 100);  // 0..40 s
  EXPECT_EQ(outcome(d.tx(1, 59'999'999'999, 100)), "FLAG reason=1 flags=0x1");
  EXPECT_EQ(d.alerts(), (Alerts{"VELOCITY_EXCEEDED value=6 threshold=5"}));
  // At 60 s the one at 0 is out: |P| = 5 (10..40 s and 59.99 s).
  EXPECT_EQ(outcome(d.tx(1, 60'000'000'000, 100)), "FLAG reason=1 flags=0x1");
  EXPECT_EQ(d.alerts(), (Alerts{"VELOCITY_EXCEEDED value=6 threshold=5"}));
  // A spike with a full window: 301 * 6 * 1000 > 3000 * 600.
  EXPECT_EQ(outcome(d.tx(1, 60'000'000'000, 301)), "FLAG reason=1 flags=0x3");
  EXPECT_EQ(d.alerts(), (Alerts{"VELOCITY_EXCEEDED value=7 threshold=5",
                                "AMOUNT_ANOMALY value=301 threshold=300"}));
  // Lateness 5 s: 55 s is fine after 60 s, 54.999999999 s is late.
  EXPECT_EQ(d.tx(2, 55'000'000'000, 1).verdict, Verdict::kAccept);
  EXPECT_EQ(d.tx(2, 54'999'999'999, 1).verdict, Verdict::kLate);
}

// ---------------------------------------------------------------------------------------------
// Eviction: bounded state that never changes an answer.

// The processors evict with cleanup timers, which fire at most one lateness late: a shard holds
// everything a future non-late event can see, and at most what one a lateness earlier could.
TEST(ShardEviction, StateHoldsWhatAFutureNonLateEventCanSeeAtMostALatenessLongerAndEmpties) {
  ProcessorConfig c;
  c.window_ns = 1'000;
  c.allowed_lateness_ns = 200;
  c.rate_window_ns = 500;
  c.velocity_max = 1'000'000;
  c.anomaly_min_history = 1'000'000;
  Driver d(c);
  // (time, account) of everything that joined state.
  std::vector<std::pair<int64_t, uint64_t>> history, accepted;
  auto visible = [](const std::vector<std::pair<int64_t, uint64_t>>& all, int64_t cutoff) {
    size_t n = 0;
    std::set<uint64_t> keys;
    for (const auto& [t, a] : all) {
      if (t > cutoff) {
        ++n;
        keys.insert(a);
      }
    }
    return std::pair{n, keys.size()};
  };
  size_t peak_history = 0;
  for (int64_t k = 0; k < 5'000; ++k) {
    const int64_t t = 1'000 + k * 7 - (k % 5) * 30;  // rising, out of order within lateness
    const uint64_t account = 1 + static_cast<uint64_t>(k % 11);
    if (k % 3 == 0) {
      ASSERT_EQ(d.buy(account, t, 1).verdict, Verdict::kAccept);
      accepted.emplace_back(t, account);
    } else {
      ASSERT_EQ(d.tx(account, t, 10).verdict, Verdict::kAccept);
      history.emplace_back(t, account);
    }
    if (k % 50 == 0) d.watermark(t + 100);
    const int64_t max_t = d.shard().max_time();
    // A future non-late event has time >= maxT - lateness and sees p only if p > time - window.
    const auto [hn, hk] = visible(history, max_t - 200 - 1'000);
    const auto [hn_held, hk_held] = visible(history, max_t - 2 * 200 - 1'000);
    EXPECT_GE(d.shard().fraud().history().entries(), hn) << "k " << k;
    EXPECT_LE(d.shard().fraud().history().entries(), hn_held) << "k " << k;
    EXPECT_GE(d.shard().fraud().history().keys(), hk) << "k " << k;
    EXPECT_LE(d.shard().fraud().history().keys(), hk_held) << "k " << k;
    const auto [an, ak] = visible(accepted, max_t - 200 - 500);
    const auto [an_held, ak_held] = visible(accepted, max_t - 2 * 200 - 500);
    EXPECT_GE(d.shard().risk().accepted().entries(), an) << "k " << k;
    EXPECT_LE(d.shard().risk().accepted().entries(), an_held) << "k " << k;
    EXPECT_GE(d.shard().risk().accepted().keys(), ak) << "k " << k;
    EXPECT_LE(d.shard().risk().accepted().keys(), ak_held) << "k " << k;
    peak_history = std::max(peak_history, d.shard().fraud().history().entries());
  }
  EXPECT_LT(peak_history, 300u);  // bounded by the window, not by the 3'333 transactions
  // Everything expires once maxT passes the last time + lateness + window.
  d.watermark(d.shard().max_time() + 1'200);
  EXPECT_EQ(d.shard().fraud().history().entries(), 0u);
  EXPECT_EQ(d.shard().fraud().history().keys(), 0u);
  EXPECT_EQ(d.shard().risk().accepted().entries(), 0u);
  EXPECT_EQ(d.shard().risk().accepted().keys(), 0u);
  // Positions are not windowed state: they stay.
  EXPECT_GT(d.shard().risk().position(1, 1), 0);
}

TEST(ShardEviction, AnEntryStaysWhileANonLateEventCanStillSeeIt) {
  ProcessorConfig c = velocity_config(1);
  c.window_ns = 1'000;
  c.allowed_lateness_ns = 200;
  Driver d(c);
  d.tx(1, 1'000, 10);
  d.watermark(2'199);  // the earliest non-late time is 1'999, whose window (999, 1'999] has 1'000
  EXPECT_EQ(d.shard().fraud().history().entries(), 1u);
  EXPECT_EQ(probe_window(d, 1, 1'999), 1);
  d.watermark(2'200);  // earliest non-late 2'000: window (1'000, 2'000] no longer has it
  EXPECT_EQ(d.shard().fraud().history().entries(), 1u);  // only 1'999 is left
  EXPECT_EQ(probe_window(d, 1, 2'000), 1);               // 1'999
  d.watermark(1'000'000);
  EXPECT_EQ(d.shard().fraud().history().keys(), 0u);
  EXPECT_EQ(probe_window(d, 1, 999'800), 0);
}

TEST(ShardEviction, AnotherEntrysTimerDoesNotEvictAStillVisibleEntry) {
  ProcessorConfig c = velocity_config(1);
  c.window_ns = 1'000;
  c.allowed_lateness_ns = 200;
  Driver d(c);
  d.tx(1, 1'000, 10);
  d.tx(1, 1'001, 10);
  d.watermark(2'200);  // 1'000 expires; 1'001 is in (1'000, 2'000] of a non-late event at 2'000
  EXPECT_EQ(d.shard().fraud().history().entries(), 1u);
  EXPECT_EQ(probe_window(d, 1, 2'000), 1);
}

TEST(ShardEviction, AnotherOrdersTimerDoesNotEvictAStillVisibleRateEntry) {
  ProcessorConfig c = risk_config();
  c.rate_limit = 2;
  c.rate_window_ns = 500;
  c.allowed_lateness_ns = 200;
  Driver d(c);
  d.buy(1, 1'000, 1);
  d.buy(1, 1'001, 1);
  d.watermark(1'700);  // 1'000 expires; 1'001 is in (1'000, 1'500] of a non-late order at 1'500
  EXPECT_EQ(d.shard().risk().accepted().entries(), 1u);
  EXPECT_EQ(outcome(d.buy(1, 1'500, 1)), "ACCEPT reason=0 flags=0x0");   // n = 1
  EXPECT_EQ(outcome(d.buy(1, 1'500, 1)), "REJECT reason=6 flags=0x20");  // n = 2
  EXPECT_EQ(d.alerts(), (Alerts{"ORDER_RATE value=3 threshold=2"}));
}

TEST(ShardEviction, RateEntryStaysWhileANonLateOrderCanStillSeeIt) {
  ProcessorConfig c = risk_config();
  c.rate_limit = 1;
  c.rate_window_ns = 500;
  c.allowed_lateness_ns = 200;
  Driver d(c);
  d.buy(1, 1'000, 1);
  d.watermark(1'699);  // earliest non-late 1'499: window (999, 1'499] has 1'000
  EXPECT_EQ(outcome(d.buy(1, 1'499, 1)), "REJECT reason=6 flags=0x20");
  d.watermark(1'700);
  EXPECT_EQ(d.shard().risk().accepted().entries(), 0u);
  EXPECT_EQ(outcome(d.buy(1, 1'500, 1)), "ACCEPT reason=0 flags=0x0");
  d.watermark(1'000'000);
  EXPECT_EQ(d.shard().risk().accepted().keys(), 0u);
  EXPECT_EQ(d.shard().risk().position(1, 1), 2);
}

TEST(ShardEviction, EventTimesNearInt64MaxDoNotOverflowWindowsOrTimers) {
  ProcessorConfig c = velocity_config(2);  // window 1000; default risk limits
  c.allowed_lateness_ns = 1'000;
  Driver d(c);
  const int64_t top = kI64Max;
  EXPECT_EQ(outcome(d.tx(1, top - 900, 10)), "ACCEPT reason=0 flags=0x0");
  EXPECT_EQ(outcome(d.tx(1, top - 10, 10)), "ACCEPT reason=0 flags=0x0");  // |P| = 1
  EXPECT_EQ(outcome(d.tx(1, top, 10)), "FLAG reason=1 flags=0x1");         // |P| = 2
  EXPECT_EQ(d.alerts(), (Alerts{"VELOCITY_EXCEEDED value=3 threshold=2"}));
  EXPECT_EQ(d.shard().max_time(), top);
  // maxT - lateness = top - 1000: not late; its window (top - 2000, top - 1000] is empty.
  EXPECT_EQ(outcome(d.tx(1, top - 1'000, 10)), "ACCEPT reason=0 flags=0x0");
  EXPECT_EQ(outcome(d.tx(1, top - 1'001, 10)), "LATE reason=0 flags=0x0");
  d.watermark(top);
  // All four are visible to a future non-late event (time >= top - 1000, window 1000).
  EXPECT_EQ(d.shard().fraud().history().entries(), 4u);
  EXPECT_EQ(outcome(d.buy(1, top, kI64Max, kI64Max)), "REJECT reason=3 flags=0x1c");
  EXPECT_EQ(d.alerts(),
            (Alerts{absl::StrCat("MAX_ORDER_QTY value=", kI64Max, " threshold=10000"),
                    absl::StrCat("MAX_ORDER_NOTIONAL value=", kI64Max, " threshold=1000000000000"),
                    absl::StrCat("POSITION_LIMIT value=", kI64Max, " threshold=100000")}));
  EXPECT_EQ(outcome(d.buy(1, top, 1, 1)), "ACCEPT reason=0 flags=0x0");
  EXPECT_EQ(outcome(d.sell(1, top - 1'000, 2, 1)), "ACCEPT reason=0 flags=0x0");
  EXPECT_EQ(d.shard().risk().position(1, 1), -1);
}

// ---------------------------------------------------------------------------------------------
// Lifetime: Shard is implicitly copyable and movable (nothing deletes those constructors), so a
// copy or a moved-to Shard must work on its own.

// Builds shard `a` with the SPEC defaults, makes `b` from it (copy or move), then destroys `a`
// and builds a new Shard in the same storage with velocity_max 1 (well defined: the new object
// transparently replaces the old one). `b` must still answer with the defaults: two
// transactions of one account are both ACCEPTed (|P| + 1 = 2 <= 5). If Shard stops being
// copyable / movable (the other fix), there is nothing to check.
template <typename S, bool kMove>
void check_made_from_other_shard_keeps_its_config() {
  if constexpr (kMove ? std::is_move_constructible_v<S> : std::is_copy_constructible_v<S>) {
    ProcessorConfig strict;
    strict.velocity_max = 1;
    Recorder sink_a;  // both shards emit here: b keeps a's sink reference, which is fine
    std::optional<S> a(std::in_place, ProcessorConfig{}, 0u, 1u, sink_a);
    std::optional<S> b;
    if constexpr (kMove) {
      b.emplace(std::move(*a));
    } else {
      b.emplace(*a);
    }
    a.reset();
    a.emplace(strict, 0u, 1u, sink_a);
    std::array<std::byte, wire::kMaxFrameSize> buf{};
    for (int64_t seq = 1; seq <= 2; ++seq) {
      const size_t n = wire::encode(
          wire::Transaction{
              .client_seq = 1, .event_time_ns = seq, .account_id = 1, .amount_minor = 10},
          buf);
      b->on_event(seq, 1, 0, std::span<const std::byte>(buf.data(), n));
    }
    ASSERT_EQ(sink_a.decisions.size(), 2u);
    EXPECT_EQ(outcome(sink_a.decisions[1]), "ACCEPT reason=0 flags=0x0")
        << "the second transaction was judged with velocity_max 1: the "
        << (kMove ? "moved" : "copied")
        << " Shard's processors read the config of the Shard it was made from (they hold a "
           "reference to that Shard's config_)";
  }
}

TEST(ShardLifetime, ACopiedShardDoesNotReadTheOriginalShardsConfig) {
  check_made_from_other_shard_keeps_its_config<Shard, false>();
}

TEST(ShardLifetime, AMovedShardDoesNotReadTheMovedFromShardsConfig) {
  check_made_from_other_shard_keeps_its_config<Shard, true>();
}

// ---------------------------------------------------------------------------------------------
// Sharding: every shard sees every event, answers only for its accounts, agrees on maxT.

uint64_t account_on_shard(uint32_t index, uint32_t count, uint64_t from) {
  for (uint64_t a = from;; ++a) {
    if (shard_of(a, count) == index) return a;
  }
}

TEST(ShardOwnership, EachShardAnswersOnlyForItsAccountsAndAllAgreeOnMaxT) {
  ProcessorConfig c;
  c.allowed_lateness_ns = 100;
  c.velocity_max = 2;
  c.rate_limit = 2;
  c.rate_window_ns = 1'000;
  constexpr uint32_t kShards = 3;
  std::vector<uint64_t> accounts;
  for (uint32_t i = 0; i < kShards; ++i) {
    accounts.push_back(account_on_shard(i, kShards, 1 + 1000 * i));
    accounts.push_back(account_on_shard(i, kShards, accounts.back() + 1));
  }
  std::vector<Recorder> sinks(kShards);
  std::vector<std::unique_ptr<Shard>> shards;
  for (uint32_t i = 0; i < kShards; ++i) {
    shards.push_back(std::make_unique<Shard>(c, i, kShards, sinks[i]));
  }
  Recorder single_sink;
  Shard single(c, 0, 1, single_sink);

  for (int64_t k = 0; k < 600; ++k) {
    const int64_t seq = k + 1;
    const uint64_t account = accounts[static_cast<size_t>(k * 7 % 6)];
    // Every 4th event is late (150 behind the previous one, lateness 100), and the maxT it is
    // late against usually came from another shard's account.
    const int64_t t = k * 40 - (k % 4 == 3 ? 150 : 0);
    std::array<std::byte, wire::kMaxFrameSize> buf{};
    size_t n;
    if (k % 5 == 4) {
      n = wire::encode(wire::Watermark{.event_time_ns = t + 50}, buf);
    } else if (k % 2 == 1) {
      n = wire::encode(wire::Transaction{.client_seq = static_cast<uint64_t>(seq),
                                         .event_time_ns = t,
                                         .account_id = account,
                                         .amount_minor = 10 + (k % 13 == 0 ? 1'000 : 0)},
                       buf);
    } else {
      n = wire::encode(wire::Order{.client_seq = static_cast<uint64_t>(seq),
                                   .event_time_ns = t,
                                   .account_id = account,
                                   .order_id = 1,
                                   .instrument_id = 1,
                                   .side = static_cast<uint8_t>(k % 4 == 0 ? 1 : 2),
                                   .quantity = 1,
                                   .price = 1},
                       buf);
    }
    const std::span<const std::byte> frame(buf.data(), n);
    single.on_event(seq, kClient, kConnection, frame);
    for (auto& s : shards) s->on_event(seq, kClient, kConnection, frame);
    for (auto& s : shards) ASSERT_EQ(s->max_time(), single.max_time()) << "seq " << seq;
  }

  std::map<int64_t, DecisionRecord> merged;
  std::map<int64_t, Alerts> merged_alerts, single_alerts;
  for (uint32_t i = 0; i < kShards; ++i) {
    int late = 0;
    for (const DecisionRecord& d : sinks[i].decisions) {
      EXPECT_EQ(shard_of(d.account_id, kShards), i) << "shard " << i << " answered seq " << d.seq;
      EXPECT_TRUE(merged.emplace(d.seq, d).second) << "seq " << d.seq << " answered twice";
      late += d.verdict == Verdict::kLate;
    }
    EXPECT_GT(late, 0) << "shard " << i;
    for (const AlertRecord& a : sinks[i].alerts) {
      EXPECT_EQ(shard_of(a.account_id, kShards), i);
      merged_alerts[a.seq].push_back(describe(a));
    }
    EXPECT_LE(shards[i]->fraud().history().keys(), 2u);
  }
  for (const AlertRecord& a : single_sink.alerts) single_alerts[a.seq].push_back(describe(a));
  ASSERT_EQ(merged.size(), single_sink.decisions.size());
  for (const DecisionRecord& want : single_sink.decisions) {
    const DecisionRecord& got = merged[want.seq];
    EXPECT_TRUE(got == want && got.connection_id == want.connection_id)
        << "seq " << want.seq << ": " << outcome(got) << " vs " << outcome(want);
  }
  EXPECT_EQ(merged_alerts, single_alerts);
  EXPECT_FALSE(single_alerts.empty());
}

}  // namespace
}  // namespace sluice
