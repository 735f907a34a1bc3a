// JournalWriter: appends records to the journal with group commit, through io_uring when the
// kernel has it and pwrite/fdatasync when it does not.
//
// append() copies a record into the open batch (no system call). poll() moves batches to disk:
// while one batch is being written (and, per durability, fdatasync'ed), the next one fills, so
// the batch size follows the disk's speed (natural batching), bounded by max_batch_bytes. At
// most one write is in flight, so the file never holds a later batch without the earlier one: a
// crash leaves a prefix of what was appended, plus at most a torn tail.
//
// Two sequences say how far the journal is: written() (handed to the kernel: survives a process
// crash) and durable() (fdatasync'ed: survives a power cut). Stages gate on durable() when the
// durability mode is sync.
//
// Faults are loud: a failed write, fdatasync or segment roll (EIO, ENOSPC, EFBIG...) stops the
// writer; status() names the file, the operation and the offset; written() and durable() stop
// where the disk stopped; append() returns kFailed from then on, so the caller refuses input
// instead of losing it. With sync durability, what a failed batch left in the file (a write
// that stopped part way, or all of it when its fdatasync failed) is overwritten with zeros and
// fdatasync'ed: nothing of that batch was answered, so a restart must not find it journaled
// (deduplication would then swallow the client's resend of an event it never got an answer
// for). status() says whether that erasure worked.
//
// Thread safety: one thread at a time calls append, poll, flush and close; it may change
// hands (opened on the main thread, driven by the journal agent's, closed on the main thread
// again) when the hand-over synchronises, as starting and joining a thread does. Any thread may
// read written(), durable() and failed().
#ifndef SLUICE_IO_JOURNAL_WRITER_H_
#define SLUICE_IO_JOURNAL_WRITER_H_

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <thread>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "core/sequence.h"
#include "io/journal_format.h"
#include "io/uring.h"

namespace sluice::journal {

enum class Durability : uint8_t {
  kNone,   // page cache only: survives a process crash, not a power cut
  kBatch,  // fdatasync every group commit; decisions are not held back for it
  kSync,   // fdatasync every group commit, and nothing is answered before it is durable
};
absl::StatusOr<Durability> parse_durability(std::string_view name);  // none | batch | sync
std::string_view durability_name(Durability d);

struct WriterOptions {
  std::string dir;
  uint64_t segment_size = kDefaultSegmentSize;
  Durability durability = Durability::kBatch;
  size_t max_batch_bytes = 1 << 20;  // a group commit writes at most this much at once
  bool use_io_uring = true;           // false: pwrite + fdatasync on the calling thread
  // Durability none only, where no answer waits for the journal: a write starts once the open
  // batch holds min_write_bytes, or once poll() has seen it pending for max_write_delay_ns,
  // rather than as soon as the previous write finished. Each write of a buffered file is a
  // wake-up of an io_uring worker thread (ext4 takes buffered writes asynchronously only that
  // way), which on a small machine preempts a busy thread: at 300k events/s natural batching
  // made ~8k such wake-ups a second. flush(), close() and a segment roll write at once.
  // 0: no minimum (natural batching, as batch and sync always do).
  size_t min_write_bytes = 0;
  int64_t max_write_delay_ns = 1'000'000;
  // With durability batch or sync: once the open segment is half full, a background thread
  // writes the next segment's zeros into kPreparedSegmentName, 1 MiB at a time each pushed to
  // the disk before the next, and fdatasyncs it; the roll then writes the header and renames
  // it. fdatasync on written blocks skips ext4's unwritten-extent conversion, which a
  // fallocate'd segment pays on every commit (perf/RESULTS.md, "Journal": raw fdatasync p50
  // 1.4-2x lower, durable-commit p50 lower in every measured pair). A roll never waits for it:
  // an unfinished preparation means a fallocate'd segment, as without it.
  bool prepare_segments = true;
  // The preparation thread runs SCHED_IDLE (only on an otherwise idle CPU, so it never delays
  // a stage; with busy-spinning stages on every CPU it may never finish, and rolls fall back);
  // false: nice 10, for tests that wait for it on a loaded machine.
  bool prepare_in_idle_time = true;
};

// The next segment's zeros, written ahead of need; never read as part of the journal (it does
// not end in ".seg"). A writer removes a leftover one when it opens and when it closes.
inline constexpr std::string_view kPreparedSegmentName = "next-segment.tmp";

enum class AppendResult : uint8_t {
  kOk,
  kFull,    // the open batch is full and the previous one is still on its way: poll() and retry
  kFailed,  // the writer has stopped; see status()
};

class JournalWriter {
 public:
  // Opens (creating the directory if needed) and recovers the journal: a torn tail is
  // truncated, corruption is an error (a journal that is corrupt before its tail is not
  // appended to). Appending continues at last_sequence() + 1.
  static absl::StatusOr<std::unique_ptr<JournalWriter>> open(const WriterOptions& options);
  ~JournalWriter();
  JournalWriter(const JournalWriter&) = delete;
  JournalWriter& operator=(const JournalWriter&) = delete;

  // Appends one record. REQUIRES: meta.sequence == next_sequence(); 4 <= frame.size() <= 1024.
  // A broken REQUIRES fails the writer (InvalidArgument) rather than write a bad journal.
  // Inline: the common case (the record fits the open batch) is a few compares and
  // encode_record().
  AppendResult append(const RecordMeta& meta, std::span<const std::byte> frame) noexcept {
    const size_t size = record_size(frame.size());
    if (meta.sequence == next_sequence_ && frame.size() - wire::kHeaderSize <=
                                               wire::kMaxFrameSize - wire::kHeaderSize &&
        open_.size < options_.max_batch_bytes && end_offset_ + size <= segment_capacity_ &&
        !roll_needed_ && !failed()) [[likely]] {
      // open_.size < max_batch_bytes leaves room: the buffer holds max_batch_bytes plus one
      // maximal record.
      add_record(meta, frame, size);
      return AppendResult::kOk;
    }
    return append_slow(meta, frame);
  }

  // Reaps finished I/O and starts the next batch; never blocks on the disk. Returns the number
  // of events it moved forward (records newly written or made durable, batches started).
  int poll();

  // Blocks until everything appended is written and, unless durability is none, durable.
  absl::Status flush();

  // flush(), then fdatasync whatever mode (a clean stop leaves a durable journal) and close.
  absl::Status close();

  int64_t next_sequence() const noexcept { return next_sequence_; }
  int64_t last_sequence() const noexcept { return next_sequence_ - 1; }
  const Sequence& written() const noexcept { return written_; }
  const Sequence& durable() const noexcept { return durable_; }

  bool failed() const noexcept { return failed_.load(std::memory_order_acquire); }
  // The first failure; only meaningful on the writer's thread or after failed() was seen true.
  const absl::Status& status() const noexcept { return status_; }

  bool using_io_uring() const noexcept { return uring_ != nullptr; }
  // Makes every completion of the writer's io_uring also signal `eventfd`
  // (io_uring_register_eventfd), so a thread parked elsewhere (the network agent's ring, on the
  // same thread) wakes when a write or fdatasync finishes. A no-op on the pwrite fallback,
  // where writes complete inside poll(). The writer's thread only.
  absl::Status signal_completions_to(int eventfd);
  // Why io_uring is not used (empty when it is).
  const std::string& fallback_reason() const noexcept { return fallback_reason_; }
  const std::string& segment_path() const noexcept { return segment_path_; }
  const WriterOptions& options() const noexcept { return options_; }
  // Recovery's findings (the truncated torn tail, if any), for the log.
  const std::string& recovery_note() const noexcept { return recovery_note_; }

  // Segment preparation (WriterOptions::prepare_segments), for tests and stats: whether a
  // prepared segment is ready for the next roll, how many rolls used one, how many
  // preparations failed (or could not be used) and why the last one did (empty if none did).
  // The writer's thread only.
  bool prepared_segment_ready() const noexcept {
    return prepare_state_.load(std::memory_order_acquire) == kPrepareReady;
  }
  int64_t prepared_rolls() const noexcept { return prepared_rolls_; }
  int64_t prepare_failures() const noexcept { return prepare_failures_; }
  const std::string& prepare_error() const noexcept { return prepare_error_; }

 private:
  struct Batch {
    std::byte* data = nullptr;
    size_t size = 0;            // bytes of records
    int64_t last_sequence = 0;  // of its last record
    uint64_t offset = 0;        // where it goes in the segment
    size_t written = 0;         // bytes the kernel took so far
    int pending_ops = 0;        // io_uring completions still to come
    int write_error = 0;
    int sync_error = 0;
    bool synced = false;
  };

  explicit JournalWriter(const WriterOptions& options);
  absl::Status recover();
  absl::Status open_segment(uint64_t first_sequence);
  absl::Status roll();
  void fail(absl::Status status);
  // fail() for the batch in flight, once none of its operations is pending; with sync
  // durability, first erases what of it reached the file.
  void fail_batch(absl::Status status);
  AppendResult append_slow(const RecordMeta& meta, std::span<const std::byte> frame) noexcept;
  // Encodes the record into the open batch. REQUIRES: it fits, and the checks passed.
  void add_record(const RecordMeta& meta, std::span<const std::byte> frame, size_t size) noexcept {
    if (open_.size == 0) open_.offset = end_offset_;
    encode_record(meta, frame, std::span<std::byte>(open_.data + open_.size, size));
    open_.size += size;
    open_.last_sequence = meta.sequence;
    end_offset_ += size;
    ++next_sequence_;
  }

  // Segment preparation: the thread writes the zeros; the writer's thread starts it, reaps
  // it and uses its file.
  enum PrepareState : int { kPrepareNone, kPrepareRunning, kPrepareReady, kPrepareFailed };
  void maybe_start_preparing();
  void prepare_segment();  // the preparation thread's body
  // Turns the prepared file into the segment `path` (header, fdatasync, rename; the caller
  // fsyncs the directory); the fd on success, -1 (prepared file removed) if it could not.
  int use_prepared_segment(const std::string& path, uint64_t first_sequence);
  void stop_preparing();
  std::string prepared_path() const;

  bool idle() const noexcept { return !in_flight_active_; }
  // Whether the open batch should be written now (WriterOptions::min_write_bytes). REQUIRES:
  // open_.size > 0.
  bool write_due() noexcept;
  int poll(bool force);
  void start_batch();
  void submit_uring(bool write, bool sync);
  void handle_cqe(const io_uring_cqe& cqe);
  void finish_in_flight();
  void write_fallback();

  WriterOptions options_;
  std::unique_ptr<Uring> uring_;
  std::string fallback_reason_;
  std::string recovery_note_;

  int dir_fd_ = -1;
  int fd_ = -1;
  std::string segment_path_;
  uint64_t end_offset_ = 0;  // in the open segment, after every appended record
  uint64_t segment_capacity_ = 0;  // the open segment's size (its header's)
  bool roll_needed_ = false;

  std::unique_ptr<std::byte[], void (*)(void*)> buffers_{nullptr, nullptr};
  size_t buffer_capacity_ = 0;
  Batch open_;       // filling
  Batch in_flight_;  // on its way to disk
  bool in_flight_active_ = false;
  int64_t open_seen_ns_ = 0;  // when poll() first saw the open batch pending (0: not yet)

  std::thread prepare_thread_;
  std::atomic<int> prepare_state_{kPrepareNone};
  std::atomic<bool> prepare_stop_{false};
  std::string prepare_thread_error_;  // written by the thread before it publishes kPrepareFailed
  std::string prepare_error_;
  bool prepare_retry_ = true;  // false after a failed preparation, until the next roll
  int64_t prepared_rolls_ = 0;
  int64_t prepare_failures_ = 0;

  int64_t next_sequence_ = 1;
  Sequence written_;
  Sequence durable_;
  std::atomic<bool> failed_{false};
  absl::Status status_;
};

}  // namespace sluice::journal

#endif  // SLUICE_IO_JOURNAL_WRITER_H_
