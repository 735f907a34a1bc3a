#include "io/snapshot_format.h"

#include <dirent.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "core/crc32c.h"
#include "core/wire_format.h"
#include "io/io_error.h"

namespace sluice::snapshot {
namespace {

using wire::load;
using wire::store;

constexpr size_t kHeaderCrcAt = 124;
constexpr size_t kBodyCrcAt = 120;

bool parse_u64(std::string_view s, uint64_t* out) {
  if (s.empty()) return false;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), *out);
  return ec == std::errc() && end == s.data() + s.size();
}

}  // namespace

void encode_header(const Header& h, std::span<std::byte> out) {
  std::byte* p = out.data();
  std::memset(p, 0, kHeaderSize);
  store<uint64_t>(p, kMagic);
  store<uint32_t>(p + 8, kFormatVersion);
  store<uint32_t>(p + 12, kHeaderSize);
  store<uint32_t>(p + 16, h.shard_index);
  store<uint32_t>(p + 20, h.shard_count);
  store<int64_t>(p + 24, h.sequence);
  store<int64_t>(p + 32, h.max_time);
  store<uint64_t>(p + 40, h.config_fingerprint);
  store<int64_t>(p + 48, h.created_ns);
  store<uint64_t>(p + 56, h.body_length);
  store<uint64_t>(p + 64, h.accounts);
  store<uint64_t>(p + 72, h.history_entries);
  store<uint64_t>(p + 80, h.positions);
  store<uint64_t>(p + 88, h.rate_accounts);
  store<uint64_t>(p + 96, h.rate_entries);
  store<uint64_t>(p + 104, h.timers);
  store<uint64_t>(p + 112, h.clients);
  store<uint32_t>(p + kBodyCrcAt, h.body_crc);
  store<uint32_t>(p + kHeaderCrcAt, crc32c(p, kHeaderCrcAt));
}

absl::StatusOr<Header> decode_header(std::span<const std::byte> in) {
  if (in.size() < kHeaderSize) {
    return absl::DataLossError(
        absl::StrCat("shorter than a header (", in.size(), " of ", kHeaderSize, " bytes)"));
  }
  const std::byte* p = in.data();
  if (load<uint64_t>(p) != kMagic) return absl::DataLossError("bad magic: not a snapshot file");
  if (load<uint32_t>(p + kHeaderCrcAt) != crc32c(p, kHeaderCrcAt)) {
    return absl::DataLossError("header CRC mismatch");
  }
  if (load<uint32_t>(p + 8) != kFormatVersion) {
    return absl::DataLossError(absl::StrCat("format version ", load<uint32_t>(p + 8),
                                            ", this build reads ", kFormatVersion));
  }
  if (load<uint32_t>(p + 12) != kHeaderSize) return absl::DataLossError("bad header size");
  Header h;
  h.shard_index = load<uint32_t>(p + 16);
  h.shard_count = load<uint32_t>(p + 20);
  h.sequence = load<int64_t>(p + 24);
  h.max_time = load<int64_t>(p + 32);
  h.config_fingerprint = load<uint64_t>(p + 40);
  h.created_ns = load<int64_t>(p + 48);
  h.body_length = load<uint64_t>(p + 56);
  h.accounts = load<uint64_t>(p + 64);
  h.history_entries = load<uint64_t>(p + 72);
  h.positions = load<uint64_t>(p + 80);
  h.rate_accounts = load<uint64_t>(p + 88);
  h.rate_entries = load<uint64_t>(p + 96);
  h.timers = load<uint64_t>(p + 104);
  h.clients = load<uint64_t>(p + 112);
  h.body_crc = load<uint32_t>(p + kBodyCrcAt);
  if (h.shard_count == 0 || h.shard_index >= h.shard_count) {
    return absl::DataLossError(
        absl::StrCat("shard ", h.shard_index, " of ", h.shard_count, " is not a shard"));
  }
  return h;
}

absl::StatusOr<Header> verify(std::span<const std::byte> file) {
  absl::StatusOr<Header> h = decode_header(file);
  if (!h.ok()) return h;
  const uint64_t have = file.size() - kHeaderSize;
  if (have != h->body_length) {
    return absl::DataLossError(
        absl::StrCat(have < h->body_length ? "truncated: " : "too long: ", "body is ", have,
                     " bytes, header says ", h->body_length));
  }
  if (crc32c(file.data() + kHeaderSize, have) != h->body_crc) {
    return absl::DataLossError("body CRC mismatch");
  }
  return h;
}

std::string file_name(const Name& n) {
  return absl::StrFormat("shard-%u-of-%u-%020d%s", n.shard_index, n.shard_count, n.sequence,
                         kSuffix.data());
}

std::optional<Name> parse_file_name(std::string_view f) {
  if (f.size() <= kSuffix.size() || f.substr(f.size() - kSuffix.size()) != kSuffix) {
    return std::nullopt;
  }
  f.remove_suffix(kSuffix.size());
  if (f.substr(0, 6) != "shard-") return std::nullopt;
  f.remove_prefix(6);
  const size_t of = f.find("-of-");
  if (of == std::string_view::npos) return std::nullopt;
  const size_t dash = f.find('-', of + 4);
  if (dash == std::string_view::npos || f.size() - dash - 1 != 20) return std::nullopt;
  uint64_t k, n, s;
  if (!parse_u64(f.substr(0, of), &k) || !parse_u64(f.substr(of + 4, dash - of - 4), &n) ||
      !parse_u64(f.substr(dash + 1), &s)) {
    return std::nullopt;
  }
  if (n == 0 || k >= n || n > UINT32_MAX || s > static_cast<uint64_t>(INT64_MAX)) {
    return std::nullopt;
  }
  return Name{static_cast<uint32_t>(k), static_cast<uint32_t>(n), static_cast<int64_t>(s)};
}

absl::StatusOr<std::vector<Listed>> list(const std::string& dir) {
  std::vector<Listed> out;
  DIR* d = ::opendir(dir.c_str());
  if (d == nullptr) {
    if (errno == ENOENT) return out;
    return io_error(errno, "open snapshot directory", dir);
  }
  while (const dirent* e = ::readdir(d)) {
    const std::optional<Name> name = parse_file_name(e->d_name);
    if (name.has_value()) out.push_back(Listed{*name, absl::StrCat(dir, "/", e->d_name)});
  }
  ::closedir(d);
  std::sort(out.begin(), out.end(), [](const Listed& a, const Listed& b) {
    if (a.name.sequence != b.name.sequence) return a.name.sequence > b.name.sequence;
    if (a.name.shard_count != b.name.shard_count) return a.name.shard_count < b.name.shard_count;
    return a.name.shard_index < b.name.shard_index;
  });
  return out;
}

}  // namespace sluice::snapshot
