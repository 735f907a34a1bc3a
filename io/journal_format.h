// The journal's on-disk format, shared by the writer, the reader and the tools
// (docs/journal.md has the user-facing description).
//
// A journal is a directory of segment files named by the first sequence they hold,
// "<20-digit first sequence>.seg", each preallocated (fallocate) to a fixed size and zero-filled,
// so the end of data is the first record position that holds only zeros.
//
// Segment header, 64 bytes at offset 0:
//    0 u64 magic "SLUICEJL"     8 u32 format version     12 u32 header size (64)
//   16 u64 first sequence       24 i64 creation time (ns since the Unix epoch)
//   32 u64 segment size         40 u8[20] reserved (0)   60 u32 CRC32C of bytes 0..59
//
// Record, at 8-byte-aligned offsets from 64 on:
//    0 u32 frame length (4..1024)    4 u32 CRC32C of bytes 0..3 and 8..(32 + frame length)
//    8 u64 sequence                 16 i64 ingest time (ns, CLOCK_REALTIME)
//   24 u64 client_id                32 the wire frame exactly as received, zero-padded to 8
//
// Records keep the frame's own type and version, so old journals replay under new code.
// Crash model: a record that fails its checks and is followed by nothing but zeros is a torn
// tail (the end of the log, truncated on recovery); a bad record followed by anything else is
// corruption, reported with the segment file and byte offset.
#ifndef SLUICE_IO_JOURNAL_FORMAT_H_
#define SLUICE_IO_JOURNAL_FORMAT_H_

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "core/crc32c.h"
#include "core/wire_format.h"

namespace sluice::journal {

inline constexpr uint64_t kSegmentMagic = 0x4C4A454349554C53ull;  // "SLUICEJL" little-endian
inline constexpr uint32_t kFormatVersion = 1;
inline constexpr size_t kSegmentHeaderSize = 64;
inline constexpr size_t kRecordHeaderSize = 32;
inline constexpr size_t kRecordAlignment = 8;
inline constexpr size_t kMaxRecordSize = kRecordHeaderSize + wire::kMaxFrameSize;
inline constexpr uint64_t kDefaultSegmentSize = 128ull << 20;
inline constexpr std::string_view kSegmentSuffix = ".seg";

struct SegmentHeader {
  uint64_t first_sequence = 0;
  int64_t created_ns = 0;
  uint64_t segment_size = 0;
};

// What a record carries besides its frame.
struct RecordMeta {
  int64_t sequence = 0;
  int64_t ingest_ns = 0;
  uint64_t client_id = 0;
};

constexpr size_t record_size(size_t frame_length) {
  return (kRecordHeaderSize + frame_length + kRecordAlignment - 1) & ~(kRecordAlignment - 1);
}

// "00000000000000000001.seg"
std::string segment_file_name(uint64_t first_sequence);
// The first sequence named by a segment file name, or nullopt if it is not one.
std::optional<uint64_t> parse_segment_file_name(std::string_view name);

// Writes the 64-byte header. REQUIRES: out.size() >= kSegmentHeaderSize.
void encode_segment_header(const SegmentHeader& header, std::span<std::byte> out);

enum class HeaderCheck { kOk, kBadMagic, kBadVersion, kBadSize, kBadCrc };
HeaderCheck decode_segment_header(std::span<const std::byte> in, SegmentHeader* header);
std::string_view header_check_name(HeaderCheck check);

// Writes one record (header, frame, zero padding) and returns its size.
// REQUIRES: 4 <= frame.size() <= 1024; out.size() >= record_size(frame.size()).
size_t encode_record(const RecordMeta& meta, std::span<const std::byte> frame,
                     std::span<std::byte> out);

// The CRC a record at `record` (frame length already read from its first 4 bytes) must carry:
// over the length field and everything after the CRC field. Inline: the reader's and the
// writer's per-record cost is mostly this.
inline uint32_t record_crc(const std::byte* record, size_t frame_length) {
  const uint32_t crc = crc32c_extend_short(0, record, 4);
  return crc32c_extend_short(crc, record + 8, kRecordHeaderSize - 8 + frame_length);
}

}  // namespace sluice::journal

#endif  // SLUICE_IO_JOURNAL_FORMAT_H_
