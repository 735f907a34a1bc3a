// The alerts log: one line an alert, appended in the order egress sees them, in the daemon's
// data directory (docs/daemon.md):
//
//   <seq>,<event_time_ns>,<account_id>,<RULE_NAME>,<value>,<threshold>
//
// It is derived from the journal (a replay re-creates every alert), so it is written through
// the page cache without an fsync per line; the daemon syncs it before a snapshot commits, so
// a snapshot never covers alerts the log could lose. Reopening after a crash cuts a torn last
// line and remembers which alerts the log already holds: recovery re-runs the journal tail and
// offers its alerts again, and only the missing ones are appended (exactly once per (seq, rule)).
//
// Thread safety: one thread appends and flushes; sync() may be called from another thread
// (fdatasync on a shared descriptor).
#ifndef SLUICE_IO_ALERTS_LOG_H_
#define SLUICE_IO_ALERTS_LOG_H_

#include <cstdint>
#include <limits>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "core/output_event.h"

namespace sluice {

class AlertsLog {
 public:
  // Opens or creates the log; a last line without its newline (a crash mid-write) is cut off,
  // and so are the lines of events after `max_sequence` (the journal's last sequence): with
  // durability none or batch an event can be answered, and its alert logged, before the journal
  // has it, and a crash then loses it; its sequence number will be given to another event.
  static absl::StatusOr<std::unique_ptr<AlertsLog>> open(
      const std::string& path, int64_t max_sequence = std::numeric_limits<int64_t>::max());
  ~AlertsLog();
  AlertsLog(const AlertsLog&) = delete;
  AlertsLog& operator=(const AlertsLog&) = delete;

  // Buffers the alert's line unless the log already holds it (seq below the last logged one,
  // or the same seq and rule). REQUIRES: a.kind == kAlert, alerts offered in sequence order.
  void add(const OutputEvent& a);
  // Writes what is buffered. Errors name the file; the buffer is kept for a retry.
  absl::Status flush();
  // fdatasync.
  absl::Status sync();

  int64_t last_sequence() const noexcept { return last_seq_; }
  int64_t lines_written() const noexcept { return lines_; }
  // Lines removed at open because their events are not in the journal.
  int64_t lines_dropped() const noexcept { return dropped_; }
  bool has_buffered() const noexcept { return !buffer_.empty(); }
  const std::string& path() const noexcept { return path_; }

 private:
  AlertsLog(std::string path, int fd) : path_(std::move(path)), fd_(fd) {}

  std::string path_;
  int fd_;
  std::string buffer_;
  int64_t last_seq_ = 0;     // the highest seq logged (or buffered)
  uint32_t last_rules_ = 0;  // bit (rule - 1) of the alerts logged for last_seq_
  int64_t lines_ = 0;
  int64_t dropped_ = 0;
};

}  // namespace sluice

#endif  // SLUICE_IO_ALERTS_LOG_H_
