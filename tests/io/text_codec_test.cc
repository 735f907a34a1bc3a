#include "io/text_codec.h"

#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "core/wire_format.h"
#include "gtest/gtest.h"

namespace sluice::text {
namespace {

using Bytes = std::vector<std::byte>;

template <typename M>
Bytes encoded(const M& m) {
  Bytes b(wire::kMaxFrameSize);
  b.resize(wire::encode(m, b));
  return b;
}

struct Parsed {
  ParsedLine result;
  Bytes frame;
};

Parsed parse(std::string_view line) {
  Parsed p;
  p.frame.resize(wire::kMaxFrameSize);
  p.result = parse_client_line(line, p.frame);
  p.frame.resize(p.result.status == LineStatus::kFrame ? p.result.frame_size : 0);
  return p;
}

TEST(TextCodec, EveryClientLineBecomesTheEquivalentBinaryFrame) {
  EXPECT_EQ(parse("HELLO,42").frame, encoded(wire::Hello{.client_id = 42}));
  EXPECT_EQ(parse("T,1,1700000000000000000,77,12345,9,978,2").frame,
            encoded(wire::Transaction{.client_seq = 1,
                                      .event_time_ns = 1700000000000000000,
                                      .account_id = 77,
                                      .amount_minor = 12345,
                                      .merchant_id = 9,
                                      .currency = 978,
                                      .channel = 2}));
  EXPECT_EQ(parse("O,2,5,77,1001,12,B,100,2500").frame, encoded(wire::Order{.client_seq = 2,
                                                                            .event_time_ns = 5,
                                                                            .account_id = 77,
                                                                            .order_id = 1001,
                                                                            .instrument_id = 12,
                                                                            .side = 1,
                                                                            .quantity = 100,
                                                                            .price = 2500}));
  EXPECT_EQ(parse("O,3,5,77,1002,12,S,1,1").frame, encoded(wire::Order{.client_seq = 3,
                                                                       .event_time_ns = 5,
                                                                       .account_id = 77,
                                                                       .order_id = 1002,
                                                                       .instrument_id = 12,
                                                                       .side = 2,
                                                                       .quantity = 1,
                                                                       .price = 1}));
  EXPECT_EQ(parse("W,123456789").frame, encoded(wire::Watermark{.event_time_ns = 123456789}));
  EXPECT_EQ(parse("SUB").frame, encoded(wire::Subscribe{.topics = 1}));
}

TEST(TextCodec, ExtremeNumbersParseAndValueChecksAreLeftToIngest) {
  // Negative amounts and times parse: they are INVALID events, not malformed lines.
  const Parsed p = parse("T,18446744073709551615,-1,0,-9223372036854775808,4294967295,65535,255");
  ASSERT_EQ(p.result.status, LineStatus::kFrame);
  const wire::Transaction t = wire::decode_transaction(p.frame);
  EXPECT_EQ(t.client_seq, UINT64_MAX);
  EXPECT_EQ(t.event_time_ns, -1);
  EXPECT_EQ(t.account_id, 0u);
  EXPECT_EQ(t.amount_minor, INT64_MIN);
  EXPECT_EQ(t.merchant_id, UINT32_MAX);
  EXPECT_EQ(t.currency, 65535);
  EXPECT_EQ(t.channel, 255);
  EXPECT_EQ(parse("O,1,0,1,1,1,B,-5,0").result.status, LineStatus::kFrame);
}

TEST(TextCodec, MalformedLinesSayWhatIsWrong) {
  struct Case {
    const char* line;
    const char* message;
  };
  const Case cases[] = {
      {"X,1", "unknown line; expected HELLO, T, O, W or SUB lines"},
      {"t,1,2,3,4,5,6,7", "unknown line; expected HELLO, T, O, W or SUB lines"},
      {" T,1,2,3,4,5,6,7", "unknown line; expected HELLO, T, O, W or SUB lines"},
      {"T,1,2,3,4,5,6",
       "7 fields; expected T,<client_seq>,<event_time_ns>,<account_id>,"
       "<amount_minor>,<merchant_id>,<currency>,<channel>"},
      {"T,1,2,3,4,5,6,7,8",
       "9 fields; expected T,<client_seq>,<event_time_ns>,<account_id>,"
       "<amount_minor>,<merchant_id>,<currency>,<channel>"},
      {"T,,2,3,4,5,6,7",
       "bad client_seq; expected T,<client_seq>,<event_time_ns>,<account_id>,"
       "<amount_minor>,<merchant_id>,<currency>,<channel>"},
      {"T,-1,2,3,4,5,6,7",
       "bad client_seq; expected T,<client_seq>,<event_time_ns>,"
       "<account_id>,<amount_minor>,<merchant_id>,<currency>,<channel>"},
      {"T,+1,2,3,4,5,6,7",
       "bad client_seq; expected T,<client_seq>,<event_time_ns>,"
       "<account_id>,<amount_minor>,<merchant_id>,<currency>,<channel>"},
      {"T,1,2x,3,4,5,6,7",
       "bad event_time_ns; expected T,<client_seq>,<event_time_ns>,"
       "<account_id>,<amount_minor>,<merchant_id>,<currency>,<channel>"},
      {"T,1,2,3,4 ,5,6,7",
       "bad amount_minor; expected T,<client_seq>,<event_time_ns>,"
       "<account_id>,<amount_minor>,<merchant_id>,<currency>,<channel>"},
      {"T,1,2,3,4,4294967296,6,7",
       "bad merchant_id; expected T,<client_seq>,<event_time_ns>,"
       "<account_id>,<amount_minor>,<merchant_id>,<currency>,"
       "<channel>"},
      {"T,1,2,3,4,5,65536,7",
       "bad currency; expected T,<client_seq>,<event_time_ns>,"
       "<account_id>,<amount_minor>,<merchant_id>,<currency>,<channel>"},
      {"T,1,2,3,4,5,6,256",
       "bad channel; expected T,<client_seq>,<event_time_ns>,"
       "<account_id>,<amount_minor>,<merchant_id>,<currency>,<channel>"},
      {"T,1,9223372036854775808,3,4,5,6,7",
       "bad event_time_ns; expected T,<client_seq>,<event_time_ns>,<account_id>,"
       "<amount_minor>,<merchant_id>,<currency>,<channel>"},
      {"O,1,2,3,4,5,X,7,8",
       "bad side; expected O,<client_seq>,<event_time_ns>,<account_id>,"
       "<order_id>,<instrument_id>,<B|S>,<quantity>,<price>"},
      {"O,1,2,3,4,5,1,7,8",
       "bad side; expected O,<client_seq>,<event_time_ns>,<account_id>,"
       "<order_id>,<instrument_id>,<B|S>,<quantity>,<price>"},
      {"O,1,2,3,4,5,B,7",
       "8 fields; expected O,<client_seq>,<event_time_ns>,<account_id>,"
       "<order_id>,<instrument_id>,<B|S>,<quantity>,<price>"},
      {"W", "1 fields; expected W,<event_time_ns>"},
      {"W,abc", "bad event_time_ns; expected W,<event_time_ns>"},
      {"HELLO", "1 fields; expected HELLO,<client_id>"},
      {"HELLO,-3", "bad client_id; expected HELLO,<client_id>"},
      {"SUB,1", "2 fields; expected SUB"},
      {"T,1,2,3,4,5,6,7,8,9,10,11,12",
       "11 fields; expected T,<client_seq>,<event_time_ns>,"
       "<account_id>,<amount_minor>,<merchant_id>,<currency>,"
       "<channel>"},
  };
  for (const Case& c : cases) {
    const Parsed p = parse(c.line);
    EXPECT_EQ(p.result.status, LineStatus::kMalformed) << c.line;
    EXPECT_EQ(describe(p.result), c.message) << c.line;
  }
}

TEST(TextCodec, EmptyLineIsIgnored) { EXPECT_EQ(parse("").result.status, LineStatus::kEmpty); }

TEST(TextCodec, ServerLinesAreExactlySpecs) {
  char buf[kMaxServerLine];
  auto line = [&](size_t n) { return std::string(buf, n); };
  EXPECT_EQ(line(format_hello_ack({.client_id = 9, .last_client_seq = 1000}, buf)),
            "HELLO_ACK,9,1000\n");
  EXPECT_EQ(line(format_decision({.client_seq = 17,
                                  .seq = 123456,
                                  .verdict = wire::Verdict::kFlag,
                                  .reason = 1,
                                  .flags = 3},
                                 buf)),
            "D,17,123456,FLAG,1,3\n");
  EXPECT_EQ(
      line(format_decision({.client_seq = 5, .seq = 0, .verdict = wire::Verdict::kInvalid}, buf)),
      "D,5,0,INVALID,0,0\n");
  EXPECT_EQ(line(format_alert({.seq = 8,
                               .event_time_ns = -4,
                               .account_id = 77,
                               .rule = wire::Rule::kPositionLimit,
                               .value = -100001,
                               .threshold = 100000},
                              buf)),
            "A,8,-4,77,POSITION_LIMIT,-100001,100000\n");
  EXPECT_EQ(line(format_error(11, "bad side; x\ny\r", buf)), "E,11,bad side; x y \n");
}

TEST(TextCodec, LongestServerLinesFitTheBound) {
  char buf[kMaxServerLine];
  const size_t d = format_decision({.client_seq = UINT64_MAX,
                                    .seq = UINT64_MAX,
                                    .verdict = wire::Verdict::kDuplicate,
                                    .reason = 255,
                                    .flags = UINT32_MAX},
                                   buf);
  EXPECT_LE(d, kMaxServerLine);
  const size_t a = format_alert({.seq = UINT64_MAX,
                                 .event_time_ns = INT64_MIN,
                                 .account_id = UINT64_MAX,
                                 .rule = wire::Rule::kMaxOrderNotional,
                                 .value = INT64_MIN,
                                 .threshold = INT64_MIN},
                                buf);
  EXPECT_LE(a, kMaxServerLine);
  const std::string long_message(500, 'x');
  const size_t e = format_error(65535, long_message, buf);
  EXPECT_LE(e, kMaxServerLine);
  EXPECT_EQ(e, std::string("E,65535,").size() + wire::kErrorMaxText + 1);
}

TEST(TextCodec, ServerLinesParseBack) {
  char buf[kMaxServerLine];
  const wire::Decision d{
      .client_seq = 3, .seq = 99, .verdict = wire::Verdict::kReject, .reason = 3, .flags = 36};
  ServerLine s = parse_server_line(std::string_view(buf, format_decision(d, buf) - 1));
  ASSERT_EQ(s.kind, ServerLine::Kind::kDecision);
  EXPECT_EQ(s.decision.client_seq, 3u);
  EXPECT_EQ(s.decision.seq, 99u);
  EXPECT_EQ(s.decision.verdict, wire::Verdict::kReject);
  EXPECT_EQ(s.decision.reason, 3);
  EXPECT_EQ(s.decision.flags, 36u);
  const wire::Alert a{.seq = 1,
                      .event_time_ns = 2,
                      .account_id = 3,
                      .rule = wire::Rule::kOrderRate,
                      .value = 101,
                      .threshold = 100};
  s = parse_server_line(std::string_view(buf, format_alert(a, buf) - 1));
  ASSERT_EQ(s.kind, ServerLine::Kind::kAlert);
  EXPECT_EQ(s.alert.rule, wire::Rule::kOrderRate);
  EXPECT_EQ(s.alert.value, 101);
  s = parse_server_line(std::string_view(buf, format_hello_ack({7, 8}, buf) - 1));
  ASSERT_EQ(s.kind, ServerLine::Kind::kHelloAck);
  EXPECT_EQ(s.hello_ack.last_client_seq, 8u);
  s = parse_server_line("E,11,bad side; expected O,<a>,<b>");
  ASSERT_EQ(s.kind, ServerLine::Kind::kError);
  EXPECT_EQ(s.error_code, 11);
  EXPECT_EQ(s.error_message, "bad side; expected O,<a>,<b>");
  EXPECT_EQ(parse_server_line("D,1,2,MAYBE,0,0").kind, ServerLine::Kind::kMalformed);
  EXPECT_EQ(parse_server_line("E,x,y").kind, ServerLine::Kind::kMalformed);
}

TEST(TextCodec, ClientLinesRoundTripThroughFrames) {
  const std::string lines[] = {"HELLO,5", "T,1,2,3,4,5,6,7", "O,1,2,3,4,5,S,7,8", "W,0", "SUB"};
  for (const std::string& line : lines) {
    const Parsed p = parse(line);
    ASSERT_EQ(p.result.status, LineStatus::kFrame) << line;
    EXPECT_EQ(format_client_line(p.frame), line);
  }
  Bytes unknown(8);
  wire::encode_header(unknown.data(), {8, 0x7F, 1});
  EXPECT_EQ(format_client_line(unknown), "");
}

// LineDecoder over a stream fed in the given chunk sizes (the last takes the rest).
struct Lines {
  std::vector<std::string> lines;
  bool error = false;
};

Lines split_lines(const std::string& stream, const std::vector<size_t>& chunks) {
  Lines out;
  LineDecoder d;
  size_t pos = 0, index = 0;
  while (pos < stream.size()) {
    size_t n = index < chunks.size() ? chunks[index++] : stream.size() - pos;
    n = std::min(n, stream.size() - pos);
    auto buffer = std::make_unique<std::byte[]>(n);
    std::memcpy(buffer.get(), stream.data() + pos, n);
    std::span<const std::byte> input(buffer.get(), n);
    pos += n;
    for (;;) {
      const DecodeStatus s = d.peek(input);
      if (s == DecodeStatus::kNeedMore) break;
      if (s == DecodeStatus::kError) {
        out.error = true;
        return out;
      }
      out.lines.emplace_back(d.line());
      d.consume(input);
      if (input.empty()) break;
    }
  }
  return out;
}

TEST(LineDecoder, LinesSplitAtEveryByteBoundaryDecodeIdentically) {
  const std::string stream =
      "HELLO,1\nT,1,2,3,4,5,6,7\r\n\nO,1,2,3,4,5,B,7,8\nW,5\n" + std::string(1024, 'x') + "\nSUB\n";
  const Lines whole = split_lines(stream, {});
  ASSERT_FALSE(whole.error);
  ASSERT_EQ(whole.lines.size(), 7u);
  EXPECT_EQ(whole.lines[1], "T,1,2,3,4,5,6,7");  // '\r' dropped
  EXPECT_EQ(whole.lines[2], "");
  EXPECT_EQ(whole.lines[5].size(), 1024u);
  for (size_t cut = 0; cut <= stream.size(); ++cut) {
    const Lines l = split_lines(stream, {cut});
    ASSERT_FALSE(l.error) << cut;
    ASSERT_EQ(l.lines, whole.lines) << cut;
  }
  EXPECT_EQ(split_lines(stream, std::vector<size_t>(stream.size(), 1)).lines, whole.lines);
}

TEST(LineDecoder, ALineOverTheLimitIsAnErrorWhereverItIsSplit) {
  const std::string stream = "W,1\n" + std::string(1025, 'y') + "\nW,2\n";
  for (size_t cut = 0; cut <= stream.size(); ++cut) {
    const Lines l = split_lines(stream, {cut});
    ASSERT_TRUE(l.error) << cut;
    ASSERT_EQ(l.lines, std::vector<std::string>{"W,1"}) << cut;
  }
  // No newline at all: the error comes once 1025 bytes have arrived.
  LineDecoder d;
  std::string big(1024, 'z');
  std::span<const std::byte> input(reinterpret_cast<const std::byte*>(big.data()), big.size());
  EXPECT_EQ(d.peek(input), DecodeStatus::kNeedMore);
  EXPECT_EQ(d.held(), 1024u);
  const char one = 'z';
  std::span<const std::byte> more(reinterpret_cast<const std::byte*>(&one), 1);
  EXPECT_EQ(d.peek(more), DecodeStatus::kError);
  EXPECT_TRUE(d.failed());
}

TEST(LineDecoder, RandomBytesNeverCrashIt) {
  std::mt19937_64 rng(7);
  for (int round = 0; round < 2000; ++round) {
    std::string stream;
    while (stream.size() < 3000) {
      const int r = static_cast<int>(rng() % 100);
      if (r < 5) {
        stream += '\n';
      } else if (r < 7) {
        stream += std::string(rng() % 1500, 'a');
      } else {
        stream += static_cast<char>(rng());
      }
    }
    std::vector<size_t> chunks;
    for (size_t total = 0; total < stream.size();) {
      chunks.push_back(1 + rng() % 700);
      total += chunks.back();
    }
    const Lines l = split_lines(stream, chunks);
    std::array<std::byte, wire::kMaxFrameSize> frame;
    for (const std::string& line : l.lines) {
      ASSERT_LE(line.size(), kMaxLineLength);
      ASSERT_EQ(line.find('\n'), std::string::npos);
      (void)parse_client_line(line, frame);
    }
  }
}

}  // namespace
}  // namespace sluice::text
