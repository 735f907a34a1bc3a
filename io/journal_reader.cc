#include "io/journal_reader.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <limits>
#include <string_view>
#include <system_error>
#include <thread>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "core/absl_compat.h"
#include "core/cpu.h"
#include "io/io_error.h"

namespace sluice::journal {
namespace {

using wire::load;

constexpr uint64_t kMaxSequence = static_cast<uint64_t>(std::numeric_limits<int64_t>::max());

bool frame_length_in_range(uint64_t length) {
  return length >= wire::kHeaderSize && length <= wire::kMaxFrameSize;
}

// The offset (from p) of the first non-zero byte of [p, p + n), or n.
size_t first_nonzero(const std::byte* p, size_t n) {
  size_t i = 0;
  // Word at a time: the zero check runs over whole segment remainders, up to the segment size.
  constexpr size_t kBlock = 64;
  for (; i + kBlock <= n; i += kBlock) {
    uint64_t any = 0;
    for (size_t k = 0; k < kBlock; k += 8) any |= load<uint64_t>(p + i + k);
    if (any != 0) break;
  }
  for (; i < n; ++i) {
    if (p[i] != std::byte{0}) return i;
  }
  return n;
}

// Reads up to n bytes at `offset`, retrying short reads and EINTR until n or the end of the
// file: the bytes read, or -1 with errno set.
ssize_t pread_full(int fd, std::byte* buf, size_t n, uint64_t offset) {
  size_t got = 0;
  while (got < n) {
    const ssize_t r = ::pread(fd, buf + got, n - got, static_cast<off_t>(offset + got));
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) return -1;
    if (r == 0) break;
    got += static_cast<size_t>(r);
  }
  return static_cast<ssize_t>(got);
}

std::string join_path(const std::string& dir, std::string_view name) {
  if (!dir.empty() && dir.back() == '/') return absl::StrCat(dir, to_absl(name));
  return absl::StrCat(dir, "/", to_absl(name));
}

struct ListedSegment {
  std::string path;
  uint64_t first_sequence = 0;
};

absl::StatusOr<std::vector<ListedSegment>> list_segments(const std::string& dir) {
  struct stat st;
  if (::stat(dir.c_str(), &st) != 0) {
    const int err = errno;
    if (err == ENOENT) return absl::NotFoundError(absl::StrCat(dir, ": no such directory"));
    return io_error(err, "stat", dir);
  }
  if (!S_ISDIR(st.st_mode)) {
    return absl::FailedPreconditionError(absl::StrCat(dir, ": not a directory"));
  }
  DIR* d = ::opendir(dir.c_str());
  if (d == nullptr) return io_error(errno, "opendir", dir);
  std::vector<ListedSegment> segments;
  absl::Status status;
  for (;;) {
    errno = 0;
    const dirent* entry = ::readdir(d);
    if (entry == nullptr) {
      if (errno != 0) status = io_error(errno, "readdir", dir);
      break;
    }
    const std::string_view name(entry->d_name);
    if (!name.ends_with(kSegmentSuffix)) continue;
    const std::optional<uint64_t> first = parse_segment_file_name(name);
    if (!first.has_value()) {
      // A stray "*.seg" is most likely a segment renamed by hand; skipping it would silently
      // drop its records from the log.
      status = absl::DataLossError(
          absl::StrCat(join_path(dir, name),
                       ": not a segment file name (want <20-digit first sequence>.seg)"));
      break;
    }
    segments.push_back(ListedSegment{join_path(dir, name), *first});
  }
  ::closedir(d);
  if (!status.ok()) return status;
  std::sort(segments.begin(), segments.end(),
            [](const ListedSegment& a, const ListedSegment& b) {
              return a.first_sequence < b.first_sequence;
            });
  return segments;
}

}  // namespace

absl::StatusOr<std::unique_ptr<JournalReader>> JournalReader::open(const std::string& dir) {
  absl::StatusOr<std::vector<ListedSegment>> listed = list_segments(dir);
  if (!listed.ok()) return listed.status();
  std::vector<Segment> segments;
  segments.reserve(listed->size());
  for (ListedSegment& s : *listed) segments.push_back(Segment{std::move(s.path), s.first_sequence});
  return std::unique_ptr<JournalReader>(new JournalReader(dir, std::move(segments)));
}

JournalReader::JournalReader(std::string dir, std::vector<Segment> segments)
    : dir_(std::move(dir)), segments_(std::move(segments)) {}

// The read-ahead thread. One job at a time, handed over through state_ (release/acquire; both
// sides wait on it with futex waits, never spinning): read the window after the caller's
// current one into the other buffer, with the record the current window's end cuts carried in
// front of it, and check the records from there on.
class JournalReader::ReadAhead {
 public:
  struct Job {
    int fd = -1;
    const std::byte* source = nullptr;  // the caller's window: bytes [source_begin, source_end)
    uint64_t source_begin = 0;
    uint64_t source_end = 0;
    uint64_t walk_from = 0;       // a record boundary in the source
    std::byte* target = nullptr;  // the other buffer: kWindowHeadroom bytes, then a window
    uint64_t limit = 0;           // read [source_end, min(source_end + window, limit))
  };
  struct Result {
    // False: the source's records end in a bad one or zeros (nothing to carry), or the read
    // failed or found nothing; the caller reads that part itself.
    bool usable = false;
    uint64_t begin = 0;  // the offset of data[0]: the record the source's end cut
    const std::byte* data = nullptr;
    uint64_t end = 0;
    uint64_t checked_end = 0;  // records in [begin, checked_end) are whole and good
    bool cut = false;          // the record at checked_end is cut by `end`, not bad
  };

  // nullptr if the thread cannot be started.
  static std::unique_ptr<ReadAhead> start() {
    std::unique_ptr<ReadAhead> ahead(new ReadAhead());
    try {
      ahead->thread_ = std::thread([p = ahead.get()] { p->run(); });
    } catch (const std::system_error&) {
      return nullptr;
    }
    return ahead;
  }

  ~ReadAhead() {
    (void)wait();
    state_.store(kStop, std::memory_order_release);
    state_.notify_one();
    thread_.join();
  }

  void submit(const Job& job) {
    (void)wait();
    job_ = job;
    state_.store(kSubmitted, std::memory_order_release);
    state_.notify_one();
  }

  // Waits for the job in flight: its result, or nullopt if none was submitted since the last
  // wait.
  std::optional<Result> wait() {
    uint32_t s = state_.load(std::memory_order_acquire);
    if (s == kIdle) return std::nullopt;
    while (s == kSubmitted) {
      state_.wait(kSubmitted, std::memory_order_acquire);
      s = state_.load(std::memory_order_acquire);
    }
    state_.store(kIdle, std::memory_order_relaxed);
    return result_;
  }

 private:
  enum : uint32_t { kIdle, kSubmitted, kDone, kStop };

  ReadAhead() = default;

  void run() {
    (void)set_current_thread_name("journal-ahead");
    (void)move_current_thread_to_housekeeping();
    for (;;) {
      uint32_t s;
      while ((s = state_.load(std::memory_order_acquire)) != kSubmitted && s != kStop) {
        state_.wait(s, std::memory_order_acquire);
      }
      if (s == kStop) return;
      result_ = execute(job_);
      state_.store(kDone, std::memory_order_release);
      state_.notify_one();
    }
  }

  // From `from` in the bytes [begin, end) at `data`: where the whole, good records end, and in
  // *cut whether the record there is cut by `end` (rather than bad, or zeros).
  static uint64_t walk(const std::byte* data, uint64_t begin, uint64_t end, uint64_t from,
                       bool* cut) {
    uint64_t pos = from;
    for (;;) {
      const std::byte* p = data + (pos - begin);
      const size_t size = whole_good_record(p, end - pos);
      if (size == 0) {
        const uint64_t left = end - pos;
        *cut = left < 4 ||
               (frame_length_in_range(load<uint32_t>(p)) && record_size(load<uint32_t>(p)) > left);
        return pos;
      }
      pos += size;
    }
  }

  static Result execute(const Job& job) {
    Result r;
    bool cut = false;
    const uint64_t from = walk(job.source, job.source_begin, job.source_end, job.walk_from, &cut);
    if (!cut) return r;
    const size_t carry = static_cast<size_t>(job.source_end - from);  // < kWindowHeadroom
    std::byte* data = job.target + kWindowHeadroom - carry;
    std::memcpy(data, job.source + (from - job.source_begin), carry);
    const size_t want =
        static_cast<size_t>(std::min<uint64_t>(kReadWindowBytes, job.limit - job.source_end));
    const ssize_t got = pread_full(job.fd, job.target + kWindowHeadroom, want, job.source_end);
    if (got <= 0) return r;
    r.usable = true;
    r.begin = from;
    r.data = data;
    r.end = job.source_end + static_cast<uint64_t>(got);
    r.checked_end = walk(data, r.begin, r.end, r.begin, &r.cut);
    return r;
  }

  std::atomic<uint32_t> state_{kIdle};
  Job job_;        // written by the caller before kSubmitted
  Result result_;  // written by the thread before kDone
  std::thread thread_;
};

JournalReader::~JournalReader() { unmap(); }

void JournalReader::set_read_ahead(bool on) {
  read_ahead_on_ = on && std::thread::hardware_concurrency() > 1;
}

const std::string& JournalReader::position_path() const {
  static const std::string* const kNone = new std::string();
  return current_ < segments_.size() ? segments_[current_].path : *kNone;
}

void JournalReader::unmap() {
  cancel_read_ahead();  // before its file is closed
  if (base_ != nullptr) ::munmap(const_cast<std::byte*>(base_), map_size_);
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
  base_ = nullptr;
  map_size_ = 0;
  limit_ = 0;
  pos_ = 0;
  window_begin_ = 0;
  window_end_ = 0;
  checked_end_ = 0;
  header_ = SegmentHeader{};
}

bool JournalReader::fill_window() {
  if (read_ahead_ != nullptr) {
    const std::optional<ReadAhead::Result> ahead = read_ahead_->wait();
    if (ahead.has_value() && ahead->usable && ahead->begin == pos_) {
      current_buffer_ ^= 1;
      window_data_ = ahead->data;
      window_begin_ = ahead->begin;
      window_end_ = ahead->end;
      checked_end_ = ahead->checked_end;
      ++windows_read_ahead_;
      if (ahead->cut) start_read_ahead(checked_end_);
      return true;
    }
  }
  std::byte* data = buffer(current_buffer_) + kWindowHeadroom;
  const size_t want = static_cast<size_t>(std::min<uint64_t>(kReadWindowBytes, limit_ - pos_));
  const ssize_t got = pread_full(fd_, data, want, pos_);
  if (got < 0) {
    status_ = io_error(errno, absl::StrCat("read at offset ", pos_), position_path());
    state_ = State::kCorrupt;
    stop_at(pos_);
    return false;
  }
  // Fewer than `want` bytes: the file shrank since it was opened; the diagnosis will say so.
  window_data_ = data;
  window_begin_ = pos_;
  window_end_ = pos_ + static_cast<uint64_t>(got);
  checked_end_ = pos_;
  ++windows_read_here_;
  start_read_ahead(pos_);
  return true;
}

std::byte* JournalReader::buffer(size_t index) {
  std::unique_ptr<std::byte[]>& b = buffers_[index];
  if (b == nullptr) {
    b = std::make_unique_for_overwrite<std::byte[]>(kWindowHeadroom + kReadWindowBytes);
  }
  return b.get();
}

void JournalReader::cancel_read_ahead() {
  if (read_ahead_ != nullptr) (void)read_ahead_->wait();
}

void JournalReader::start_read_ahead(uint64_t walk_from) {
  if (!read_ahead_on_ || window_end_ >= limit_) return;
  if (read_ahead_ == nullptr) {
    read_ahead_ = ReadAhead::start();
    if (read_ahead_ == nullptr) {  // no thread to be had: read without
      read_ahead_on_ = false;
      return;
    }
  }
  read_ahead_->submit(ReadAhead::Job{.fd = fd_,
                                     .source = window_data_,
                                     .source_begin = window_begin_,
                                     .source_end = window_end_,
                                     .walk_from = walk_from,
                                     .target = buffer(current_buffer_ ^ 1),
                                     .limit = limit_});
}

void JournalReader::stop_at(uint64_t offset) {
  pos_ = offset;
  limit_ = offset;  // keeps read_fast() out: the states after kEnd / kCorrupt are sticky
  window_begin_ = offset;
  window_end_ = offset;
  checked_end_ = offset;
}

JournalReader::ReadResult JournalReader::fail(uint64_t offset, const std::string& what) {
  status_ = absl::DataLossError(
      absl::StrCat(segments_[current_].path, " offset ", offset, ": ", what));
  state_ = State::kCorrupt;
  stop_at(offset);
  return ReadResult::kCorrupt;
}

JournalReader::ReadResult JournalReader::end_torn(uint64_t offset, std::string reason) {
  torn_tail_ = TornTail{segments_[current_].path, offset, std::move(reason)};
  state_ = State::kEnd;
  stop_at(offset);
  return ReadResult::kEnd;
}

std::optional<uint64_t> JournalReader::find_nonzero(uint64_t from, uint64_t to) const {
  // Holes read as zeros, so SEEK_DATA / SEEK_HOLE let the check skip the never-written part of a
  // preallocated segment (often most of the last one) without faulting it in. A file system
  // without hole tracking reports everything as data, which is still correct, just slower.
  uint64_t at = from;
  while (at < to) {
    uint64_t data_end = to;
    const off_t data = ::lseek(fd_, static_cast<off_t>(at), SEEK_DATA);
    if (data < 0) {
      if (errno == ENXIO) return std::nullopt;  // nothing but holes from `at` to the file's end
      data_end = to;                            // no hole information: scan it all
    } else {
      if (static_cast<uint64_t>(data) >= to) return std::nullopt;
      at = std::max(at, static_cast<uint64_t>(data));
      const off_t hole = ::lseek(fd_, static_cast<off_t>(at), SEEK_HOLE);
      if (hole >= 0 && static_cast<uint64_t>(hole) > at) {
        data_end = std::min(to, static_cast<uint64_t>(hole));
      }
    }
    if (const std::optional<uint64_t> found = find_nonzero_in_data(at, data_end)) return found;
    at = data_end;
  }
  return std::nullopt;
}

std::optional<uint64_t> JournalReader::find_nonzero_in_data(uint64_t from, uint64_t to) const {
  // Read with pread, not through the mapping: the remainder of a zero-filled segment is often
  // tens of MB, and a fresh mapping faults every page (see kReadWindowBytes). Should a read
  // fail, the mapping has the same bytes.
  constexpr size_t kChunk = 256 << 10;
  const auto chunk = std::make_unique_for_overwrite<std::byte[]>(kChunk);
  uint64_t at = from;
  while (at < to) {
    const size_t n = static_cast<size_t>(std::min<uint64_t>(kChunk, to - at));
    const ssize_t got = pread_full(fd_, chunk.get(), n, at);
    const std::byte* p = got > 0 ? chunk.get() : base_ + at;
    const size_t len = got > 0 ? static_cast<size_t>(got) : n;
    const size_t i = first_nonzero(p, len);
    if (i < len) return at + i;
    at += len;
  }
  return std::nullopt;
}

bool JournalReader::open_segment(size_t index) {
  current_ = index;
  const Segment& segment = segments_[index];
  const int fd = ::open(segment.path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    status_ = io_error(errno, "open", segment.path);
    state_ = State::kCorrupt;
    return false;
  }
  fd_ = fd;
  struct stat st;
  if (::fstat(fd, &st) != 0) {
    status_ = io_error(errno, "fstat", segment.path);
    state_ = State::kCorrupt;
    return false;
  }
  const auto file_size = static_cast<uint64_t>(st.st_size);
  if (file_size > 0) {
    void* map = ::mmap(nullptr, file_size, PROT_READ, MAP_SHARED, fd, 0);
    if (map == MAP_FAILED) {
      status_ = io_error(errno, "mmap", segment.path);
      state_ = State::kCorrupt;
      return false;
    }
    base_ = static_cast<const std::byte*>(map);
    map_size_ = file_size;
  }
  // Replay reads front to back: ask for aggressive read-ahead. Advice only; failure is fine.
  (void)::posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
  limit_ = file_size;  // the whole file until the header says otherwise
  pos_ = 0;
  window_begin_ = window_end_ = checked_end_ = 0;

  SegmentHeader header;
  const HeaderCheck check =
      decode_segment_header(std::span<const std::byte>(base_, map_size_), &header);
  if (check != HeaderCheck::kOk) {
    // A crash between creating the file and writing its header leaves zeros (or nothing).
    if (is_last_segment() && !find_nonzero(0, file_size).has_value()) {
      if (expected_known_ && segment.first_sequence != static_cast<uint64_t>(expected_)) {
        fail(0, absl::StrCat("empty segment named for first sequence ", segment.first_sequence,
                             ", but the previous segment ends at ", expected_ - 1));
        return false;
      }
      end_torn(0, file_size < kSegmentHeaderSize
                      ? absl::StrCat("segment file is ", file_size,
                                     " bytes, all zero (crash while creating it)")
                      : std::string("segment file is all zeros (crash while creating it)"));
      return false;
    }
    if (file_size < kSegmentHeaderSize) {
      fail(0, absl::StrCat("file is ", file_size, " bytes, shorter than the ", kSegmentHeaderSize,
                           "-byte segment header"));
    } else {
      fail(0, absl::StrCat("segment header: ", to_absl(header_check_name(check))));
    }
    return false;
  }
  if (header.first_sequence != segment.first_sequence) {
    fail(16, absl::StrCat("segment header's first sequence ", header.first_sequence,
                          " differs from the file name's ", segment.first_sequence));
    return false;
  }
  if (header.first_sequence == 0 || header.first_sequence > kMaxSequence) {
    fail(16, absl::StrCat("first sequence ", header.first_sequence, " outside 1..", kMaxSequence));
    return false;
  }
  if (expected_known_ && header.first_sequence != static_cast<uint64_t>(expected_)) {
    fail(16, absl::StrCat("first sequence ", header.first_sequence,
                          " does not follow the previous segment, which ends at ",
                          expected_ - 1));
    return false;
  }
  if (header.segment_size < kSegmentHeaderSize) {
    fail(32, absl::StrCat("segment size ", header.segment_size, " is smaller than the header"));
    return false;
  }
  header_ = header;
  limit_ = std::min(file_size, header.segment_size);
  pos_ = kSegmentHeaderSize;
  window_begin_ = window_end_ = checked_end_ = pos_;
  expected_ = static_cast<int64_t>(header.first_sequence);
  expected_known_ = true;
  return true;
}

JournalReader::Diagnosis JournalReader::diagnose(std::string* reason) const {
  const uint64_t left = limit_ - pos_;
  const std::byte* p = base_ + pos_;
  if (left == 0) return Diagnosis::kCleanEnd;  // records fill the segment to its last byte
  const bool short_file = limit_ < header_.segment_size;
  const char* const end_name = short_file ? "file (cut short of its segment size)" : "segment";
  if (left < 4) {
    if (!find_nonzero(pos_, limit_).has_value()) return Diagnosis::kCleanEnd;
    *reason = absl::StrCat("record length cut short by the end of the ", end_name);
    return Diagnosis::kBad;
  }
  const uint32_t length = load<uint32_t>(p);
  if (length == 0) {
    const std::optional<uint64_t> nonzero = find_nonzero(pos_ + 4, limit_);
    if (!nonzero.has_value()) return Diagnosis::kCleanEnd;
    *reason = absl::StrCat("record length 0 (the end of data) but non-zero bytes follow at offset ",
                           *nonzero);
    return Diagnosis::kHole;
  }
  if (left < kRecordHeaderSize) {
    *reason = absl::StrCat("record header cut short by the end of the ", end_name, " at offset ",
                           limit_);
    return Diagnosis::kBad;
  }
  if (!frame_length_in_range(length)) {
    *reason = absl::StrCat("frame length ", length, " outside ", wire::kHeaderSize, "..",
                           wire::kMaxFrameSize);
    return Diagnosis::kBad;
  }
  const size_t size = record_size(length);
  if (size > left) {
    *reason = absl::StrCat("record of ", size, " bytes runs past the end of the ", end_name,
                           " at offset ", limit_);
    return Diagnosis::kBad;
  }
  const uint16_t own_length = load<uint16_t>(p + kRecordHeaderSize);
  if (own_length != length) {
    *reason = absl::StrCat("frame length ", length, " differs from the frame's own length field ",
                           own_length);
    return Diagnosis::kBad;
  }
  const uint32_t stored_crc = load<uint32_t>(p + 4);
  const uint32_t crc = record_crc(p, length);
  if (stored_crc != crc) {
    *reason = absl::StrFormat("CRC mismatch (stored 0x%08x, computed 0x%08x)", stored_crc, crc);
    return Diagnosis::kBad;
  }
  const int64_t sequence = load<int64_t>(p + 8);
  if (sequence != expected_) {
    *reason = absl::StrCat("sequence ", sequence, ", expected ", expected_);
    return Diagnosis::kBad;
  }
  return Diagnosis::kGood;
}

uint64_t JournalReader::bad_record_end() const {
  // Either length field may be the damaged one, so the bad record reaches as far as the longer
  // plausible one says: a flipped byte anywhere in the last record then reads as a torn tail,
  // as the crash model wants, whichever field it hit.
  const uint64_t left = limit_ - pos_;
  const std::byte* p = base_ + pos_;
  size_t frame_length = 0;
  if (left >= 4) {
    const uint32_t length = load<uint32_t>(p);
    if (frame_length_in_range(length)) frame_length = length;
  }
  if (left >= kRecordHeaderSize + 2) {
    const uint16_t own_length = load<uint16_t>(p + kRecordHeaderSize);
    if (frame_length_in_range(own_length)) frame_length = std::max<size_t>(frame_length, own_length);
  }
  return pos_ + std::min<uint64_t>(record_size(frame_length), left);
}

JournalReader::ReadResult JournalReader::next_slow(Record* out) {
  for (;;) {
    if (state_ == State::kEnd) return ReadResult::kEnd;
    if (state_ == State::kCorrupt) return ReadResult::kCorrupt;
    if (base_ == nullptr) {
      if (current_ >= segments_.size()) {
        state_ = State::kEnd;
        return ReadResult::kEnd;
      }
      if (!open_segment(current_)) continue;  // state_ says why
    }
    // The record at pos_ is not whole in the window (or not good): read the window on from
    // pos_, then try again before diagnosing.
    if (!fill_window()) return ReadResult::kCorrupt;
    if (read_fast(out)) return ReadResult::kRecord;
    std::string reason;
    switch (diagnose(&reason)) {
      case Diagnosis::kGood:
        // Unreachable while diagnose() and read_fast() agree; retrying keeps it harmless.
        if (read_fast(out)) return ReadResult::kRecord;
        return fail(pos_, "record passes the full check but not the fast one");
      case Diagnosis::kCleanEnd:
        if (is_last_segment()) {
          state_ = State::kEnd;
          stop_at(pos_);
          return ReadResult::kEnd;
        }
        if (pos_ == kSegmentHeaderSize) {
          return fail(pos_, "segment holds no records but is not the last segment");
        }
        unmap();
        ++current_;
        continue;
      case Diagnosis::kHole:
        return fail(pos_, reason);
      case Diagnosis::kBad:
        break;
    }
    const std::optional<uint64_t> nonzero = find_nonzero(bad_record_end(), limit_);
    if (nonzero.has_value()) {
      return fail(pos_, absl::StrCat(reason, "; non-zero bytes follow at offset ", *nonzero));
    }
    if (!is_last_segment()) {
      return fail(pos_, absl::StrCat(reason, "; in a segment that is not the last"));
    }
    return end_torn(pos_, std::move(reason));
  }
}

absl::Status JournalReader::seek(int64_t sequence) {
  unmap();
  current_ = 0;
  state_ = State::kReading;
  status_ = absl::OkStatus();
  torn_tail_.reset();
  expected_ = 0;
  expected_known_ = false;
  if (segments_.empty() || sequence <= 0) return absl::OkStatus();
  const auto target = static_cast<uint64_t>(sequence);
  // The last segment starting at or before the target holds it, if anything does.
  const auto after = std::upper_bound(
      segments_.begin(), segments_.end(), target,
      [](uint64_t s, const Segment& segment) { return s < segment.first_sequence; });
  current_ = after == segments_.begin() ? 0 : static_cast<size_t>(after - segments_.begin()) - 1;
  if (target <= segments_[current_].first_sequence) return absl::OkStatus();
  Record record;
  for (;;) {
    switch (next(&record)) {
      case ReadResult::kRecord:
        if (record.sequence >= sequence) {
          // Step back over it: the record was read from the window, which still holds it.
          pos_ -= record_size(record.frame.size());
          --expected_;
          return absl::OkStatus();
        }
        break;
      case ReadResult::kEnd:
        return absl::OkStatus();
      case ReadResult::kCorrupt:
        return status_;
    }
  }
}

absl::StatusOr<JournalScan> scan_journal(const std::string& dir) {
  absl::StatusOr<std::unique_ptr<JournalReader>> opened = JournalReader::open(dir);
  if (!opened.ok()) return opened.status();
  JournalReader& reader = **opened;
  JournalScan scan;
  size_t described = std::numeric_limits<size_t>::max();  // the segment scan.segments.back() is
  Record record;
  for (;;) {
    const ReadResult result = reader.next(&record);
    if (result == ReadResult::kCorrupt) return reader.status();
    if (reader.current_ >= reader.segments_.size()) break;  // a journal without segments
    if (reader.current_ != described) {
      // Only the last segment may end without records, so every segment is met here.
      described = reader.current_;
      const JournalReader::Segment& segment = reader.segments_[described];
      SegmentInfo info;
      info.path = segment.path;
      info.first_sequence = segment.first_sequence;
      info.header = reader.header_;
      info.file_size = reader.map_size_;
      scan.segments.push_back(std::move(info));
    }
    SegmentInfo& info = scan.segments.back();
    info.data_end = reader.pos_;
    if (result == ReadResult::kEnd) break;
    if (info.record_count == 0) info.first_ingest_ns = record.ingest_ns;
    ++info.record_count;
    info.last_sequence = record.sequence;
    info.last_ingest_ns = record.ingest_ns;
    if (scan.record_count == 0) scan.first_sequence = record.sequence;
    ++scan.record_count;
    scan.last_sequence = record.sequence;
    scan.bytes += record_size(record.frame.size());
  }
  scan.torn_tail = reader.torn_tail();
  return scan;
}

}  // namespace sluice::journal
