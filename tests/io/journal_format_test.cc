#include "io/journal_format.h"

#include <cstdint>
#include <cstring>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "core/crc32c.h"
#include "core/wire_format.h"
#include "gtest/gtest.h"

namespace sluice::journal {
namespace {

using wire::load;
using wire::store;

std::vector<std::byte> encoded_header(const SegmentHeader& h) {
  std::vector<std::byte> bytes(kSegmentHeaderSize, std::byte{0xEE});
  encode_segment_header(h, bytes);
  return bytes;
}

// Re-seals a header after a deliberate edit, so a check other than the CRC must catch it.
void reseal(std::vector<std::byte>& bytes) {
  store<uint32_t>(bytes.data() + 60, crc32c(bytes.data(), 60));
}

TEST(SegmentHeader, RoundTripsEveryField) {
  for (const SegmentHeader h :
       {SegmentHeader{1, 1'700'000'000'123'456'789, kDefaultSegmentSize},
        SegmentHeader{std::numeric_limits<uint64_t>::max(), std::numeric_limits<int64_t>::min(),
                      std::numeric_limits<uint64_t>::max()},
        SegmentHeader{0, -1, kSegmentHeaderSize}}) {
    const std::vector<std::byte> bytes = encoded_header(h);
    SegmentHeader got;
    ASSERT_EQ(decode_segment_header(bytes, &got), HeaderCheck::kOk);
    EXPECT_EQ(got.first_sequence, h.first_sequence);
    EXPECT_EQ(got.created_ns, h.created_ns);
    EXPECT_EQ(got.segment_size, h.segment_size);
  }
}

TEST(SegmentHeader, LayoutMatchesTheDocumentedOffsets) {
  const std::vector<std::byte> bytes = encoded_header(SegmentHeader{7, 8, 9});
  EXPECT_EQ(std::memcmp(bytes.data(), "SLUICEJL", 8), 0);
  EXPECT_EQ(load<uint64_t>(bytes.data()), kSegmentMagic);
  EXPECT_EQ(load<uint32_t>(bytes.data() + 8), kFormatVersion);
  EXPECT_EQ(load<uint32_t>(bytes.data() + 12), kSegmentHeaderSize);
  EXPECT_EQ(load<uint64_t>(bytes.data() + 16), 7u);
  EXPECT_EQ(load<int64_t>(bytes.data() + 24), 8);
  EXPECT_EQ(load<uint64_t>(bytes.data() + 32), 9u);
  for (size_t i = 40; i < 60; ++i) EXPECT_EQ(bytes[i], std::byte{0}) << "reserved byte " << i;
  EXPECT_EQ(load<uint32_t>(bytes.data() + 60), crc32c(bytes.data(), 60));
}

TEST(SegmentHeader, BadMagicIsReportedFirst) {
  std::vector<std::byte> bytes = encoded_header(SegmentHeader{1, 2, 3});
  bytes[0] ^= std::byte{1};
  SegmentHeader got;
  EXPECT_EQ(decode_segment_header(bytes, &got), HeaderCheck::kBadMagic);
}

TEST(SegmentHeader, AnyChangedByteBeforeTheCrcIsACrcMismatch) {
  SegmentHeader got;
  for (size_t i = 8; i < kSegmentHeaderSize; ++i) {
    std::vector<std::byte> bytes = encoded_header(SegmentHeader{1, 2, 3});
    bytes[i] ^= std::byte{0x10};
    EXPECT_EQ(decode_segment_header(bytes, &got), HeaderCheck::kBadCrc) << "byte " << i;
  }
}

TEST(SegmentHeader, OtherVersionWithAValidCrcIsUnsupported) {
  std::vector<std::byte> bytes = encoded_header(SegmentHeader{1, 2, 3});
  for (const uint32_t version : {0u, kFormatVersion + 1, 0xFFFFFFFFu}) {
    store<uint32_t>(bytes.data() + 8, version);
    reseal(bytes);
    SegmentHeader got;
    EXPECT_EQ(decode_segment_header(bytes, &got), HeaderCheck::kBadVersion) << version;
  }
}

TEST(SegmentHeader, WrongHeaderSizeFieldOrShortInputIsBadSize) {
  std::vector<std::byte> bytes = encoded_header(SegmentHeader{1, 2, 3});
  SegmentHeader got;
  EXPECT_EQ(decode_segment_header(std::span<const std::byte>(bytes).first(63), &got),
            HeaderCheck::kBadSize);
  EXPECT_EQ(decode_segment_header({}, &got), HeaderCheck::kBadSize);
  store<uint32_t>(bytes.data() + 12, 128);
  reseal(bytes);
  EXPECT_EQ(decode_segment_header(bytes, &got), HeaderCheck::kBadSize);
}

TEST(SegmentHeader, EveryCheckHasAName) {
  EXPECT_EQ(header_check_name(HeaderCheck::kOk), "ok");
  EXPECT_EQ(header_check_name(HeaderCheck::kBadMagic), "bad magic number");
  EXPECT_EQ(header_check_name(HeaderCheck::kBadVersion), "unsupported format version");
  EXPECT_EQ(header_check_name(HeaderCheck::kBadSize), "bad header size");
  EXPECT_EQ(header_check_name(HeaderCheck::kBadCrc), "header CRC mismatch");
}

TEST(RecordSize, IsHeaderPlusFrameRoundedUpToEightBytes) {
  EXPECT_EQ(record_size(4), 40u);
  EXPECT_EQ(record_size(8), 40u);
  EXPECT_EQ(record_size(9), 48u);
  EXPECT_EQ(record_size(44), 80u);
  EXPECT_EQ(record_size(60), 96u);
  EXPECT_EQ(record_size(1024), 1056u);
  EXPECT_EQ(kMaxRecordSize, record_size(wire::kMaxFrameSize));
  for (size_t n = 4; n <= wire::kMaxFrameSize; ++n) {
    ASSERT_EQ(record_size(n) % kRecordAlignment, 0u) << n;
    ASSERT_GE(record_size(n), kRecordHeaderSize + n) << n;
    ASSERT_LT(record_size(n), kRecordHeaderSize + n + kRecordAlignment) << n;
  }
}

TEST(Record, LayoutCrcAndPaddingMatchTheFormat) {
  std::vector<std::byte> frame(13);
  wire::encode_header(frame.data(), wire::FrameHeader{13, 0x42, 1});
  for (size_t i = 4; i < frame.size(); ++i) frame[i] = static_cast<std::byte>(i * 11);
  std::vector<std::byte> out(64, std::byte{0xEE});
  const RecordMeta meta{.sequence = std::numeric_limits<int64_t>::max(),
                        .ingest_ns = std::numeric_limits<int64_t>::min(),
                        .client_id = std::numeric_limits<uint64_t>::max()};
  ASSERT_EQ(encode_record(meta, frame, out), 48u);
  const std::byte* p = out.data();
  EXPECT_EQ(load<uint32_t>(p), 13u);
  EXPECT_EQ(load<int64_t>(p + 8), meta.sequence);
  EXPECT_EQ(load<int64_t>(p + 16), meta.ingest_ns);
  EXPECT_EQ(load<uint64_t>(p + 24), meta.client_id);
  EXPECT_EQ(std::memcmp(p + 32, frame.data(), frame.size()), 0);
  for (size_t i = 32 + 13; i < 48; ++i) EXPECT_EQ(p[i], std::byte{0}) << "padding " << i;
  EXPECT_EQ(p[48], std::byte{0xEE}) << "wrote past the record";
  // CRC32C of bytes 0..3 then 8 up to the end of the frame, computed independently.
  std::vector<std::byte> covered(4 + 24 + 13);
  std::memcpy(covered.data(), p, 4);
  std::memcpy(covered.data() + 4, p + 8, 24 + 13);
  EXPECT_EQ(load<uint32_t>(p + 4), crc32c(covered.data(), covered.size()));
  EXPECT_EQ(load<uint32_t>(p + 4), record_crc(p, 13));
}

TEST(Record, CrcEqualsTheCrc32cOfTheCoveredBytesForEveryFrameLength) {
  // Every tail the 8-byte steps leave (0..7 bytes: the 4-, 2- and 1-byte steps in each mix).
  for (size_t n = wire::kHeaderSize; n <= 96; ++n) {
    std::vector<std::byte> frame(n);
    for (size_t i = 0; i < n; ++i) frame[i] = static_cast<std::byte>(i * 37 + n);
    wire::encode_header(frame.data(), wire::FrameHeader{static_cast<uint16_t>(n), 0x42, 1});
    std::vector<std::byte> out(record_size(n));
    encode_record(RecordMeta{static_cast<int64_t>(n), -5, 0xfeedull << 20}, frame, out);
    std::vector<std::byte> covered(4 + 24 + n);
    std::memcpy(covered.data(), out.data(), 4);
    std::memcpy(covered.data() + 4, out.data() + 8, 24 + n);
    const uint32_t want = crc32c(covered.data(), covered.size());
    EXPECT_EQ(record_crc(out.data(), n), want) << "frame length " << n;
    EXPECT_EQ(load<uint32_t>(out.data() + 4), want) << "frame length " << n;
  }
}

TEST(Record, CrcCoversLengthMetaAndFrameButNotItself) {
  std::vector<std::byte> frame(20, std::byte{3});
  wire::encode_header(frame.data(), wire::FrameHeader{20, 0x42, 1});
  std::vector<std::byte> out(record_size(20));
  encode_record(RecordMeta{1, 2, 3}, frame, out);
  const uint32_t crc = record_crc(out.data(), 20);
  for (size_t i = 0; i < kRecordHeaderSize + 20; ++i) {
    std::vector<std::byte> changed = out;
    changed[i] ^= std::byte{0x80};
    if (i >= 4 && i < 8) {
      EXPECT_EQ(record_crc(changed.data(), 20), crc) << i;
    } else {
      EXPECT_NE(record_crc(changed.data(), 20), crc) << i;
    }
  }
}

// CRC32C of record bytes 0..3 and 8..(32 + frame length), through the portable table code: an
// independent reference for the inline crc32-instruction paths.
uint32_t reference_record_crc(const std::byte* record, size_t frame_length) {
  const uint32_t crc = crc32c_extend_portable(0, record, 4);
  return crc32c_extend_portable(crc, record + 8, kRecordHeaderSize - 8 + frame_length);
}

TEST(Record, EveryFrameLengthEncodesTheSameBytesAndCrcAsTheReference) {
  for (size_t length = wire::kHeaderSize; length <= wire::kMaxFrameSize; ++length) {
    // The frame ends exactly at the end of its allocation, so an encoder that read past it
    // would be caught by AddressSanitizer (the asan preset runs this test).
    auto frame = std::make_unique<std::byte[]>(length);
    for (size_t i = 0; i < length; ++i) frame[i] = static_cast<std::byte>(i * 7 + length);
    const RecordMeta meta{.sequence = static_cast<int64_t>(length) * 1'000'003,
                          .ingest_ns = -static_cast<int64_t>(length),
                          .client_id = length * 0x9E3779B97F4A7C15ull};
    std::vector<std::byte> out(record_size(length) + 8, std::byte{0xEE});
    ASSERT_EQ(encode_record(meta, std::span<const std::byte>(frame.get(), length), out),
              record_size(length));
    const std::byte* p = out.data();
    ASSERT_EQ(load<uint32_t>(p), length);
    ASSERT_EQ(load<int64_t>(p + 8), meta.sequence);
    ASSERT_EQ(load<int64_t>(p + 16), meta.ingest_ns);
    ASSERT_EQ(load<uint64_t>(p + 24), meta.client_id);
    ASSERT_EQ(std::memcmp(p + kRecordHeaderSize, frame.get(), length), 0) << length;
    for (size_t i = kRecordHeaderSize + length; i < record_size(length); ++i) {
      ASSERT_EQ(p[i], std::byte{0}) << "padding byte " << i << " of length " << length;
    }
    ASSERT_EQ(p[record_size(length)], std::byte{0xEE}) << "wrote past the record, " << length;
    ASSERT_EQ(load<uint32_t>(p + 4), reference_record_crc(p, length)) << length;
    ASSERT_EQ(record_crc(p, length), reference_record_crc(p, length)) << length;
  }
}

TEST(SegmentFileName, IsTwentyDigitsAndTheSuffix) {
  EXPECT_EQ(segment_file_name(1), "00000000000000000001.seg");
  EXPECT_EQ(segment_file_name(123456789), "00000000000123456789.seg");
  EXPECT_EQ(segment_file_name(std::numeric_limits<uint64_t>::max()), "18446744073709551615.seg");
}

TEST(SegmentFileName, ParsesWhatItFormats) {
  for (const uint64_t v : {uint64_t{0}, uint64_t{1}, uint64_t{1001}, uint64_t{1} << 63,
                           std::numeric_limits<uint64_t>::max()}) {
    EXPECT_EQ(parse_segment_file_name(segment_file_name(v)), v);
  }
}

TEST(SegmentFileName, RejectsAnythingElse) {
  for (const char* bad : {"", ".seg", "1.seg", "0000000000000000001.seg",     // 19 digits
                          "000000000000000000001.seg",                         // 21 digits
                          "18446744073709551616.seg",                          // overflows
                          "0000000000000000000a.seg", "-0000000000000000001.seg",
                          "+0000000000000000001.seg", " 0000000000000000001.seg",
                          "00000000000000000001.SEG", "00000000000000000001.sg",
                          "00000000000000000001.seg.tmp", "00000000000000000001seg1",
                          "00000000000000000001"}) {
    EXPECT_EQ(parse_segment_file_name(bad), std::nullopt) << '"' << bad << '"';
  }
}

}  // namespace
}  // namespace sluice::journal
