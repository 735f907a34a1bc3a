// The daemon's data directory: its layout and the lock that keeps a second daemon out.
//
//   <data>/LOCK          held (flock) by the running daemon; holds its pid
//   <data>/journal/      the journal's segments (io/journal_format.h)
//   <data>/snapshots/    shard snapshots
//   <data>/alerts.log    one line an alert, append-only (io/alerts_log.h)
//   <data>/stats         the stats file (io/stats_file.h)
//   <data>/config.toml   the configuration the daemon last ran with (replay uses its thresholds)
//
// Thread safety: DataDirLock is owned by the main thread.
#ifndef SLUICE_IO_DATA_DIR_H_
#define SLUICE_IO_DATA_DIR_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"

namespace sluice {

struct DataDirPaths {
  std::string root;
  std::string lock;
  std::string journal;
  std::string snapshots;
  std::string alerts_log;
  std::string stats;
  std::string config;
};
DataDirPaths data_dir_paths(const std::string& root);

// An exclusive flock on <data>/LOCK, released when destroyed (or when the process dies, so a
// crashed daemon never leaves a stale lock behind).
class DataDirLock {
 public:
  // Creates the directory if needed. FailedPrecondition naming the directory and the holder's
  // pid when another process holds the lock.
  static absl::StatusOr<std::unique_ptr<DataDirLock>> acquire(const std::string& root);
  ~DataDirLock();
  DataDirLock(const DataDirLock&) = delete;
  DataDirLock& operator=(const DataDirLock&) = delete;

 private:
  explicit DataDirLock(int fd) : fd_(fd) {}
  int fd_;
};

}  // namespace sluice

#endif  // SLUICE_IO_DATA_DIR_H_
