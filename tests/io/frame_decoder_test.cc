#include "io/frame_decoder.h"

#include <cstring>
#include <random>
#include <span>
#include <vector>

#include "core/wire_format.h"
#include "gtest/gtest.h"
#include "tests/test_util.h"

namespace sluice {
namespace {

using Bytes = std::vector<std::byte>;

Bytes transaction(uint64_t client_seq, uint64_t account = 7, int64_t amount = 100) {
  Bytes b(wire::kMaxFrameSize);
  b.resize(wire::encode(wire::Transaction{.client_seq = client_seq,
                                          .event_time_ns = 1'000,
                                          .account_id = account,
                                          .amount_minor = amount,
                                          .merchant_id = 3,
                                          .currency = 978,
                                          .channel = 1},
                        b));
  return b;
}

Bytes order(uint64_t client_seq, uint8_t side = 1, int64_t qty = 5, int64_t price = 10) {
  Bytes b(wire::kMaxFrameSize);
  b.resize(wire::encode(wire::Order{.client_seq = client_seq,
                                    .event_time_ns = 2'000,
                                    .account_id = 9,
                                    .order_id = 1,
                                    .instrument_id = 4,
                                    .side = side,
                                    .quantity = qty,
                                    .price = price},
                        b));
  return b;
}

// A frame with an arbitrary header and `length - 4` payload bytes of `fill`.
Bytes raw_frame(uint16_t length, uint8_t type, uint8_t version, size_t actual_size,
                std::byte fill = std::byte{0x5A}) {
  Bytes b(actual_size, fill);
  if (actual_size >= wire::kHeaderSize) {
    wire::encode_header(b.data(), wire::FrameHeader{length, type, version});
  }
  return b;
}

void append(Bytes& stream, const Bytes& frame) {
  stream.insert(stream.end(), frame.begin(), frame.end());
}

struct Decoded {
  std::vector<Bytes> frames;
  FrameError error = FrameError::kNone;
  size_t held_at_end = 0;
};

// Feeds `stream` in the given chunk sizes (the last chunk takes the rest), collecting frames
// until the end or an error.
Decoded decode(const Bytes& stream, const std::vector<size_t>& chunks) {
  Decoded out;
  FrameDecoder d;
  size_t pos = 0;
  size_t chunk_index = 0;
  while (pos < stream.size()) {
    size_t n = chunk_index < chunks.size() ? chunks[chunk_index++] : stream.size() - pos;
    n = std::min(n, stream.size() - pos);
    // A private copy of the chunk, freed after use: ASan catches a frame that points into a
    // buffer the decoder should have copied from.
    auto buffer = std::make_unique<std::byte[]>(n);
    std::memcpy(buffer.get(), stream.data() + pos, n);
    std::span<const std::byte> input(buffer.get(), n);
    pos += n;
    for (;;) {
      const DecodeStatus s = d.peek(input);
      if (s == DecodeStatus::kNeedMore) break;
      if (s == DecodeStatus::kError) {
        out.error = d.error();
        return out;
      }
      out.frames.emplace_back(d.frame().begin(), d.frame().end());
      d.consume(input);
      if (input.empty()) break;
    }
  }
  out.held_at_end = d.held();
  return out;
}

Bytes mixed_stream() {
  Bytes s;
  for (uint64_t i = 1; i <= 6; ++i) {
    append(s, transaction(i));
    append(s, order(i));
  }
  append(s, raw_frame(4, 0x7F, 1, 4));        // unknown, header only
  append(s, raw_frame(1024, 0x40, 3, 1024));  // unknown, the largest frame
  append(s, raw_frame(12, 0x04, 1, 12));      // WATERMARK
  append(s, raw_frame(100, 0x02, 2, 100));    // TRANSACTION v2, longer payload
  append(s, raw_frame(8, 0x05, 1, 8));        // SUBSCRIBE
  append(s, raw_frame(20, 0x01, 1, 20));      // HELLO
  return s;
}

TEST(FrameDecoder, WholeFramesInOneBufferAreHandedOutInPlace) {
  Bytes stream;
  append(stream, transaction(1));
  append(stream, order(2));
  std::span<const std::byte> input(stream);
  FrameDecoder d;
  ASSERT_EQ(d.peek(input), DecodeStatus::kFrame);
  EXPECT_EQ(d.frame().data(), stream.data());
  EXPECT_EQ(d.header().type, static_cast<uint8_t>(wire::FrameType::kTransaction));
  d.consume(input);
  ASSERT_EQ(d.peek(input), DecodeStatus::kFrame);
  EXPECT_EQ(d.frame().data(), stream.data() + 44);
  EXPECT_EQ(d.frame().size(), 60u);
  d.consume(input);
  EXPECT_TRUE(input.empty());
  EXPECT_EQ(d.held(), 0u);
}

TEST(FrameDecoder, OnlyAFrameSplitAcrossBuffersIsCopied) {
  Bytes stream;
  append(stream, transaction(1));
  append(stream, transaction(2));
  // First buffer: frame 1 whole and 10 bytes of frame 2.
  std::span<const std::byte> first(stream.data(), 54);
  std::span<const std::byte> second(stream.data() + 54, stream.size() - 54);
  FrameDecoder d;
  ASSERT_EQ(d.peek(first), DecodeStatus::kFrame);
  EXPECT_EQ(d.frame().data(), stream.data());
  d.consume(first);
  EXPECT_EQ(d.peek(first), DecodeStatus::kNeedMore);
  EXPECT_TRUE(first.empty());
  EXPECT_EQ(d.held(), 10u);
  ASSERT_EQ(d.peek(second), DecodeStatus::kFrame);
  EXPECT_TRUE(second.empty());  // the rest of frame 2 was taken into the hold buffer
  EXPECT_NE(d.frame().data(), stream.data() + 44);
  EXPECT_TRUE(std::equal(d.frame().begin(), d.frame().end(), stream.begin() + 44));
  d.consume(second);
  EXPECT_EQ(d.held(), 0u);
}

TEST(FrameDecoder, PeekWithoutConsumeReturnsTheSameFrameAgain) {
  Bytes stream;
  append(stream, transaction(1));
  append(stream, transaction(2));
  // In place.
  std::span<const std::byte> input(stream);
  FrameDecoder d;
  ASSERT_EQ(d.peek(input), DecodeStatus::kFrame);
  const auto* first = d.frame().data();
  ASSERT_EQ(d.peek(input), DecodeStatus::kFrame);
  EXPECT_EQ(d.frame().data(), first);
  EXPECT_EQ(input.size(), stream.size());
  // Split: the second peek finds the completed frame in the hold buffer.
  std::span<const std::byte> a(stream.data(), 20);
  std::span<const std::byte> b(stream.data() + 20, stream.size() - 20);
  FrameDecoder split;
  ASSERT_EQ(split.peek(a), DecodeStatus::kNeedMore);
  ASSERT_EQ(split.peek(b), DecodeStatus::kFrame);
  const size_t left = b.size();
  ASSERT_EQ(split.peek(b), DecodeStatus::kFrame);
  EXPECT_EQ(b.size(), left);
  EXPECT_EQ(wire::decode_transaction(split.frame()).client_seq, 1u);
  split.consume(b);
  ASSERT_EQ(split.peek(b), DecodeStatus::kFrame);
  EXPECT_EQ(wire::decode_transaction(split.frame()).client_seq, 2u);
}

struct HostileCase {
  const char* name;
  Bytes frame;
  FrameError error;
};

std::vector<HostileCase> hostile_cases() {
  std::vector<HostileCase> cases;
  for (uint16_t len = 0; len < 4; ++len) {
    cases.push_back({"length below 4", raw_frame(len, 0x02, 1, 4), FrameError::kTooShort});
  }
  cases.push_back({"length 1025", raw_frame(1025, 0x02, 1, 1100), FrameError::kTooLong});
  cases.push_back({"length 65535", raw_frame(65535, 0x7F, 1, 8), FrameError::kTooLong});
  cases.push_back({"version 0, known type", raw_frame(44, 0x02, 0, 44), FrameError::kBadVersion});
  cases.push_back({"version 0, unknown type", raw_frame(8, 0x7F, 0, 8), FrameError::kBadVersion});
  const std::pair<uint8_t, size_t> known[] = {
      {0x01, 16}, {0x02, 40}, {0x03, 56}, {0x04, 8}, {0x05, 4}};
  for (auto [type, payload] : known) {
    const auto len = static_cast<uint16_t>(4 + payload - 1);
    cases.push_back(
        {"known type one byte short", raw_frame(len, type, 1, len), FrameError::kShortPayload});
    cases.push_back(
        {"known type header only", raw_frame(4, type, 1, 4), FrameError::kShortPayload});
  }
  return cases;
}

TEST(FrameDecoder, EverySpecHostileHeaderIsAnErrorAfterTheFramesBeforeIt) {
  for (const HostileCase& c : hostile_cases()) {
    SCOPED_TRACE(c.name);
    Bytes stream;
    append(stream, transaction(1));
    append(stream, c.frame);
    append(stream, transaction(2));  // never reached
    const Decoded d = decode(stream, {});
    ASSERT_EQ(d.frames.size(), 1u);
    EXPECT_EQ(wire::decode_transaction(d.frames[0]).client_seq, 1u);
    EXPECT_EQ(d.error, c.error);
  }
}

TEST(FrameDecoder, ABadHeaderIsReportedAsSoonAsItsFourBytesArrive) {
  Bytes stream = raw_frame(2000, 0x02, 1, 4);  // only the header has arrived
  std::span<const std::byte> a(stream.data(), 2);
  std::span<const std::byte> b(stream.data() + 2, 2);
  FrameDecoder d;
  EXPECT_EQ(d.peek(a), DecodeStatus::kNeedMore);
  EXPECT_EQ(d.peek(b), DecodeStatus::kError);
  EXPECT_EQ(d.error(), FrameError::kTooLong);
  EXPECT_EQ(d.header().length, 2000);
  // It stays broken.
  std::span<const std::byte> more(stream);
  EXPECT_EQ(d.peek(more), DecodeStatus::kError);
  d.reset();
  EXPECT_EQ(d.error(), FrameError::kNone);
}

TEST(FrameDecoder, ErrorCodesAndTextsNameTheProblem) {
  EXPECT_EQ(frame_error_code(FrameError::kTooShort), wire::ErrorCode::kFrameTooShort);
  EXPECT_EQ(frame_error_code(FrameError::kTooLong), wire::ErrorCode::kFrameTooLong);
  EXPECT_EQ(frame_error_code(FrameError::kBadVersion), wire::ErrorCode::kBadVersion);
  EXPECT_EQ(frame_error_code(FrameError::kShortPayload), wire::ErrorCode::kShortPayload);
  EXPECT_EQ(describe_frame_error(FrameError::kTooShort, {2, 2, 1}), "frame length 2 is below 4");
  EXPECT_EQ(describe_frame_error(FrameError::kShortPayload, {40, 2, 1}),
            "TRANSACTION frame length 40 is shorter than its 44 bytes");
  EXPECT_EQ(describe_frame_error(FrameError::kBadVersion, {44, 2, 0}),
            "frame of type 2 has version 0");
}

TEST(FrameDecoder, UnknownAndServerTypesAreFramesToSkip) {
  for (uint8_t type : {uint8_t{0x00}, uint8_t{0x06}, uint8_t{0x7F}, uint8_t{0x81}, uint8_t{0x82},
                       uint8_t{0x8F}, uint8_t{0xFF}}) {
    Bytes stream = raw_frame(4, type, 1, 4);
    append(stream, raw_frame(30, type, 7, 30));
    const Decoded d = decode(stream, {});
    ASSERT_EQ(d.error, FrameError::kNone) << int{type};
    ASSERT_EQ(d.frames.size(), 2u);
    EXPECT_EQ(inspect_client_frame(d.frames[0]).kind, ClientFrameKind::kUnknown);
    EXPECT_EQ(inspect_client_frame(d.frames[1]).kind, ClientFrameKind::kUnknown);
  }
}

TEST(FrameDecoder, NewerVersionWithLongerPayloadReadsTheKnownFields) {
  Bytes v1 = transaction(77, 5, 250);
  Bytes v2 = v1;
  v2.resize(v1.size() + 36, std::byte{0xEE});  // fields appended by a later version
  wire::encode_header(v2.data(), wire::FrameHeader{static_cast<uint16_t>(v2.size()), 0x02, 2});
  const Decoded d = decode(v2, {});
  ASSERT_EQ(d.frames.size(), 1u);
  EXPECT_EQ(d.frames[0].size(), 80u);
  const ClientFrame f = inspect_client_frame(d.frames[0]);
  EXPECT_EQ(f.kind, ClientFrameKind::kTransaction);
  EXPECT_TRUE(f.valid);
  EXPECT_EQ(f.client_seq, 77u);
  EXPECT_EQ(wire::decode_transaction(d.frames[0]).amount_minor, 250);
}

TEST(FrameDecoder, StreamSplitAtEveryByteBoundaryDecodesIdentically) {
  const Bytes stream = mixed_stream();
  const Decoded whole = decode(stream, {});
  ASSERT_EQ(whole.error, FrameError::kNone);
  ASSERT_EQ(whole.frames.size(), 18u);
  for (size_t cut = 0; cut <= stream.size(); ++cut) {
    const Decoded d = decode(stream, {cut});
    ASSERT_EQ(d.frames, whole.frames) << "cut at " << cut;
    ASSERT_EQ(d.held_at_end, 0u);
  }
  // Every pair of cuts over the first 300 bytes (splits inside header and payload alike).
  for (size_t a = 0; a < 300; ++a) {
    for (size_t b = 1; b < 60; ++b) ASSERT_EQ(decode(stream, {a, b}).frames, whole.frames);
  }
  // One byte at a time.
  EXPECT_EQ(decode(stream, std::vector<size_t>(stream.size(), 1)).frames, whole.frames);
}

TEST(FrameDecoder, HostileFrameSplitAtEveryBoundaryGivesTheSameError) {
  for (const HostileCase& c : hostile_cases()) {
    Bytes stream;
    append(stream, order(1));
    append(stream, c.frame);
    for (size_t cut = 0; cut <= stream.size(); ++cut) {
      const Decoded d = decode(stream, {cut});
      ASSERT_EQ(d.frames.size(), 1u) << c.name << " cut " << cut;
      ASSERT_EQ(d.error, c.error) << c.name << " cut " << cut;
    }
  }
}

TEST(FrameDecoder, ValueChecksMakeEventsInvalid) {
  EXPECT_TRUE(inspect_client_frame(transaction(1)).valid);
  EXPECT_FALSE(inspect_client_frame(transaction(1, /*account=*/0)).valid);
  EXPECT_FALSE(inspect_client_frame(transaction(1, 7, /*amount=*/0)).valid);
  EXPECT_FALSE(inspect_client_frame(transaction(1, 7, -5)).valid);
  EXPECT_TRUE(inspect_client_frame(order(1)).valid);
  EXPECT_TRUE(inspect_client_frame(order(1, 2)).valid);
  EXPECT_FALSE(inspect_client_frame(order(1, 0)).valid);
  EXPECT_FALSE(inspect_client_frame(order(1, 3)).valid);
  EXPECT_FALSE(inspect_client_frame(order(1, 1, 0)).valid);
  EXPECT_FALSE(inspect_client_frame(order(1, 1, -1)).valid);
  EXPECT_FALSE(inspect_client_frame(order(1, 1, 5, 0)).valid);
  EXPECT_FALSE(inspect_client_frame(order(1, 1, 5, -10)).valid);
  Bytes late = transaction(1);
  wire::store<int64_t>(late.data() + 4 + 8, -1);
  EXPECT_FALSE(inspect_client_frame(late).valid);
  Bytes w(12);
  wire::encode(wire::Watermark{.event_time_ns = -1}, w);
  EXPECT_EQ(inspect_client_frame(w).kind, ClientFrameKind::kWatermark);
  EXPECT_FALSE(inspect_client_frame(w).valid);
  wire::encode(wire::Watermark{.event_time_ns = 0}, w);
  EXPECT_TRUE(inspect_client_frame(w).valid);
  // An invalid event still carries its client_seq (the INVALID decision echoes it).
  EXPECT_EQ(inspect_client_frame(order(42, 9)).client_seq, 42u);
}

TEST(FrameDecoder, InspectReadsHelloAndSubscribe) {
  Bytes h(20);
  wire::encode(wire::Hello{.client_id = 1234, .flags = 6}, h);
  const ClientFrame hello = inspect_client_frame(h);
  EXPECT_EQ(hello.kind, ClientFrameKind::kHello);
  EXPECT_EQ(hello.client_id, 1234u);
  EXPECT_EQ(hello.hello_flags, 6u);
  Bytes s(8);
  wire::encode(wire::Subscribe{.topics = 0x81}, s);
  const ClientFrame sub = inspect_client_frame(s);
  EXPECT_EQ(sub.kind, ClientFrameKind::kSubscribe);
  EXPECT_EQ(sub.topics, 0x81u);
}

TEST(FrameDecoder, CheckFramesValidatesAWholeDatagram) {
  size_t n = 0;
  const Bytes good = mixed_stream();
  EXPECT_EQ(check_frames(good, &n), FrameError::kNone);
  EXPECT_EQ(n, 18u);
  EXPECT_EQ(check_frames({}, &n), FrameError::kNone);
  EXPECT_EQ(n, 0u);
  Bytes cut(good.begin(), good.end() - 1);
  EXPECT_EQ(check_frames(cut, &n), FrameError::kTruncated);
  Bytes tail = good;
  tail.push_back(std::byte{1});  // a stray byte after the last frame
  EXPECT_EQ(check_frames(tail, &n), FrameError::kTruncated);
  Bytes bad = transaction(1);
  append(bad, raw_frame(44, 0x02, 0, 44));
  EXPECT_EQ(check_frames(bad, &n), FrameError::kBadVersion);
  EXPECT_EQ(n, 1u);
}

// Random bytes, fed in random chunks: the decoder never reads outside its input (ASan checks
// that: chunks are separate allocations), every frame it returns has a good header and the
// length it claims, and the bytes it returns are exactly the stream's.
TEST(FrameDecoder, RandomBytesNeverCrashIt) {
  std::mt19937_64 rng(20261201);
  const int64_t rounds = 4000 / testing::kStressScale;
  for (int64_t round = 0; round < rounds; ++round) {
    Bytes stream;
    const bool structured = round % 2 == 0;
    while (stream.size() < 4096) {
      if (structured) {
        // Mostly plausible frames with random mutations, so decoding gets deep.
        Bytes f = (rng() % 2) ? transaction(rng()) : order(rng(), rng() % 4);
        if (rng() % 8 == 0) f[rng() % f.size()] = static_cast<std::byte>(rng());
        if (rng() % 16 == 0) f.resize(rng() % f.size());
        append(stream, f);
      } else {
        stream.push_back(static_cast<std::byte>(rng()));
      }
    }
    std::vector<size_t> chunks;
    for (size_t total = 0; total < stream.size();) {
      const size_t n = 1 + rng() % (rng() % 4 == 0 ? 2000 : 64);
      chunks.push_back(n);
      total += n;
    }
    const Decoded d = decode(stream, chunks);
    size_t offset = 0;
    for (const Bytes& f : d.frames) {
      ASSERT_GE(f.size(), wire::kHeaderSize);
      const wire::FrameHeader h = wire::decode_header(f.data());
      ASSERT_EQ(check_header(h), FrameError::kNone);
      ASSERT_EQ(h.length, f.size());
      ASSERT_TRUE(std::equal(f.begin(), f.end(), stream.begin() + offset));
      (void)inspect_client_frame(f);
      offset += f.size();
    }
    size_t n = 0;
    const FrameError whole = check_frames(std::span(stream).subspan(0, offset), &n);
    ASSERT_EQ(whole, FrameError::kNone);
    ASSERT_EQ(n, d.frames.size());
  }
}

}  // namespace
}  // namespace sluice
