// Snapshot files: one shard's state as of one journal sequence (docs/snapshots.md has the
// user-facing description).
//
// Name: "shard-<k>-of-<N>-<S as 20 digits>.snap" in the snapshot directory (<data>/snapshots/).
// Written as "<name>.tmp", fsync'ed, renamed into place, then the directory fsync'ed: a file
// with the final name is complete unless the disk lies; a ".tmp" is never read.
//
// Header, 128 bytes at offset 0 (little-endian):
//    0 u64 magic "SLUICESN"      8 u32 format version        12 u32 header size (128)
//   16 u32 shard index          20 u32 shard count          24 i64 sequence S
//   32 i64 maxT (INT64_MIN: none yet)                        40 u64 config fingerprint
//   48 i64 created (ns since the Unix epoch)                 56 u64 body length
//   64 u64 accounts   72 u64 history entries   80 u64 positions   88 u64 rate accounts
//   96 u64 rate entries  104 u64 timers  112 u64 clients
//  120 u32 CRC32C of the body          124 u32 CRC32C of bytes 0..123
// Body: the state image's directory and regions (pipeline/state_store.h), body length bytes.
//
// Thread safety: pure functions.
#ifndef SLUICE_IO_SNAPSHOT_FORMAT_H_
#define SLUICE_IO_SNAPSHOT_FORMAT_H_

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace sluice::snapshot {

inline constexpr uint64_t kMagic = 0x4E53454349554C53ull;  // "SLUICESN" little-endian
inline constexpr uint32_t kFormatVersion = 1;
inline constexpr size_t kHeaderSize = 128;
inline constexpr std::string_view kSuffix = ".snap";
inline constexpr std::string_view kTempSuffix = ".tmp";

struct Header {
  uint32_t shard_index = 0;
  uint32_t shard_count = 0;
  int64_t sequence = 0;
  int64_t max_time = 0;
  uint64_t config_fingerprint = 0;
  int64_t created_ns = 0;
  uint64_t body_length = 0;
  uint64_t accounts = 0;
  uint64_t history_entries = 0;
  uint64_t positions = 0;
  uint64_t rate_accounts = 0;
  uint64_t rate_entries = 0;
  uint64_t timers = 0;
  uint64_t clients = 0;
  uint32_t body_crc = 0;

  uint64_t entries() const { return history_entries + positions + rate_entries + timers + clients; }
};

// Writes the header (computing its CRC). REQUIRES: out.size() >= kHeaderSize.
void encode_header(const Header& header, std::span<std::byte> out);
// Reads and checks a header: magic, version, header size, header CRC. The error says which.
absl::StatusOr<Header> decode_header(std::span<const std::byte> in);

// A whole file: the header as above, a body of exactly body_length bytes, and its CRC.
absl::StatusOr<Header> verify(std::span<const std::byte> file);

struct Name {
  uint32_t shard_index = 0;
  uint32_t shard_count = 0;
  int64_t sequence = 0;
};
std::string file_name(const Name& name);  // "shard-0-of-2-00000000000000001000.snap"
std::optional<Name> parse_file_name(std::string_view file_name);

struct Listed {
  Name name;
  std::string path;
};
// The snapshot files of `dir` (names that parse), newest sequence first, then by shard. A
// missing directory is an empty list; temp files and other names are skipped.
absl::StatusOr<std::vector<Listed>> list(const std::string& dir);

}  // namespace sluice::snapshot

#endif  // SLUICE_IO_SNAPSHOT_FORMAT_H_
