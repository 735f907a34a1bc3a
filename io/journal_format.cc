#include "io/journal_format.h"

#include <charconv>
#include <cstring>

#include "absl/strings/str_format.h"

namespace sluice::journal {

using wire::load;
using wire::store;

std::string segment_file_name(uint64_t first_sequence) {
  return absl::StrFormat("%020u%s", first_sequence, std::string(kSegmentSuffix));
}

std::optional<uint64_t> parse_segment_file_name(std::string_view name) {
  if (name.size() != 20 + kSegmentSuffix.size() || !name.ends_with(kSegmentSuffix)) {
    return std::nullopt;
  }
  uint64_t value = 0;
  const char* end = name.data() + 20;
  auto [ptr, ec] = std::from_chars(name.data(), end, value);
  if (ec != std::errc() || ptr != end) return std::nullopt;
  return value;
}

void encode_segment_header(const SegmentHeader& header, std::span<std::byte> out) {
  std::byte* p = out.data();
  std::memset(p, 0, kSegmentHeaderSize);
  store(p, kSegmentMagic);
  store(p + 8, kFormatVersion);
  store(p + 12, static_cast<uint32_t>(kSegmentHeaderSize));
  store(p + 16, header.first_sequence);
  store(p + 24, header.created_ns);
  store(p + 32, header.segment_size);
  store(p + 60, crc32c(p, 60));
}

HeaderCheck decode_segment_header(std::span<const std::byte> in, SegmentHeader* header) {
  if (in.size() < kSegmentHeaderSize) return HeaderCheck::kBadSize;
  const std::byte* p = in.data();
  if (load<uint64_t>(p) != kSegmentMagic) return HeaderCheck::kBadMagic;
  if (load<uint32_t>(p + 60) != crc32c(p, 60)) return HeaderCheck::kBadCrc;
  if (load<uint32_t>(p + 8) != kFormatVersion) return HeaderCheck::kBadVersion;
  if (load<uint32_t>(p + 12) != kSegmentHeaderSize) return HeaderCheck::kBadSize;
  header->first_sequence = load<uint64_t>(p + 16);
  header->created_ns = load<int64_t>(p + 24);
  header->segment_size = load<uint64_t>(p + 32);
  return HeaderCheck::kOk;
}

std::string_view header_check_name(HeaderCheck check) {
  switch (check) {
    case HeaderCheck::kOk: return "ok";
    case HeaderCheck::kBadMagic: return "bad magic number";
    case HeaderCheck::kBadVersion: return "unsupported format version";
    case HeaderCheck::kBadSize: return "bad header size";
    case HeaderCheck::kBadCrc: return "header CRC mismatch";
  }
  return "?";
}

}  // namespace sluice::journal
