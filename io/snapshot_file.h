// Writing a snapshot file atomically and mapping one back (io/snapshot_format.h has the format).
//
// Thread safety: the functions are reentrant; a MappedSnapshot is an immutable read-only view
// that any thread may read.
#ifndef SLUICE_IO_SNAPSHOT_FILE_H_
#define SLUICE_IO_SNAPSHOT_FILE_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "io/snapshot_format.h"

namespace sluice::snapshot {

// Writes `file` (header already in its first kHeaderSize bytes, body after) to
// "<dir>/<name>.tmp", fsyncs it, renames it to "<dir>/<name>" and fsyncs the directory.
// On error the temp file is removed; the error names the file and the operation.
absl::Status write_file_atomically(const std::string& dir, const std::string& name,
                                   std::span<const std::byte> file);

// Fills in the body length and CRC of `header` from `file`'s body and encodes the header into
// the file's first kHeaderSize bytes. REQUIRES: file.size() >= kHeaderSize.
void seal(Header header, std::span<std::byte> file);

// Removes "<name>.tmp" files of `dir` (a crash in the middle of a write leaves one).
void remove_temp_files(const std::string& dir);

// Keeps the newest `keep` snapshots of shard `index` of `count` in `dir` and unlinks the rest.
absl::Status prune(const std::string& dir, uint32_t index, uint32_t count, int keep);

// A snapshot file mapped read-only.
class MappedSnapshot {
 public:
  // Maps `path`. With verify, checks the header and the body CRC (reads the whole file);
  // without, checks the header only. Errors: NotFound, DataLoss naming what is wrong.
  static absl::StatusOr<std::unique_ptr<MappedSnapshot>> open(const std::string& path,
                                                              bool verify = true);
  ~MappedSnapshot();
  MappedSnapshot(const MappedSnapshot&) = delete;
  MappedSnapshot& operator=(const MappedSnapshot&) = delete;

  const Header& header() const { return header_; }
  std::span<const std::byte> bytes() const { return {data_, size_}; }
  const std::string& path() const { return path_; }

 private:
  MappedSnapshot() = default;
  std::string path_;
  const std::byte* data_ = nullptr;
  size_t size_ = 0;
  Header header_;
};

}  // namespace sluice::snapshot

#endif  // SLUICE_IO_SNAPSHOT_FILE_H_
