// Reading a journal back (io/journal_format.h has the layout, docs/journal.md the user's view):
// scan_journal checks a whole journal and summarises it; JournalReader streams its records in
// sequence order for replay, recovery and `sluice journal dump`.
//
// What the reader calls what. Segments are preallocated and zero-filled, so:
//  - Clean end of a segment: a record position whose 4-byte length is 0 and whose remainder of
//    the segment is all zeros (or the position is the segment's end).
//  - Bad record: frame length outside 4..1024, not equal to the frame's own u16 length, record
//    running past the end of the segment (or of a file cut short), CRC mismatch, or a sequence
//    that is not the previous one + 1 (the first record of a segment: the header's first
//    sequence).
//  - Torn tail: a bad record in the LAST segment followed by nothing but zeros, or a last
//    segment that is all zeros (crash while creating it; offset 0). It is where a crash cut the
//    log: the end of the log, reported (TornTail) but not an error.
//  - Corruption (absl::DataLossError, "<segment path> offset <N>: <what>"): a bad record
//    followed by any non-zero byte, or a bad record in a segment that is not the last; a zero
//    length followed by non-zero bytes (a hole: the writer never writes length 0, and sectors
//    are written whole, so data after a zero length means lost writes, which the reader cannot
//    tell from lost acknowledged records); a bad segment header (magic, CRC, version, file
//    shorter than the header) unless the last segment is all zeros; a header first sequence
//    differing from the file name's or not continuing the previous segment; a segment without
//    records that is not the last.
//  - A segment's extent is min(file size, header segment_size): a file cut short is read as far
//    as it goes (ending mid-record is a bad record at the end: torn if last, corrupt otherwise);
//    bytes past segment_size are not part of the segment.
//
// Thread safety: a JournalReader is used by one thread at a time (its read-ahead thread, when
// on, is its own business); scan_journal is reentrant.
// Readers of the same directory in different threads are independent.
// The reader sees the segment files present at open(); it is not for tailing a journal that is
// being written (a record in flight looks like a torn tail), and a segment file truncated while
// mapped kills the process with SIGBUS (like any mmap reader).
#ifndef SLUICE_IO_JOURNAL_READER_H_
#define SLUICE_IO_JOURNAL_READER_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "io/journal_format.h"

namespace sluice::journal {

struct SegmentInfo {
  std::string path;
  uint64_t first_sequence = 0;  // from the file name (== the header's when the header is valid)
  SegmentHeader header;         // all zero for an all-zero (torn) last segment
  int64_t record_count = 0;
  int64_t last_sequence = 0;  // 0 if the segment holds no record
  uint64_t data_end = 0;      // offset after the last good record (header size if none; 0 if the
                              // segment is all zeros)
  uint64_t file_size = 0;     // < header.segment_size means the file was cut short
  int64_t first_ingest_ns = 0;  // 0 if no record
  int64_t last_ingest_ns = 0;
};

struct TornTail {
  std::string path;
  uint64_t offset = 0;  // of the bad record; 0 for an all-zero segment
  std::string reason;
};

struct JournalScan {
  std::vector<SegmentInfo> segments;  // in sequence order
  int64_t first_sequence = 0;         // 0 if the journal holds no record
  int64_t last_sequence = 0;          // 0 if the journal holds no record
  int64_t record_count = 0;
  uint64_t bytes = 0;  // record bytes (headers, frames and padding), not segment headers or zeros
  std::optional<TornTail> torn_tail;
};

// Reads every segment of the journal in `dir` end to end, verifying every header and record.
// Errors: NotFound if `dir` does not exist, FailedPrecondition if it is not a directory,
// DataLoss on corruption (see above) or on a "*.seg" file whose name is not
// "<20 digits>.seg", other codes for I/O errors. A directory without segment files is an empty
// journal (OK). Files not ending in ".seg" are ignored.
// Cost: one pass over the data (~memory bandwidth, the CRC is hardware), plus a check that each
// segment's unused remainder is zero (holes are skipped via SEEK_DATA without reading them).
absl::StatusOr<JournalScan> scan_journal(const std::string& dir);

// One record as read. `frame` points into the reader's buffer: valid until the reader's next
// call of next(), next_batch(), seek() or its destruction.
struct Record {
  int64_t sequence = 0;
  int64_t ingest_ns = 0;
  uint64_t client_id = 0;
  std::span<const std::byte> frame;  // the wire frame as received, header included
};

enum class ReadResult {
  kRecord,   // *out holds the next record
  kEnd,      // no more records; torn_tail() says whether a torn tail ended the log
  kCorrupt,  // reading cannot go on; status() says why: DataLoss for corruption, other codes
             // for I/O errors (open/mmap of a segment failed)
};

class JournalReader {
 public:
  // Also reachable as JournalReader::Record / JournalReader::ReadResult.
  using Record = journal::Record;
  using ReadResult = journal::ReadResult;

  // Records are read from a window of the segment this large, copied in with pread(2), not
  // through the mapping: a fresh mapping of a cached file reads at ~2 GiB/s on this kind of
  // machine (every page's first touch faults, dear under virtualisation), pread at ~8 GiB/s into
  // a buffer that stays in the cache (perf/RESULTS.md, "Replay"). The segment is still mapped
  // for the slow path's diagnosis, which may look anywhere in it.
  static constexpr size_t kReadWindowBytes = 1 << 20;

  // With read-ahead on, a helper thread reads the open segment's next window with pread, and
  // checks its records (length, frame length, CRC), while the caller reads the current one; the
  // caller's fast path then checks only the sequence. This takes the copy and the CRC off the
  // caller's thread, for a front-to-back read that does work of its own per record (replay,
  // recovery): a gain where the two CPUs share a cache, about even where they do not, and a
  // loss for a read that does nothing else, whose records then all cross caches
  // (perf/RESULTS.md, "Replay"). Off by default; on a machine with one CPU it stays off. It
  // takes effect at the next window; the thread starts at the first read-ahead and the
  // destructor joins it. Windows the thread could not fill or check (a read error, a bad
  // record, a seek) are read by the caller as without it, so what next() returns and every
  // error and offset are the same either way.
  void set_read_ahead(bool on);
  bool read_ahead() const { return read_ahead_on_; }
  // Windows read by the read-ahead thread and used, and windows read here (each pread of
  // up to kReadWindowBytes), since open().
  uint64_t windows_read_ahead() const { return windows_read_ahead_; }
  uint64_t windows_read_here() const { return windows_read_here_; }

  // Lists the segment files of `dir` (errors as scan_journal's, for the directory itself and
  // the file names) and positions the reader before the first record. Segment files are opened
  // lazily: a bad header shows as kCorrupt from next().
  static absl::StatusOr<std::unique_ptr<JournalReader>> open(const std::string& dir);

  ~JournalReader();
  JournalReader(const JournalReader&) = delete;
  JournalReader& operator=(const JournalReader&) = delete;

  // Positions the reader at the first record whose sequence is >= `sequence` (the first record
  // for anything at or before the journal's first sequence; the end past the last). Clears a
  // previous kEnd / kCorrupt. Returns the corruption met on the way (then next() returns
  // kCorrupt too); reaching the end, torn or not, is OK and next() returns kEnd.
  // Cost: a binary search over the segments' first sequences (from their names), then a walk
  // over the records of that segment before the target, each fully checked (CRC included):
  // O(bytes before the target in its segment), ~tens of ms for a full 128 MiB segment from the
  // page cache. Records have no fixed size, so there is nothing cheaper without an index.
  absl::Status seek(int64_t sequence);

  // The next record in sequence order. Sticky: after kEnd or kCorrupt it returns the same until
  // seek(). Crossing into the next segment unmaps the previous one.
  // The per-record path: length bounds, frame length field, CRC32C, sequence, pointer bump; no
  // allocation, no system call. Only the end of the window (a pread of the next one), a bad
  // record or the end of a segment takes the slow path.
  ReadResult next(Record* out) {
    if (read_fast(out)) return ReadResult::kRecord;
    return next_slow(out);
  }
  // The next records, as next() would return them one by one: up to out.size() of them, fewer
  // where the reader's window ends, 0 where next() would not return kRecord (status() and
  // torn_tail() then say why, as after next()). All of them point into one window, so all stay
  // valid until the next call of next(), next_batch() or seek(): a caller can look ahead over a
  // batch (to prefetch what the records will touch) without copying them out.
  size_t next_batch(std::span<Record> out) {
    size_t n = 0;
    while (n < out.size() && read_fast(&out[n])) ++n;
    if (n == 0 && !out.empty() && next_slow(&out[0]) == ReadResult::kRecord) n = 1;
    return n;
  }

  // The corruption (or I/O error) after kCorrupt; OK otherwise.
  const absl::Status& status() const { return status_; }
  // Set when kEnd came from a torn tail.
  const std::optional<TornTail>& torn_tail() const { return torn_tail_; }

  // Where the reader is, for diagnostics: the segment file being read (before the first read:
  // the one about to be) and the byte offset in it of the next record to read. After kCorrupt:
  // the bad record (or the bad header field); after a torn kEnd: the torn record (0 for an
  // all-zero segment); after a clean kEnd: the end of the last segment's data. The path is
  // empty for a journal without segments.
  const std::string& position_path() const;
  uint64_t position_offset() const { return pos_; }

 private:
  struct Segment {
    std::string path;
    uint64_t first_sequence = 0;  // from the file name
  };
  enum class State { kReading, kEnd, kCorrupt };
  enum class Diagnosis { kGood, kCleanEnd, kBad, kHole };

  JournalReader(std::string dir, std::vector<Segment> segments);

  // The size of the record at p if it is whole in the `left` bytes there and good (length in
  // 4..1024, its frame's own length equal, CRC); 0 otherwise. The sequence is not checked.
  static size_t whole_good_record(const std::byte* p, uint64_t left) {
    if (left < kRecordHeaderSize) return 0;
    const uint32_t length = wire::load<uint32_t>(p);
    // One unsigned compare for 4 <= length <= 1024.
    if (length - wire::kHeaderSize > wire::kMaxFrameSize - wire::kHeaderSize) return 0;
    const size_t size = record_size(length);
    if (size > left) return 0;
    if (wire::load<uint16_t>(p + kRecordHeaderSize) != length) return 0;
    if (wire::load<uint32_t>(p + 4) != record_crc(p, length)) return 0;
    return size;
  }

  // The fast path: true and *out filled if a good record is at pos_ of the window.
  bool read_fast(Record* out) {
    // window_begin_ <= pos_ <= window_end_ <= limit_ and checked_end_ <= window_end_ while a
    // segment is open; an unmapped or stopped (kEnd / kCorrupt) reader has pos_ == window_end_.
    if (window_end_ - pos_ < kRecordHeaderSize) return false;
    const std::byte* p = window_data_ + (pos_ - window_begin_);
    size_t size;
    if (pos_ < checked_end_) {
      // The read-ahead thread found a whole, good record here.
      size = record_size(wire::load<uint32_t>(p));
    } else {
      size = whole_good_record(p, window_end_ - pos_);
      if (size == 0) return false;
    }
    if (wire::load<int64_t>(p + 8) != expected_) return false;
    out->sequence = expected_;
    out->ingest_ns = wire::load<int64_t>(p + 16);
    out->client_id = wire::load<uint64_t>(p + 24);
    out->frame = std::span<const std::byte>(p + kRecordHeaderSize, wire::load<uint32_t>(p));
    pos_ += size;
    ++expected_;
    return true;
  }
  // Makes the window start at pos_: the read-ahead thread's window if it holds the record at
  // pos_ and more, otherwise [pos_, min(pos_ + kReadWindowBytes, limit_)) read here. Then starts
  // the read-ahead of the next window. False (state_ set) on a read error.
  bool fill_window();
  // buffers_[index], allocated on first use.
  std::byte* buffer(size_t index);
  // Waits for the read-ahead in flight, if any, and drops its window.
  void cancel_read_ahead();
  // Starts reading the window after this one on the read-ahead thread; `walk_from` is a record
  // boundary in this window from which the thread finds the record the next window starts with.
  void start_read_ahead(uint64_t walk_from);

  ReadResult next_slow(Record* out);
  // Maps segments_[index] and checks its header; false if reading must stop (state_ set).
  bool open_segment(size_t index);
  void unmap();
  // Why the record at pos_ did not pass the fast path; *reason says what was wrong.
  Diagnosis diagnose(std::string* reason) const;
  // Where a bad record at pos_ ends at the latest, for the "followed by zeros" test.
  uint64_t bad_record_end() const;
  // The offset of the first non-zero byte of [from, to) of the mapped segment, or nullopt.
  std::optional<uint64_t> find_nonzero(uint64_t from, uint64_t to) const;
  // The same within [from, to), which holds data (no holes).
  std::optional<uint64_t> find_nonzero_in_data(uint64_t from, uint64_t to) const;
  bool is_last_segment() const { return current_ + 1 == segments_.size(); }
  // Stops reading at `offset`: pos_ there, and nothing left for read_fast().
  void stop_at(uint64_t offset);
  ReadResult fail(uint64_t offset, const std::string& what);
  ReadResult end_torn(uint64_t offset, std::string reason);

  friend absl::StatusOr<JournalScan> scan_journal(const std::string& dir);

  std::string dir_;
  std::vector<Segment> segments_;  // sorted by first sequence

  // The mapped segment; base_ == nullptr, limit_ == 0 when none.
  size_t current_ = 0;       // index into segments_ of the mapped (or next to map) segment
  int fd_ = -1;
  const std::byte* base_ = nullptr;
  size_t map_size_ = 0;      // == file size
  uint64_t limit_ = 0;       // min(file size, header segment_size)
  uint64_t pos_ = 0;
  SegmentHeader header_;      // of the mapped segment, once checked

  // The fast path's copy of the open segment's bytes [window_begin_, window_end_), at
  // window_data_ in buffers_[current_buffer_]. Each buffer is kWindowHeadroom bytes (room for
  // the read-ahead to put a record cut by the previous window's end in front) and a window.
  // The second buffer is allocated with read-ahead, which fills it while this one is read.
  static constexpr size_t kWindowHeadroom = kMaxRecordSize;
  std::unique_ptr<std::byte[]> buffers_[2];
  size_t current_buffer_ = 0;
  const std::byte* window_data_ = nullptr;
  uint64_t window_begin_ = 0;
  uint64_t window_end_ = 0;
  // Records in [window_begin_, checked_end_) were checked whole and good by the read-ahead
  // thread (== window_begin_ for a window read here).
  uint64_t checked_end_ = 0;

  class ReadAhead;
  std::unique_ptr<ReadAhead> read_ahead_;  // the thread, once started
  bool read_ahead_on_ = false;
  uint64_t windows_read_ahead_ = 0;
  uint64_t windows_read_here_ = 0;

  int64_t expected_ = 0;         // the sequence the next record must carry
  bool expected_known_ = false;  // false until a segment header sets it (after open / seek)

  State state_ = State::kReading;
  absl::Status status_;
  std::optional<TornTail> torn_tail_;
};

}  // namespace sluice::journal

#endif  // SLUICE_IO_JOURNAL_READER_H_
