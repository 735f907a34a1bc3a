#include "core/wire_format.h"

#include <array>
#include <cstdint>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace sluice::wire {
namespace {

constexpr uint64_t kU64Max = std::numeric_limits<uint64_t>::max();
constexpr int64_t kI64Max = std::numeric_limits<int64_t>::max();
constexpr int64_t kI64Min = std::numeric_limits<int64_t>::min();

// A frame buffer pre-filled with garbage, so encoders must write every byte they claim.
struct Buffer {
  std::array<std::byte, kMaxFrameSize> bytes;
  Buffer() { bytes.fill(std::byte{0xAB}); }
  std::span<std::byte> out() { return bytes; }
  std::span<const std::byte> frame(size_t n) const { return std::span<const std::byte>(bytes).first(n); }
  template <typename T>
  T at(size_t offset) const { return load<T>(bytes.data() + offset); }
};

void expect_header(const Buffer& b, size_t length, FrameType type) {
  const FrameHeader h = decode_header(b.bytes.data());
  EXPECT_EQ(h.length, length);
  EXPECT_EQ(h.type, static_cast<uint8_t>(type));
  EXPECT_EQ(h.version, kVersion);
  EXPECT_EQ(length, kHeaderSize + min_payload(static_cast<uint8_t>(type)));
}

// ---- Round trips with extreme values ---------------------------------------------------------

TEST(WireFormat, HelloRoundTripsExtremes) {
  for (const Hello m : {Hello{kU64Max, 0xFFFFFFFFu}, Hello{0, 0}, Hello{1, 0x80000000u}}) {
    Buffer b;
    const size_t n = encode(m, b.out());
    expect_header(b, n, FrameType::kHello);
    const Hello got = decode_hello(b.frame(n));
    EXPECT_EQ(got.client_id, m.client_id);
    EXPECT_EQ(got.flags, m.flags);
  }
}

TEST(WireFormat, TransactionRoundTripsExtremes) {
  for (const Transaction m :
       {Transaction{kU64Max, kI64Max, kU64Max, kI64Max, 0xFFFFFFFFu, 0xFFFF, 0xFF},
        Transaction{0, kI64Min, 0, kI64Min, 0, 0, 0},
        Transaction{1, -1, 2, -1, 3, 978, 7}}) {
    Buffer b;
    const size_t n = encode(m, b.out());
    expect_header(b, n, FrameType::kTransaction);
    const Transaction got = decode_transaction(b.frame(n));
    EXPECT_EQ(got.client_seq, m.client_seq);
    EXPECT_EQ(got.event_time_ns, m.event_time_ns);
    EXPECT_EQ(got.account_id, m.account_id);
    EXPECT_EQ(got.amount_minor, m.amount_minor);
    EXPECT_EQ(got.merchant_id, m.merchant_id);
    EXPECT_EQ(got.currency, m.currency);
    EXPECT_EQ(got.channel, m.channel);
  }
}

TEST(WireFormat, OrderRoundTripsExtremes) {
  for (const Order m : {Order{kU64Max, kI64Max, kU64Max, kU64Max, 0xFFFFFFFFu, 0xFF, kI64Max,
                              kI64Max},
                        Order{0, kI64Min, 0, 0, 0, 0, kI64Min, kI64Min},
                        Order{5, 6, 7, 8, 9, 1, 10, 11}}) {
    Buffer b;
    const size_t n = encode(m, b.out());
    expect_header(b, n, FrameType::kOrder);
    const Order got = decode_order(b.frame(n));
    EXPECT_EQ(got.client_seq, m.client_seq);
    EXPECT_EQ(got.event_time_ns, m.event_time_ns);
    EXPECT_EQ(got.account_id, m.account_id);
    EXPECT_EQ(got.order_id, m.order_id);
    EXPECT_EQ(got.instrument_id, m.instrument_id);
    EXPECT_EQ(got.side, m.side);
    EXPECT_EQ(got.quantity, m.quantity);
    EXPECT_EQ(got.price, m.price);
  }
}

TEST(WireFormat, WatermarkSubscribeAndHelloAckRoundTripExtremes) {
  for (const int64_t t : {kI64Min, int64_t{-1}, int64_t{0}, kI64Max}) {
    Buffer b;
    const size_t n = encode(Watermark{t}, b.out());
    expect_header(b, n, FrameType::kWatermark);
    EXPECT_EQ(decode_watermark(b.frame(n)).event_time_ns, t);
  }
  for (const uint32_t topics : {0u, 1u, 0xFFFFFFFFu}) {
    Buffer b;
    const size_t n = encode(Subscribe{topics}, b.out());
    expect_header(b, n, FrameType::kSubscribe);
    EXPECT_EQ(decode_subscribe(b.frame(n)).topics, topics);
  }
  for (const HelloAck m : {HelloAck{kU64Max, kU64Max}, HelloAck{0, 0}}) {
    Buffer b;
    const size_t n = encode(m, b.out());
    expect_header(b, n, FrameType::kHelloAck);
    const HelloAck got = decode_hello_ack(b.frame(n));
    EXPECT_EQ(got.client_id, m.client_id);
    EXPECT_EQ(got.last_client_seq, m.last_client_seq);
  }
}

TEST(WireFormat, DecisionAndAlertRoundTripExtremes) {
  for (const Decision m : {Decision{kU64Max, kU64Max, Verdict::kInvalid, 0xFF, 0xFFFFFFFFu},
                           Decision{0, 0, Verdict::kAccept, 0, 0}}) {
    Buffer b;
    const size_t n = encode(m, b.out());
    expect_header(b, n, FrameType::kDecision);
    const Decision got = decode_decision(b.frame(n));
    EXPECT_EQ(got.client_seq, m.client_seq);
    EXPECT_EQ(got.seq, m.seq);
    EXPECT_EQ(got.verdict, m.verdict);
    EXPECT_EQ(got.reason, m.reason);
    EXPECT_EQ(got.flags, m.flags);
  }
  for (const Alert m : {Alert{kU64Max, kI64Max, kU64Max, Rule::kOrderRate, kI64Max, kI64Max},
                        Alert{0, kI64Min, 0, Rule::kNone, kI64Min, kI64Min}}) {
    Buffer b;
    const size_t n = encode(m, b.out());
    expect_header(b, n, FrameType::kAlert);
    const Alert got = decode_alert(b.frame(n));
    EXPECT_EQ(got.seq, m.seq);
    EXPECT_EQ(got.event_time_ns, m.event_time_ns);
    EXPECT_EQ(got.account_id, m.account_id);
    EXPECT_EQ(got.rule, m.rule);
    EXPECT_EQ(got.value, m.value);
    EXPECT_EQ(got.threshold, m.threshold);
  }
}

TEST(WireFormat, LongerPayloadOfANewerVersionDecodesTheKnownFields) {
  Buffer b;
  const size_t n = encode(Transaction{1, 2, 3, 4, 5, 6, 7}, b.out());
  encode_header(b.bytes.data(), FrameHeader{static_cast<uint16_t>(n + 16), 0x02, 2});
  const Transaction got = decode_transaction(b.frame(n + 16));
  EXPECT_EQ(got.amount_minor, 4);
  EXPECT_EQ(got.channel, 7);
}

// ---- Byte offsets against SPEC section 1 (frame offset = 4 + payload offset) ----------------

TEST(WireFormat, TransactionFieldsSitAtTheSpecOffsets) {
  Buffer b;
  encode(Transaction{0x1111111111111111, 0x2222222222222222, 0x3333333333333333,
                     0x4444444444444444, 0x55555555, 0x6666, 0x77},
         b.out());
  EXPECT_EQ(b.at<uint16_t>(0), 44u);
  EXPECT_EQ(b.at<uint8_t>(2), 0x02);
  EXPECT_EQ(b.at<uint8_t>(3), 1);
  EXPECT_EQ(b.at<uint64_t>(4), 0x1111111111111111u);   // client_seq
  EXPECT_EQ(b.at<int64_t>(12), 0x2222222222222222);    // event_time_ns
  EXPECT_EQ(b.at<uint64_t>(20), 0x3333333333333333u);  // account_id
  EXPECT_EQ(b.at<int64_t>(28), 0x4444444444444444);    // amount_minor: payload 24
  EXPECT_EQ(b.at<uint32_t>(36), 0x55555555u);          // merchant_id
  EXPECT_EQ(b.at<uint16_t>(40), 0x6666u);              // currency
  EXPECT_EQ(b.at<uint8_t>(42), 0x77);                  // channel
  EXPECT_EQ(b.at<uint8_t>(43), 0);                     // reserved
  EXPECT_EQ(b.at<uint8_t>(44), 0xAB) << "wrote past the frame";
}

TEST(WireFormat, OrderFieldsSitAtTheSpecOffsets) {
  Buffer b;
  encode(Order{0x1111111111111111, 0x2222222222222222, 0x3333333333333333, 0x4444444444444444,
               0x55555555, 2, 0x6666666666666666, 0x7777777777777777},
         b.out());
  EXPECT_EQ(b.at<uint16_t>(0), 60u);
  EXPECT_EQ(b.at<uint8_t>(2), 0x03);
  EXPECT_EQ(b.at<uint64_t>(4), 0x1111111111111111u);   // client_seq
  EXPECT_EQ(b.at<int64_t>(12), 0x2222222222222222);    // event_time_ns
  EXPECT_EQ(b.at<uint64_t>(20), 0x3333333333333333u);  // account_id
  EXPECT_EQ(b.at<uint64_t>(28), 0x4444444444444444u);  // order_id
  EXPECT_EQ(b.at<uint32_t>(36), 0x55555555u);          // instrument_id
  EXPECT_EQ(b.at<uint8_t>(40), 2);                     // side
  EXPECT_EQ(b.at<uint8_t>(41), 0);                     // reserved[3]
  EXPECT_EQ(b.at<uint8_t>(42), 0);
  EXPECT_EQ(b.at<uint8_t>(43), 0);
  EXPECT_EQ(b.at<int64_t>(44), 0x6666666666666666);    // quantity
  EXPECT_EQ(b.at<int64_t>(52), 0x7777777777777777);    // price
  EXPECT_EQ(b.at<uint8_t>(60), 0xAB) << "wrote past the frame";
}

TEST(WireFormat, OtherFramesFieldsSitAtTheSpecOffsets) {
  {
    Buffer b;
    encode(Hello{0x1111111111111111, 0x22222222}, b.out());
    EXPECT_EQ(b.at<uint16_t>(0), 20u);
    EXPECT_EQ(b.at<uint64_t>(4), 0x1111111111111111u);
    EXPECT_EQ(b.at<uint32_t>(12), 0x22222222u);
    EXPECT_EQ(b.at<uint32_t>(16), 0u);  // reserved
  }
  {
    Buffer b;
    encode(Watermark{0x1111111111111111}, b.out());
    EXPECT_EQ(b.at<uint16_t>(0), 12u);
    EXPECT_EQ(b.at<uint8_t>(2), 0x04);
    EXPECT_EQ(b.at<int64_t>(4), 0x1111111111111111);
  }
  {
    Buffer b;
    encode(Subscribe{0x11111111}, b.out());
    EXPECT_EQ(b.at<uint16_t>(0), 8u);
    EXPECT_EQ(b.at<uint32_t>(4), 0x11111111u);
  }
  {
    Buffer b;
    encode(HelloAck{0x1111111111111111, 0x2222222222222222}, b.out());
    EXPECT_EQ(b.at<uint16_t>(0), 20u);
    EXPECT_EQ(b.at<uint8_t>(2), 0x81);
    EXPECT_EQ(b.at<uint64_t>(4), 0x1111111111111111u);
    EXPECT_EQ(b.at<uint64_t>(12), 0x2222222222222222u);
  }
  {
    Buffer b;
    encode(Decision{0x1111111111111111, 0x2222222222222222, Verdict::kLate, 0x33, 0x44444444},
           b.out());
    EXPECT_EQ(b.at<uint16_t>(0), 28u);
    EXPECT_EQ(b.at<uint8_t>(2), 0x82);
    EXPECT_EQ(b.at<uint64_t>(4), 0x1111111111111111u);   // client_seq
    EXPECT_EQ(b.at<uint64_t>(12), 0x2222222222222222u);  // seq
    EXPECT_EQ(b.at<uint8_t>(20), 4);                     // verdict
    EXPECT_EQ(b.at<uint8_t>(21), 0x33);                  // reason
    EXPECT_EQ(b.at<uint16_t>(22), 0u);                   // reserved
    EXPECT_EQ(b.at<uint32_t>(24), 0x44444444u);          // flags
  }
  {
    Buffer b;
    encode(Alert{0x1111111111111111, 0x2222222222222222, 0x3333333333333333,
                 Rule::kPositionLimit, 0x4444444444444444, 0x5555555555555555},
           b.out());
    EXPECT_EQ(b.at<uint16_t>(0), 52u);
    EXPECT_EQ(b.at<uint8_t>(2), 0x83);
    EXPECT_EQ(b.at<uint64_t>(4), 0x1111111111111111u);   // seq
    EXPECT_EQ(b.at<int64_t>(12), 0x2222222222222222);    // event_time_ns
    EXPECT_EQ(b.at<uint64_t>(20), 0x3333333333333333u);  // account_id
    EXPECT_EQ(b.at<uint16_t>(28), 5u);                   // rule
    EXPECT_EQ(b.at<uint16_t>(30), 0u);                   // reserved
    EXPECT_EQ(b.at<uint32_t>(32), 0u);                   // reserved
    EXPECT_EQ(b.at<int64_t>(36), 0x4444444444444444);    // value
    EXPECT_EQ(b.at<int64_t>(44), 0x5555555555555555);    // threshold
  }
}

// ---- ERROR frames ----------------------------------------------------------------------------

TEST(WireFormat, ErrorCarriesCodeAndText) {
  Buffer b;
  const size_t n = encode_error(0xBEEF, "bad frame", b.out());
  EXPECT_EQ(n, 4u + 4u + 9u);
  EXPECT_EQ(b.at<uint16_t>(0), n);
  EXPECT_EQ(b.at<uint8_t>(2), 0x8F);
  EXPECT_EQ(b.at<uint16_t>(4), 0xBEEFu);
  EXPECT_EQ(b.at<uint16_t>(6), 0u);  // reserved
  EXPECT_EQ(std::memcmp(b.bytes.data() + 8, "bad frame", 9), 0);
  EXPECT_EQ(encode_error(1, "", b.out()), 8u);
}

TEST(WireFormat, ErrorTextIsCutTo200Bytes) {
  Buffer b;
  const std::string text(300, 'x');
  const size_t n = encode_error(1, text, b.out());
  EXPECT_EQ(n, 4u + 4u + kErrorMaxText);
  EXPECT_EQ(b.at<uint16_t>(0), n);
  EXPECT_EQ(encode_error(1, std::string(200, 'y'), b.out()), 208u);
}

TEST(WireFormat, ErrorTextCutNeverSplitsAUtf8Character) {
  // "é" is 2 bytes, "€" 3, "😀" 4: put each so that it straddles byte 200.
  for (const std::string& ch : {std::string("\xC3\xA9"), std::string("\xE2\x82\xAC"),
                               std::string("\xF0\x9F\x98\x80")}) {
    for (size_t before = 200 - ch.size() + 1; before < 200; ++before) {
      const std::string text = std::string(before, 'a') + ch + std::string(50, 'b');
      Buffer b;
      const size_t n = encode_error(1, text, b.out());
      EXPECT_EQ(n - 8, before) << ch.size() << "-byte character at " << before;
    }
    // Ending exactly at 200 keeps it whole.
    const std::string fits = std::string(200 - ch.size(), 'a') + ch + "zz";
    Buffer b;
    EXPECT_EQ(encode_error(1, fits, b.out()) - 8, 200u);
    EXPECT_EQ(std::memcmp(b.bytes.data() + 8 + 200 - ch.size(), ch.data(), ch.size()), 0);
  }
}

// ---- Names -----------------------------------------------------------------------------------

TEST(WireFormat, FrameTypeNames) {
  EXPECT_EQ(frame_type_name(0x01), "HELLO");
  EXPECT_EQ(frame_type_name(0x02), "TRANSACTION");
  EXPECT_EQ(frame_type_name(0x03), "ORDER");
  EXPECT_EQ(frame_type_name(0x04), "WATERMARK");
  EXPECT_EQ(frame_type_name(0x05), "SUBSCRIBE");
  EXPECT_EQ(frame_type_name(0x81), "HELLO_ACK");
  EXPECT_EQ(frame_type_name(0x82), "DECISION");
  EXPECT_EQ(frame_type_name(0x83), "ALERT");
  EXPECT_EQ(frame_type_name(0x8F), "ERROR");
  for (const uint8_t unknown : {0x00, 0x06, 0x42, 0x80, 0x84, 0xFF}) {
    EXPECT_EQ(frame_type_name(unknown), "UNKNOWN") << int{unknown};
    EXPECT_EQ(min_payload(unknown), 0u) << int{unknown};
  }
}

TEST(WireFormat, VerdictNames) {
  EXPECT_EQ(verdict_name(Verdict::kAccept), "ACCEPT");
  EXPECT_EQ(verdict_name(Verdict::kFlag), "FLAG");
  EXPECT_EQ(verdict_name(Verdict::kReject), "REJECT");
  EXPECT_EQ(verdict_name(Verdict::kDuplicate), "DUPLICATE");
  EXPECT_EQ(verdict_name(Verdict::kLate), "LATE");
  EXPECT_EQ(verdict_name(Verdict::kInvalid), "INVALID");
  EXPECT_EQ(verdict_name(static_cast<Verdict>(6)), "UNKNOWN");
}

TEST(WireFormat, RuleNames) {
  EXPECT_EQ(rule_name(Rule::kNone), "NONE");
  EXPECT_EQ(rule_name(Rule::kVelocityExceeded), "VELOCITY_EXCEEDED");
  EXPECT_EQ(rule_name(Rule::kAmountAnomaly), "AMOUNT_ANOMALY");
  EXPECT_EQ(rule_name(Rule::kMaxOrderQty), "MAX_ORDER_QTY");
  EXPECT_EQ(rule_name(Rule::kMaxOrderNotional), "MAX_ORDER_NOTIONAL");
  EXPECT_EQ(rule_name(Rule::kPositionLimit), "POSITION_LIMIT");
  EXPECT_EQ(rule_name(Rule::kOrderRate), "ORDER_RATE");
  EXPECT_EQ(rule_name(static_cast<Rule>(7)), "UNKNOWN");
}

}  // namespace
}  // namespace sluice::wire
