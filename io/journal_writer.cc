#include "io/journal_writer.h"

#include <fcntl.h>
#include <sched.h>
#include <stdio.h>  // renameat2
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "core/absl_compat.h"
#include "core/clock.h"
#include "core/cpu.h"
#include "io/io_error.h"
#include "io/journal_reader.h"

namespace sluice::journal {
namespace {

enum Op : uint8_t { kOpWrite = 1, kOpSync = 2 };

constexpr size_t kBufferAlignment = 4096;

absl::Status sync_fd(int fd, std::string_view path) {
  if (fdatasync(fd) != 0) return io_error(errno, "fdatasync", path);
  return absl::OkStatus();
}

// Writes all of data at offset, looping over short writes; *written (if given) counts the bytes
// written, also when it fails part way.
absl::Status pwrite_all(int fd, const std::byte* data, size_t size, uint64_t offset,
                        std::string_view path, size_t* written = nullptr) {
  while (size > 0) {
    const ssize_t n = pwrite(fd, data, size, static_cast<off_t>(offset));
    if (n < 0) {
      if (errno == EINTR) continue;
      return io_error_at(errno, "write", path, offset);
    }
    data += n;
    size -= static_cast<size_t>(n);
    offset += static_cast<uint64_t>(n);
    if (written != nullptr) *written += static_cast<size_t>(n);
  }
  return absl::OkStatus();
}

// Overwrites [offset, offset + size) with zeros and fdatasyncs it.
absl::Status erase_range(int fd, uint64_t offset, size_t size, std::string_view path) {
  static constexpr std::array<std::byte, 64 * 1024> kZeros{};
  for (size_t done = 0; done < size;) {
    const size_t n = std::min(kZeros.size(), size - done);
    if (absl::Status s = pwrite_all(fd, kZeros.data(), n, offset + done, path); !s.ok()) return s;
    done += n;
  }
  return sync_fd(fd, path);
}

}  // namespace

absl::StatusOr<Durability> parse_durability(std::string_view name) {
  if (name == "none") return Durability::kNone;
  if (name == "batch") return Durability::kBatch;
  if (name == "sync") return Durability::kSync;
  return absl::InvalidArgumentError(
      absl::StrCat("durability '", to_absl(name), "' is not one of none, batch, sync"));
}

std::string_view durability_name(Durability d) {
  switch (d) {
    case Durability::kNone: return "none";
    case Durability::kBatch: return "batch";
    case Durability::kSync: return "sync";
  }
  return "?";
}

JournalWriter::JournalWriter(const WriterOptions& options) : options_(options) {}

JournalWriter::~JournalWriter() {
  if (fd_ >= 0) (void)close();
  stop_preparing();
  if (dir_fd_ >= 0) ::close(dir_fd_);
}

absl::StatusOr<std::unique_ptr<JournalWriter>> JournalWriter::open(const WriterOptions& options) {
  if (options.segment_size < kSegmentHeaderSize + kMaxRecordSize) {
    return absl::InvalidArgumentError(absl::StrCat("journal segment size ", options.segment_size,
                                                   " is below the minimum ",
                                                   kSegmentHeaderSize + kMaxRecordSize));
  }
  if (options.max_batch_bytes < kMaxRecordSize) {
    return absl::InvalidArgumentError(
        absl::StrCat("journal max_batch_bytes ", options.max_batch_bytes, " is below ",
                     kMaxRecordSize));
  }
  if (options.min_write_bytes > options.max_batch_bytes || options.max_write_delay_ns < 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "journal min_write_bytes ", options.min_write_bytes, " must be at most max_batch_bytes ",
        options.max_batch_bytes, ", and max_write_delay_ns ", options.max_write_delay_ns,
        " at least 0"));
  }
  std::unique_ptr<JournalWriter> w(new JournalWriter(options));

  std::error_code ec;
  std::filesystem::create_directories(options.dir, ec);
  if (ec) return io_error(ec.value(), "create journal directory", options.dir);
  w->dir_fd_ = ::open(options.dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (w->dir_fd_ < 0) return io_error(errno, "open journal directory", options.dir);

  // Two batch buffers, page-aligned, with room for one maximal record past the bound so a
  // batch that reaches max_batch_bytes still takes the record that crossed it.
  w->buffer_capacity_ = options.max_batch_bytes + kMaxRecordSize;
  const size_t capacity =
      (w->buffer_capacity_ + kBufferAlignment - 1) / kBufferAlignment * kBufferAlignment;
  w->buffer_capacity_ = capacity;
  void* mem = std::aligned_alloc(kBufferAlignment, 2 * capacity);
  if (mem == nullptr) return absl::ResourceExhaustedError("journal batch buffers");
  w->buffers_ = {static_cast<std::byte*>(mem), std::free};
  w->open_.data = w->buffers_.get();
  w->in_flight_.data = w->buffers_.get() + capacity;

  if (options.use_io_uring) {
    // Not SINGLE_ISSUER: the kernel binds such a ring to the thread that created it, and a
    // writer is opened by the daemon's main thread, driven by the journal agent's thread and
    // flushed at shutdown by the main thread again. One write in flight at a time gains
    // nothing measurable from it anyway.
    auto uring = Uring::create(UringOptions{.entries = 16, .single_issuer = false});
    if (uring.ok()) {
      w->uring_ = std::move(*uring);
    } else {
      w->fallback_reason_ = std::string(uring.status().message());
    }
  } else {
    w->fallback_reason_ = "io_uring disabled by configuration";
  }

  // A prepared segment left by an earlier run may be unfinished; it is cheaper to redo than
  // to check.
  if (::unlink(w->prepared_path().c_str()) != 0 && errno != ENOENT) {
    return io_error(errno, "remove", w->prepared_path());
  }
  if (absl::Status s = w->recover(); !s.ok()) return s;
  return w;
}

absl::Status JournalWriter::recover() {
  absl::StatusOr<JournalScan> scan = scan_journal(options_.dir);
  if (!scan.ok()) return scan.status();

  std::vector<SegmentInfo>& segments = scan->segments;
  if (scan->torn_tail.has_value()) {
    const TornTail& torn = *scan->torn_tail;
    const SegmentInfo& last = segments.back();
    if (torn.offset == 0 || last.record_count == 0) {
      // The crash came while the segment was being created: nothing in it was ever
      // acknowledged. Remove it; appending re-creates it.
      if (::unlink(torn.path.c_str()) != 0) return io_error(errno, "remove torn segment", torn.path);
      if (fsync(dir_fd_) != 0) return io_error(errno, "fsync", options_.dir);
      segments.pop_back();
    } else {
      const int fd = ::open(torn.path.c_str(), O_RDWR | O_CLOEXEC);
      if (fd < 0) return io_error(errno, "open", torn.path);
      // Zero from the torn record to the end, so the segment again ends in zeros there.
      struct stat st{};
      absl::Status s;
      if (fstat(fd, &st) != 0) {
        s = io_error(errno, "stat", torn.path);
      } else if (static_cast<uint64_t>(st.st_size) > torn.offset &&
                 fallocate(fd, FALLOC_FL_ZERO_RANGE, static_cast<off_t>(torn.offset),
                           static_cast<off_t>(st.st_size - torn.offset)) != 0) {
        s = io_error_at(errno, "zero torn tail of", torn.path, torn.offset);
      } else {
        s = sync_fd(fd, torn.path);
      }
      ::close(fd);
      if (!s.ok()) return s;
    }
    recovery_note_ = absl::StrCat("truncated torn tail at ", torn.path, " offset ", torn.offset,
                                  " (", torn.reason, ")");
  }

  const int64_t last = segments.empty() ? 0 : scan->last_sequence;
  next_sequence_ = last + 1;
  written_.set(last);
  durable_.set(last);

  if (segments.empty()) return open_segment(static_cast<uint64_t>(next_sequence_));

  const SegmentInfo& tail = segments.back();
  segment_path_ = tail.path;
  fd_ = ::open(segment_path_.c_str(), O_RDWR | O_CLOEXEC);
  if (fd_ < 0) return io_error(errno, "open", segment_path_);
  end_offset_ = tail.data_end;
  // The open segment keeps the size its header says (it may have been made under another
  // configuration); segments created from now on take the configured size.
  segment_capacity_ = std::max<uint64_t>(tail.header.segment_size, end_offset_);
  // A segment cut short (a crash or a copy) gets its preallocation back.
  if (fallocate(fd_, 0, 0, static_cast<off_t>(segment_capacity_)) != 0) {
    return io_error(errno, "preallocate", segment_path_);
  }
  return absl::OkStatus();
}

absl::Status JournalWriter::open_segment(uint64_t first_sequence) {
  const std::string path =
      (std::filesystem::path(options_.dir) / segment_file_name(first_sequence)).string();
  absl::Status s;
  int fd = -1;
  if (prepare_state_.load(std::memory_order_acquire) == kPrepareReady) {
    fd = use_prepared_segment(path, first_sequence);  // header written and fdatasync'ed
  }
  const bool prepared = fd >= 0;
  if (!prepared) {
    fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0) return io_error(errno, "create segment", path);
    std::byte header[kSegmentHeaderSize];
    encode_segment_header(SegmentHeader{.first_sequence = first_sequence,
                                        .created_ns = realtime_ns(),
                                        .segment_size = options_.segment_size},
                          header);
    if (fallocate(fd, 0, 0, static_cast<off_t>(options_.segment_size)) != 0) {
      s = io_error(errno, "preallocate", path);
    } else {
      s = pwrite_all(fd, header, sizeof(header), 0, path);
    }
    if (s.ok()) s = sync_fd(fd, path);
  }
  // The header and the directory entry are made durable whatever the mode: a segment that
  // vanishes or loses its header after a power cut would orphan every record in it.
  if (s.ok() && fsync(dir_fd_) != 0) s = io_error(errno, "fsync", options_.dir);
  if (!s.ok()) {
    ::close(fd);
    ::unlink(path.c_str());
    return s;
  }
  if (fd_ >= 0) ::close(fd_);
  fd_ = fd;
  segment_path_ = path;
  segment_capacity_ = options_.segment_size;
  end_offset_ = kSegmentHeaderSize;
  if (prepared) ++prepared_rolls_;
  return absl::OkStatus();
}

absl::Status JournalWriter::roll() {
  // Everything of the old segment is on its way or done (callers roll only when idle); in a
  // durable mode it was already fdatasync'ed batch by batch.
  roll_needed_ = false;
  prepare_retry_ = true;
  return open_segment(static_cast<uint64_t>(next_sequence_));
}

std::string JournalWriter::prepared_path() const {
  return (std::filesystem::path(options_.dir) / kPreparedSegmentName).string();
}

void JournalWriter::maybe_start_preparing() {
  const int state = prepare_state_.load(std::memory_order_acquire);
  if (state == kPrepareFailed) {
    prepare_thread_.join();
    prepare_error_ = prepare_thread_error_;
    ++prepare_failures_;
    prepare_state_.store(kPrepareNone, std::memory_order_relaxed);
    prepare_retry_ = false;  // not again before the next roll: the cause may last (ENOSPC)
    return;
  }
  if (state != kPrepareNone || !prepare_retry_ || !options_.prepare_segments ||
      options_.durability == Durability::kNone || end_offset_ < segment_capacity_ / 2) {
    return;
  }
  prepare_stop_.store(false, std::memory_order_relaxed);
  prepare_state_.store(kPrepareRunning, std::memory_order_relaxed);
  try {
    prepare_thread_ = std::thread([this] { prepare_segment(); });
  } catch (const std::system_error& e) {
    prepare_state_.store(kPrepareNone, std::memory_order_relaxed);
    prepare_error_ = absl::StrCat("cannot start the segment preparation thread: ", e.what());
    ++prepare_failures_;
    prepare_retry_ = false;
  }
}

void JournalWriter::prepare_segment() {
  (void)move_current_thread_to_housekeeping();  // started on the (maybe pinned) io thread
  // Background work: it must not take CPU from the stages, so it runs only when a CPU is idle
  // (SCHED_IDLE; where that is refused, nice 10). Per-thread on Linux.
  const sched_param idle{};
  if (!options_.prepare_in_idle_time || ::sched_setscheduler(0, SCHED_IDLE, &idle) != 0) {
    (void)::setpriority(PRIO_PROCESS, static_cast<id_t>(::gettid()), 10);
  }
  const std::string path = prepared_path();
  absl::Status s;
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) {
    s = io_error(errno, "create", path);
  } else {
    constexpr size_t kChunk = 1 << 20;
    const std::vector<std::byte> zeros(kChunk);
    for (uint64_t at = 0; s.ok() && at < options_.segment_size; at += kChunk) {
      if (prepare_stop_.load(std::memory_order_relaxed)) {
        s = absl::CancelledError("stopped");
        break;
      }
      const size_t n = static_cast<size_t>(std::min<uint64_t>(kChunk, options_.segment_size - at));
      s = pwrite_all(fd, zeros.data(), n, at, path);
      // Each chunk goes to the disk before the next is written, so the device never holds a
      // whole segment of zeros in front of the journal's own commits.
      if (s.ok() && ::sync_file_range(fd, static_cast<off_t>(at), static_cast<off_t>(n),
                                      SYNC_FILE_RANGE_WAIT_BEFORE | SYNC_FILE_RANGE_WRITE |
                                          SYNC_FILE_RANGE_WAIT_AFTER) != 0) {
        s = io_error_at(errno, "sync_file_range", path, at);
      }
    }
    if (s.ok()) s = sync_fd(fd, path);
    ::close(fd);
  }
  if (!s.ok()) {
    ::unlink(path.c_str());
    prepare_thread_error_ = std::string(s.message());
    prepare_state_.store(kPrepareFailed, std::memory_order_release);
    return;
  }
  prepare_state_.store(kPrepareReady, std::memory_order_release);
}

int JournalWriter::use_prepared_segment(const std::string& path, uint64_t first_sequence) {
  prepare_thread_.join();
  prepare_state_.store(kPrepareNone, std::memory_order_relaxed);
  const std::string prepared = prepared_path();
  auto give_up = [&](absl::Status why, int fd) {
    if (fd >= 0) ::close(fd);
    ::unlink(prepared.c_str());
    prepare_error_ = std::string(why.message());
    ++prepare_failures_;
    return -1;
  };
  const int fd = ::open(prepared.c_str(), O_RDWR | O_CLOEXEC);
  if (fd < 0) return give_up(io_error(errno, "open", prepared), -1);
  struct stat st{};
  if (fstat(fd, &st) != 0) return give_up(io_error(errno, "stat", prepared), fd);
  if (static_cast<uint64_t>(st.st_size) != options_.segment_size) {
    return give_up(absl::DataLossError(absl::StrCat(prepared, " holds ", st.st_size,
                                                    " bytes, not the segment size")),
                   fd);
  }
  std::byte header[kSegmentHeaderSize];
  encode_segment_header(SegmentHeader{.first_sequence = first_sequence,
                                      .created_ns = realtime_ns(),
                                      .segment_size = options_.segment_size},
                        header);
  if (absl::Status s = pwrite_all(fd, header, sizeof(header), 0, prepared); !s.ok()) {
    return give_up(s, fd);
  }
  if (absl::Status s = sync_fd(fd, prepared); !s.ok()) return give_up(s, fd);
  // Never over an existing file: a segment of that name would be lost.
  if (::renameat2(dir_fd_, std::string(kPreparedSegmentName).c_str(), dir_fd_,
                  std::filesystem::path(path).filename().c_str(), RENAME_NOREPLACE) != 0) {
    return give_up(io_error(errno, "rename to " + path, prepared), fd);
  }
  return fd;
}

void JournalWriter::stop_preparing() {
  if (prepare_thread_.joinable()) {
    prepare_stop_.store(true, std::memory_order_relaxed);
    prepare_thread_.join();
  }
  prepare_state_.store(kPrepareNone, std::memory_order_relaxed);
  if (dir_fd_ >= 0) ::unlink(prepared_path().c_str());
}

void JournalWriter::fail(absl::Status status) {
  if (!failed()) {
    status_ = std::move(status);
    failed_.store(true, std::memory_order_release);
  }
}

void JournalWriter::fail_batch(absl::Status status) {
  if (options_.durability != Durability::kSync) {
    fail(std::move(status));
    return;
  }
  const Batch& b = in_flight_;
  // The batch starts right after the last durable record: batches are written one at a time
  // and, with sync, each is durable before the next starts.
  const std::string sequences =
      absl::StrCat("sequences ", durable_.get() + 1, "..", b.last_sequence);
  std::string note;
  if (b.written == 0) {
    // Nothing of it reached the file (say, it began right at a file-size limit): nothing to
    // erase, and the log says so rather than leaving the reader to wonder.
    note = absl::StrCat("; none of the unanswered batch (", sequences, ") had reached the file");
  } else {
    const std::string what =
        absl::StrCat(sequences, ", ", b.written, " bytes at offset ", b.offset);
    const absl::Status erased = erase_range(fd_, b.offset, b.written, segment_path_);
    note = erased.ok()
               ? absl::StrCat("; the unanswered batch (", what, ") was erased")
               : absl::StrCat("; erasing the unanswered batch (", what, ") failed too (",
                              erased.message(),
                              "): a restart may find those events journaled though never answered");
  }
  fail(absl::Status(status.code(), absl::StrCat(status.message(), note)));
}

AppendResult JournalWriter::append_slow(const RecordMeta& meta,
                                        std::span<const std::byte> frame) noexcept {
  if (failed()) return AppendResult::kFailed;
  if (meta.sequence != next_sequence_ || frame.size() < wire::kHeaderSize ||
      frame.size() > wire::kMaxFrameSize) {
    fail(absl::InvalidArgumentError(absl::StrCat(
        "journal append of sequence ", meta.sequence, " with a ", frame.size(),
        "-byte frame; expected sequence ", next_sequence_, " and 4..1024 bytes")));
    return AppendResult::kFailed;
  }
  const size_t size = record_size(frame.size());
  if (roll_needed_ || end_offset_ + size > segment_capacity_) {
    // The record goes to a new segment; a batch never spans two files.
    if (open_.size > 0 || !idle()) {
      roll_needed_ = true;
      return AppendResult::kFull;
    }
    if (absl::Status s = roll(); !s.ok()) {
      fail(std::move(s));
      return AppendResult::kFailed;
    }
  }
  if (open_.size + size > buffer_capacity_ ||
      (open_.size >= options_.max_batch_bytes && !idle())) {
    return AppendResult::kFull;
  }
  add_record(meta, frame, size);
  return AppendResult::kOk;
}

absl::Status JournalWriter::signal_completions_to(int eventfd) {
  if (uring_ == nullptr) return absl::OkStatus();
  const int rc = io_uring_register_eventfd(uring_->ring(), eventfd);
  if (rc < 0) return io_error(rc, "io_uring_register_eventfd for", options_.dir);
  return absl::OkStatus();
}

bool JournalWriter::write_due() noexcept {
  if (options_.min_write_bytes == 0 || options_.durability != Durability::kNone ||
      open_.size >= options_.min_write_bytes || roll_needed_) {
    return true;
  }
  const int64_t now = monotonic_ns();
  if (open_seen_ns_ == 0) open_seen_ns_ = now;
  return now - open_seen_ns_ >= options_.max_write_delay_ns;
}

int JournalWriter::poll() { return poll(/*force=*/false); }

int JournalWriter::poll(bool force) {
  if (failed()) return 0;
  if (options_.prepare_segments) maybe_start_preparing();
  int work = 0;
  if (uring_ != nullptr) {
    work += static_cast<int>(uring_->drain([this](const io_uring_cqe& cqe) { handle_cqe(cqe); }));
    if (in_flight_active_ && in_flight_.pending_ops == 0) finish_in_flight();
  }
  if (failed()) return work;
  if (idle() && open_.size > 0 && (force || write_due())) {
    start_batch();
    ++work;
  } else if (idle() && roll_needed_) {
    if (absl::Status s = roll(); !s.ok()) fail(std::move(s));
    ++work;
  }
  return work;
}

void JournalWriter::start_batch() {
  std::swap(open_.data, in_flight_.data);
  in_flight_.size = open_.size;
  in_flight_.last_sequence = open_.last_sequence;
  in_flight_.offset = open_.offset;
  in_flight_.written = 0;
  in_flight_.write_error = 0;
  in_flight_.sync_error = 0;
  in_flight_.synced = false;
  in_flight_.pending_ops = 0;
  open_.size = 0;
  open_seen_ns_ = 0;
  in_flight_active_ = true;
  if (uring_ != nullptr) {
    submit_uring(/*write=*/true, /*sync=*/options_.durability != Durability::kNone);
  } else {
    write_fallback();
  }
}

void JournalWriter::submit_uring(bool write, bool sync) {
  if (write) {
    io_uring_sqe* sqe = uring_->get_sqe();
    if (sqe == nullptr) {
      fail(absl::InternalError(absl::StrCat("io_uring submission queue refused a write to ",
                                            segment_path_)));
      return;
    }
    const size_t done = in_flight_.written;
    io_uring_prep_write(sqe, fd_, in_flight_.data + done,
                        static_cast<unsigned>(in_flight_.size - done), in_flight_.offset + done);
    io_uring_sqe_set_data64(sqe, make_user_data(kOpWrite, 0));
    // The fdatasync starts only once the write completed; a failed or short write cancels it.
    if (sync) sqe->flags |= IOSQE_IO_LINK;
    ++in_flight_.pending_ops;
  }
  if (sync) {
    io_uring_sqe* sqe = uring_->get_sqe();
    if (sqe == nullptr) {
      fail(absl::InternalError(absl::StrCat("io_uring submission queue refused an fdatasync of ",
                                            segment_path_)));
      return;
    }
    io_uring_prep_fsync(sqe, fd_, IORING_FSYNC_DATASYNC);
    io_uring_sqe_set_data64(sqe, make_user_data(kOpSync, 0));
    ++in_flight_.pending_ops;
  }
  const int rc = uring_->submit();
  if (rc < 0) fail(io_error(rc, "io_uring_submit for", segment_path_));
}

void JournalWriter::handle_cqe(const io_uring_cqe& cqe) {
  --in_flight_.pending_ops;
  switch (user_data_op(cqe.user_data)) {
    case kOpWrite:
      if (cqe.res < 0) {
        in_flight_.write_error = -cqe.res;
      } else if (cqe.res == 0) {
        in_flight_.write_error = EIO;  // no progress on a non-empty write: never loop on it
      } else {
        in_flight_.written += static_cast<size_t>(cqe.res);
      }
      break;
    case kOpSync:
      if (cqe.res == 0) {
        in_flight_.synced = true;
      } else if (cqe.res != -ECANCELED) {  // cancelled: the linked write came up short
        in_flight_.sync_error = -cqe.res;
      }
      break;
    default:
      break;
  }
}

void JournalWriter::finish_in_flight() {
  Batch& b = in_flight_;
  if (b.write_error != 0) {
    fail_batch(io_error_at(b.write_error, "write", segment_path_, b.offset + b.written));
    return;
  }
  if (b.written < b.size) {
    // A short write (the kernel took part of it): write the rest, and sync after it.
    submit_uring(/*write=*/true, /*sync=*/options_.durability != Durability::kNone);
    return;
  }
  written_.set(b.last_sequence);
  if (options_.durability != Durability::kNone) {
    if (b.sync_error != 0) {
      fail_batch(io_error(b.sync_error, "fdatasync", segment_path_));
      return;
    }
    if (!b.synced) {  // its linked sync was cancelled by an earlier short write
      submit_uring(/*write=*/false, /*sync=*/true);
      return;
    }
    durable_.set(b.last_sequence);
  }
  in_flight_active_ = false;
}

void JournalWriter::write_fallback() {
  Batch& b = in_flight_;
  absl::Status s = pwrite_all(fd_, b.data, b.size, b.offset, segment_path_, &b.written);
  if (!s.ok()) {
    fail_batch(std::move(s));
    return;
  }
  written_.set(b.last_sequence);
  if (options_.durability != Durability::kNone) {
    if (s = sync_fd(fd_, segment_path_); !s.ok()) {
      fail_batch(std::move(s));
      return;
    }
    durable_.set(b.last_sequence);
  }
  in_flight_active_ = false;
}

absl::Status JournalWriter::flush() {
  for (;;) {
    poll(/*force=*/true);
    if (failed()) return status_;
    if (idle() && open_.size == 0 && !roll_needed_) return absl::OkStatus();
    if (uring_ != nullptr && in_flight_active_) {
      io_uring_cqe* cqe = nullptr;
      const int rc = io_uring_wait_cqe(uring_->ring(), &cqe);
      if (rc < 0 && rc != -EINTR) {
        fail(io_error(rc, "io_uring_wait_cqe for", segment_path_));
        return status_;
      }
    }
  }
}

absl::Status JournalWriter::close() {
  absl::Status s = flush();
  stop_preparing();
  if (fd_ >= 0) {
    if (s.ok()) {
      s = sync_fd(fd_, segment_path_);
      if (s.ok()) durable_.set(last_sequence());
    }
    ::close(fd_);
    fd_ = -1;
  }
  return s;
}

}  // namespace sluice::journal
