// The events `sluice load` sends: valid, reproducible, mostly accepted under SPEC 2's default
// rules, with the configured share of rule-firing values and the configured account skew.
#include "tools/load_workload.h"

#include <array>
#include <cstdint>
#include <map>
#include <span>
#include <vector>

#include "core/wire_format.h"
#include "gtest/gtest.h"

namespace sluice::tools {
namespace {

struct Event {
  bool order = false;
  wire::Transaction t;
  wire::Order o;
};

std::vector<Event> draw(const WorkloadOptions& options, uint64_t stream, int n) {
  LoadWorkload w(options, stream);
  std::vector<Event> events;
  std::array<std::byte, LoadWorkload::kMaxEventSize> buffer{};
  for (int i = 0; i < n; ++i) {
    const size_t length = w.encode_next(static_cast<uint64_t>(i + 1), 1'000 + i, buffer);
    const std::span<const std::byte> frame(buffer.data(), length);
    const wire::FrameHeader h = wire::decode_header(buffer.data());
    EXPECT_EQ(h.length, length);
    EXPECT_EQ(h.version, wire::kVersion);
    Event e;
    e.order = h.type == static_cast<uint8_t>(wire::FrameType::kOrder);
    if (e.order) {
      EXPECT_EQ(length, wire::kHeaderSize + wire::kOrderPayload);
      e.o = wire::decode_order(frame);
    } else {
      EXPECT_EQ(h.type, static_cast<uint8_t>(wire::FrameType::kTransaction));
      e.t = wire::decode_transaction(frame);
    }
    events.push_back(e);
  }
  return events;
}

TEST(LoadMix, ParsesTheThreeNamesAndRejectsOthers) {
  EXPECT_EQ(*parse_load_mix("fraud"), LoadMix::kFraud);
  EXPECT_EQ(*parse_load_mix("risk"), LoadMix::kRisk);
  EXPECT_EQ(*parse_load_mix("both"), LoadMix::kBoth);
  EXPECT_FALSE(parse_load_mix("Fraud").ok());
  EXPECT_FALSE(parse_load_mix("").ok());
  EXPECT_EQ(load_mix_name(LoadMix::kBoth), "both");
}

TEST(LoadWorkload, EventsCarryTheGivenSeqAndTimeAndAreValid) {
  for (LoadMix mix : {LoadMix::kFraud, LoadMix::kRisk, LoadMix::kBoth}) {
    const std::vector<Event> events = draw({.mix = mix, .accounts = 500}, 3, 2000);
    for (size_t i = 0; i < events.size(); ++i) {
      const Event& e = events[i];
      if (e.order) {
        EXPECT_EQ(e.o.client_seq, i + 1);
        EXPECT_EQ(e.o.event_time_ns, static_cast<int64_t>(1'000 + i));
        EXPECT_TRUE(wire::is_valid(e.o));
        EXPECT_GE(e.o.account_id, 1u);
        EXPECT_LE(e.o.account_id, 500u);
        EXPECT_GE(e.o.instrument_id, 1u);
        EXPECT_LE(e.o.instrument_id, LoadWorkload::kInstruments);
      } else {
        EXPECT_EQ(e.t.client_seq, i + 1);
        EXPECT_TRUE(wire::is_valid(e.t));
        EXPECT_GE(e.t.account_id, 1u);
        EXPECT_LE(e.t.account_id, 500u);
      }
    }
  }
}

TEST(LoadWorkload, MixDecidesTheEventTypes) {
  int orders = 0;
  for (const Event& e : draw({.mix = LoadMix::kFraud}, 0, 1000)) orders += e.order;
  EXPECT_EQ(orders, 0);
  orders = 0;
  for (const Event& e : draw({.mix = LoadMix::kRisk}, 0, 1000)) orders += e.order;
  EXPECT_EQ(orders, 1000);
  orders = 0;
  for (const Event& e : draw({.mix = LoadMix::kBoth}, 0, 10000)) orders += e.order;
  EXPECT_NEAR(orders, 5000, 300);
}

TEST(LoadWorkload, SameSeedAndStreamRepeatDifferentStreamsDiffer) {
  const WorkloadOptions options{.mix = LoadMix::kBoth, .seed = 99};
  const std::vector<Event> a = draw(options, 1, 200);
  const std::vector<Event> b = draw(options, 1, 200);
  const std::vector<Event> c = draw(options, 2, 200);
  int same_as_other_stream = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a[i].order, b[i].order);
    EXPECT_EQ(a[i].order ? a[i].o.account_id : a[i].t.account_id,
              b[i].order ? b[i].o.account_id : b[i].t.account_id);
    EXPECT_EQ(a[i].t.amount_minor, b[i].t.amount_minor);
    same_as_other_stream += (a[i].order ? a[i].o.account_id : a[i].t.account_id) ==
                            (c[i].order ? c[i].o.account_id : c[i].t.account_id);
  }
  EXPECT_LT(same_as_other_stream, 20);
}

// SPEC 2.1's AMOUNT_ANOMALY: x * |P| * 1000 > 3000 * sum(P). Without rule-firing values no
// amount exceeds 3x its account's running mean, whatever the history.
TEST(LoadWorkload, NormalAmountsNeverLookAnomalous) {
  const std::vector<Event> events = draw({.accounts = 20, .rule_rate = 0.0}, 0, 20000);
  std::map<uint64_t, std::pair<int64_t, int64_t>> history;  // account -> (count, sum)
  for (const Event& e : events) {
    auto& [count, sum] = history[e.t.account_id];
    if (count >= 3) {
      ASSERT_LE(e.t.amount_minor * count * 1000, 3000 * sum);
    }
    ++count;
    sum += e.t.amount_minor;
  }
}

TEST(LoadWorkload, RuleRateSetsTheShareOfRuleFiringValues) {
  int anomalies = 0;
  for (const Event& e : draw({.rule_rate = 0.02}, 0, 50000)) {
    anomalies += e.t.amount_minor == LoadWorkload::typical_amount(e.t.account_id) * 10;
  }
  EXPECT_NEAR(anomalies, 1000, 150);

  int too_big = 0;
  int too_much = 0;
  for (const Event& e : draw({.mix = LoadMix::kRisk, .rule_rate = 0.02}, 0, 50000)) {
    if (e.o.quantity > 10'000) ++too_big;
    // Exact in a double: both factors and the product stay far below 2^53.
    if (static_cast<double>(e.o.quantity) * static_cast<double>(e.o.price) > 1e12) ++too_much;
  }
  EXPECT_NEAR(too_big + too_much, 1000, 150);
  EXPECT_GT(too_much, 100);  // a quarter of them

  for (const Event& e : draw({.mix = LoadMix::kRisk, .rule_rate = 0.0}, 0, 20000)) {
    EXPECT_LE(e.o.quantity, 100);
    EXPECT_LE(static_cast<double>(e.o.quantity) * static_cast<double>(e.o.price), 1e12);
  }
}

TEST(LoadWorkload, SkewMakesLowAccountIdsHot) {
  std::map<uint64_t, int> uniform;
  std::map<uint64_t, int> skewed;
  for (const Event& e : draw({.accounts = 1000, .skew = 0.0}, 0, 20000)) ++uniform[e.t.account_id];
  for (const Event& e : draw({.accounts = 1000, .skew = 1.0}, 0, 20000)) ++skewed[e.t.account_id];
  // Uniform: ~20 per account. Zipf s=1 over 1000: P(1) = 1 / H(1000) ~ 13.4%.
  EXPECT_LT(uniform[1], 60);
  EXPECT_NEAR(skewed[1], 20000 * 0.1336, 200);
  EXPECT_GT(skewed[1], skewed[2]);
  EXPECT_GT(skewed[2], skewed[10]);
}

TEST(LoadWorkload, OrderIdsAreUniquePerStream) {
  const std::vector<Event> a = draw({.mix = LoadMix::kRisk}, 0, 100);
  const std::vector<Event> b = draw({.mix = LoadMix::kRisk}, 1, 100);
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_NE(a[i].o.order_id, b[i].o.order_id);
    if (i > 0) {
      EXPECT_NE(a[i].o.order_id, a[i - 1].o.order_id);
    }
  }
}

}  // namespace
}  // namespace sluice::tools
