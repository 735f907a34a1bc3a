// journal_bench: the journal's write throughput, durable-append latency and read/verify
// throughput, each beside the plain system-call or memory baseline it is bounded by, in one
// binary so that --benchmark_enable_random_interleaving runs them under the same conditions.
//
// Every event is a 64-byte wire frame (a TRANSACTION frame whose payload is extended to 60
// bytes), so every journal record is 96 bytes: 32-byte record header + 64-byte frame (already
// 8-aligned). Bytes/s counters count record bytes (96 per event) for the journal and the same
// number of bytes for the baselines.
//
// Names (Google Benchmark appends /manual_time: every benchmark times itself with now_ns() so
// that untimed per-iteration setup and cleanup stay out of the numbers):
//
//   JournalAppend/<none|batch>/<uring|pwrite>[/poll_each]
//       One JournalWriter (128 MiB segments, max_batch_bytes 1 MiB, durability none or batch,
//       use_io_uring true or false) appends kAppendEvents events (exactly two segments' worth,
//       268 MB) in sequence and then flush()es. The appender drives the writer the way
//       JournalStage does when the ring is full of events: append() until it answers kFull,
//       then poll() until append() takes the record. /poll_each instead calls poll() after
//       every append() (a stage that sees one event per pass; kRecordsPerSegment events only,
//       durability none), which shows what group commit does when the appender is not ahead.
//       Timed: JournalWriter::open() of a fresh directory (which creates the first segment)
//       through flush(): every segment the data fills is created inside the timing, i.e. the
//       steady-state cost of one segment creation (fallocate + header + fdatasync + directory
//       fsync) per 128 MiB. Counters: create_ms (open(), i.e. one segment creation), roll_ms
//       (the stall at each segment boundary: drain the last batch, then create the next
//       segment), wait_pct (share of the time the appender spent in poll() waiting for kFull to
//       clear: submitting, writing inline, waiting for the disk, rolling) and append_ns (the
//       appender's own time per event outside those waits: record encoding, CRC, copy).
//       Untimed: the segment files are truncated before the writer is closed, so its closing
//       fdatasync does not push 268 MB of page cache to the disk between iterations (the
//       baselines do the same), and the directory is removed.
//   PwriteBaseline[/fdatasync]
//       The same number of bytes (valid records, prebuilt) written with pwrite() in 1 MiB
//       chunks (= max_batch_bytes), sequentially, into a file fallocate()d to 256 MiB outside
//       the timing (like a segment, so the writes land in unwritten extents as the journal's
//       do); /fdatasync: fdatasync() after every chunk (the batch-mode baseline).
//
//   DurableLatency/<batch|sync>/<rate>
//       Open-loop: the benchmark thread publishes InputEvents into a 32Ki-slot ring at <rate>
//       events/s on a fixed schedule (intended send time of event r: start + r / rate); a
//       JournalStage runs on its own AgentRunner thread; an observer agent on a third thread
//       stamps each event when it becomes durable and records now - intended time (so a late
//       producer, a full ring or a stalled disk all count: coordinated-omission correct).
//       sync: the observer is a ring consumer gated on JournalStage::durable() and the ring is
//       gated on it (slots are held until durable, as shards gated on durable hold them in the
//       daemon). batch: the observer watches JournalWriter::durable() from the side and the ring
//       is gated only on the stage's copy sequence (as in the daemon, where decisions do not wait
//       for the disk). The writer is the same machinery in both modes (write + linked fdatasync
//       per group commit). 3 threads on 2 CPUs: the two agents use backoff idling (200 spins,
//       50 yields, then sleeps of 1 us doubling up to 50 us), the producer sleeps or yields
//       until its next send time. Counters: p50_us, p99_us, p999_us, max_us, achieved_per_s
//       (events / (last durable - first intended)), events_per_commit, lag_p99_us (how late the
//       producer itself published: part of the latency), rolls.
//   RawFdatasync/<fallocated|overwrite>
//       fdatasync() after a 4 KiB pwrite at increasing offsets (a new block each time), p50/p99/p99.9: into a
//       fallocate()d file (unwritten extents, as the journal writes) and into a file whose
//       blocks were already written (no extent conversion), same filesystem, same run.
//
//   JournalRead
//       A JournalReader reads all records of a kReadEvents-event journal (5M events, 480 MB,
//       four 128 MiB segments; written once per process, in none mode, then read once to warm
//       the page cache), checking every sequence; the reader maps each segment afresh (mmap +
//       MADV_SEQUENTIAL) per pass, as it does in replay. Counter faults: minor page faults per
//       pass; cached_pct: share of the data pages resident in the page cache before the run.
//   MemoryReadBaseline
//       A sum of the 64-bit words of the same record bytes through mappings populated once
//       (no page faults while timed): the memory-bandwidth bound.
//   FreshMmapRead[/populate]
//       The same sum through a fresh mmap of each segment per pass, like the reader's (page
//       faults included); /populate prefaults the data range with madvise(MADV_POPULATE_READ)
//       first (a possible change to the reader).
//   RecordCrcScan
//       record_crc() of every record through the populated mappings, compared with the stored
//       CRC: the reader's checksum cost on its own.
//   RecordEncode
//       encode_record() (header, frame copy and the CRC32C computed as it copies) of the append
//       benchmark's events into a 1 MiB buffer: the appender's CPU work without the writer or
//       any I/O.
//
// Diagnostics: with JOURNAL_BENCH_TRACE set, DurableLatency prints every commit whose oldest
// event waited more than 5 ms (when, which events, how long), to tell stalls from noise.
//
// Robustness: every append result is checked, a writer or stage failure ends the benchmark with
// SkipWithError, record counts and sequences are verified after writing and after reading, and
// every wait has a deadline. Scratch files go to $JOURNAL_BENCH_DIR, by default
// <build dir>/bench-journal-tmp (next to build/release), i.e. the filesystem of the source
// tree; each run uses a fresh directory and everything is removed at exit.
#include <benchmark/benchmark.h>
#include <fcntl.h>
#include <sched.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/utsname.h>
#include <time.h>
#include <nmmintrin.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "core/cache_line.h"
#include "core/clock.h"
#include "core/cpu.h"
#include "core/histogram.h"
#include "core/idle_strategy.h"
#include "core/input_event.h"
#include "core/ring_buffer.h"
#include "core/sequence.h"
#include "core/sequence_barrier.h"
#include "core/wait_strategy.h"
#include "core/wire_format.h"
#include "io/journal_format.h"
#include "io/journal_reader.h"
#include "io/journal_writer.h"
#include "io/uring.h"
#include "pipeline/agent.h"
#include "pipeline/agent_runner.h"
#include "pipeline/journal_stage.h"

namespace sluice {
namespace {

namespace fs = std::filesystem;
using journal::AppendResult;
using journal::Durability;
using journal::JournalReader;
using journal::JournalWriter;
using journal::RecordMeta;
using journal::WriterOptions;

// ---------------------------------------------------------------------------------------------
// Sizes.

constexpr size_t kFrameSize = 64;
constexpr size_t kRecordSize = journal::record_size(kFrameSize);
static_assert(kRecordSize == 96, "a 64-byte frame makes a 96-byte record");
constexpr uint64_t kSegmentSize = journal::kDefaultSegmentSize;  // 128 MiB
constexpr size_t kMaxBatchBytes = size_t{1} << 20;                // the writer's default
constexpr int64_t kRecordsPerSegment =
    static_cast<int64_t>((kSegmentSize - journal::kSegmentHeaderSize) / kRecordSize);
constexpr int64_t kAppendEvents = 2 * kRecordsPerSegment;  // fills exactly two segments
constexpr int64_t kPollEachEvents = kRecordsPerSegment;    // exactly one segment
constexpr int64_t kReadEvents = 5'000'000;                 // 480 MB of records
constexpr int64_t kFramePool = 4096;                       // distinct frames, cycled
constexpr int64_t kRingSize = 32 * 1024;
constexpr int64_t kDeadlineNs = 120'000'000'000;  // no single run may take longer than this

// ---------------------------------------------------------------------------------------------
// Scratch directories.

std::string scratch_root() {
  static const std::string root = [] {
    if (const char* env = std::getenv("JOURNAL_BENCH_DIR"); env != nullptr && *env != '\0') {
      return std::string(env);
    }
    // <build>/<preset>/bench/journal_bench -> <build>/bench-journal-tmp
    std::error_code ec;
    const fs::path exe = fs::read_symlink("/proc/self/exe", ec);
    if (!ec) return (exe.parent_path().parent_path().parent_path() / "bench-journal-tmp").string();
    return std::string("bench-journal-tmp");
  }();
  return root;
}

// This process's directory under the root; removed at exit.
const std::string& process_dir() {
  static const std::string dir = [] {
    const std::string d = scratch_root() + "/run-" + std::to_string(::getpid());
    std::error_code ec;
    fs::create_directories(d, ec);
    return d;
  }();
  return dir;
}

std::string fresh_dir(std::string_view what) {
  static int counter = 0;
  const std::string d = process_dir() + "/" + std::string(what) + "-" + std::to_string(++counter);
  std::error_code ec;
  fs::remove_all(d, ec);
  fs::create_directories(d, ec);
  return d;
}

void remove_dir(const std::string& dir) {
  std::error_code ec;
  fs::remove_all(dir, ec);
}

std::string filesystem_name(const std::string& path) {
  struct statfs st{};
  if (::statfs(path.c_str(), &st) != 0) return std::string("? (") + std::strerror(errno) + ")";
  switch (static_cast<uint64_t>(st.f_type)) {
    case 0xEF53: return "ext4";
    case 0x58465342: return "xfs";
    case 0x9123683E: return "btrfs";
    case 0x01021994: return "tmpfs";
    case 0x794C7630: return "overlayfs";
    default: {
      char buf[32];
      std::snprintf(buf, sizeof buf, "0x%lx", static_cast<unsigned long>(st.f_type));
      return buf;
    }
  }
}

// Truncates every segment file of `dir` to 0: drops the dirty page cache so that the writer's
// closing fdatasync (and background writeback) do not write it to the disk between iterations.
void drop_segments(const std::string& dir) {
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(dir, ec)) {
    const int fd = ::open(entry.path().c_str(), O_WRONLY | O_CLOEXEC);
    if (fd < 0) continue;
    (void)::ftruncate(fd, 0);
    ::close(fd);
  }
}

int64_t minor_faults() {
  rusage ru{};
  getrusage(RUSAGE_THREAD, &ru);
  return ru.ru_minflt;
}

// ---------------------------------------------------------------------------------------------
// Events.

// A 64-byte frame: a TRANSACTION frame with 20 extra payload bytes (longer payloads are legal).
void make_frame(uint64_t i, std::span<std::byte> out) {
  const wire::Transaction t{.client_seq = i,
                            .event_time_ns = static_cast<int64_t>(1'700'000'000'000'000'000 + i),
                            .account_id = i % 10'007,
                            .amount_minor = static_cast<int64_t>(i * 37 % 100'000),
                            .merchant_id = static_cast<uint32_t>(i % 997),
                            .currency = 978,
                            .channel = 1};
  const size_t n = wire::encode(t, out);
  for (size_t k = n; k < kFrameSize; ++k) out[k] = static_cast<std::byte>((i * 131 + k) & 0xFF);
  wire::store<uint16_t>(out.data(), static_cast<uint16_t>(kFrameSize));
}

const std::vector<std::array<std::byte, kFrameSize>>& frame_pool() {
  static const auto pool = [] {
    std::vector<std::array<std::byte, kFrameSize>> p(kFramePool);
    for (int64_t i = 0; i < kFramePool; ++i) make_frame(static_cast<uint64_t>(i), p[i]);
    return p;
  }();
  return pool;
}

// The frame of event i (0-based); the pool is built once, before any timing (frame_pool()).
std::span<const std::byte> frame_for(int64_t i) {
  static const std::array<std::byte, kFrameSize>* const frames = frame_pool().data();
  const auto& f = frames[static_cast<size_t>(i & (kFramePool - 1))];
  return {f.data(), f.size()};
}

RecordMeta meta_for(int64_t sequence) {
  return RecordMeta{.sequence = sequence,
                    .ingest_ns = 1'700'000'000'000'000'000 + sequence,
                    .client_id = 42};
}

std::string status_text(const absl::Status& s) { return std::string(s.message()); }

// ---------------------------------------------------------------------------------------------
// JournalAppend.

struct AppendRun {
  bool ok = true;
  std::string error;
  int64_t wait_ns = 0;  // inside poll() loops waiting for kFull to clear
  int64_t roll_ns = 0;  // at segment boundaries (also counted in wait_ns)
  int64_t rolls = 0;
};

// Appends sequences 1..events. poll_each: poll() after every append; else only on kFull.
AppendRun append_events(JournalWriter& writer, int64_t events, bool poll_each, int64_t deadline) {
  AppendRun run;
  for (int64_t i = 0; i < events; ++i) {
    const int64_t sequence = i + 1;
    const RecordMeta meta = meta_for(sequence);
    const std::span<const std::byte> frame = frame_for(i);
    AppendResult r = writer.append(meta, frame);
    if (r == AppendResult::kFull) {
      const int64_t t0 = now_ns();
      uint64_t spins = 0;
      do {
        writer.poll();
        r = writer.append(meta, frame);
        if ((++spins & 1023) == 0 && now_ns() > deadline) {
          run.ok = false;
          run.error = "append: kFull for too long (deadline passed)";
          return run;
        }
      } while (r == AppendResult::kFull);
      const int64_t waited = now_ns() - t0;
      run.wait_ns += waited;
      if (i > 0 && i % kRecordsPerSegment == 0) {  // this record opened a new segment
        run.roll_ns += waited;
        ++run.rolls;
      }
    } else if (r == AppendResult::kOk && i > 0 && i % kRecordsPerSegment == 0) {
      ++run.rolls;  // rolled inside append() without a kFull (nothing was in flight)
    }
    if (r != AppendResult::kOk) {
      run.ok = false;
      run.error = "append of sequence " + std::to_string(sequence) +
                  " failed: " + status_text(writer.status());
      return run;
    }
    if (poll_each) writer.poll();
  }
  return run;
}

void BM_JournalAppend(benchmark::State& state, Durability durability, bool use_uring,
                      bool poll_each, bool prepare) {
  const int64_t events = poll_each ? kPollEachEvents : kAppendEvents;
  (void)frame_pool();
  double create_ns = 0, roll_ns = 0, wait_ns = 0, total_ns = 0;
  int64_t rolls = 0, prepared_rolls = 0, iterations = 0;
  for (auto _ : state) {
    const std::string dir = fresh_dir("append");
    const int64_t t0 = now_ns();
    auto opened = JournalWriter::open(WriterOptions{.dir = dir,
                                                    .segment_size = kSegmentSize,
                                                    .durability = durability,
                                                    .max_batch_bytes = kMaxBatchBytes,
                                                    .use_io_uring = use_uring,
                                                    .prepare_segments = prepare});
    const int64_t t_open = now_ns();
    if (!opened.ok()) {
      state.SkipWithError(("open: " + status_text(opened.status())).c_str());
      remove_dir(dir);
      break;
    }
    JournalWriter& writer = **opened;
    if (use_uring && !writer.using_io_uring()) {
      state.SkipWithError(("io_uring unavailable: " + writer.fallback_reason()).c_str());
      remove_dir(dir);
      break;
    }
    AppendRun run = append_events(writer, events, poll_each, t0 + kDeadlineNs);
    absl::Status flushed = run.ok ? writer.flush() : absl::OkStatus();
    const int64_t t1 = now_ns();
    state.SetIterationTime(static_cast<double>(t1 - t0) * 1e-9);

    // Untimed: verify, then drop the page cache and clean up.
    std::string error;
    if (!run.ok) {
      error = run.error;
    } else if (!flushed.ok()) {
      error = "flush: " + status_text(flushed);
    } else if (writer.written().get() != events) {
      error = "written() is " + std::to_string(writer.written().get()) + ", expected " +
              std::to_string(events);
    } else if (durability != Durability::kNone && writer.durable().get() != events) {
      error = "durable() is " + std::to_string(writer.durable().get());
    } else if (run.rolls != (events - 1) / kRecordsPerSegment) {
      error = "saw " + std::to_string(run.rolls) + " segment rolls";
    }
    prepared_rolls += writer.prepared_rolls();
    drop_segments(dir);
    opened->reset();  // close(): fdatasync of the now empty files
    remove_dir(dir);
    if (!error.empty()) {
      state.SkipWithError(error.c_str());
      break;
    }
    create_ns += static_cast<double>(t_open - t0);
    roll_ns += static_cast<double>(run.roll_ns);
    wait_ns += static_cast<double>(run.wait_ns);
    total_ns += static_cast<double>(t1 - t0);
    rolls += run.rolls;
    ++iterations;
  }
  if (iterations == 0) return;
  const double n = static_cast<double>(iterations);
  state.SetItemsProcessed(iterations * events);
  state.SetBytesProcessed(iterations * events * static_cast<int64_t>(kRecordSize));
  state.counters["create_ms"] = create_ns / n / 1e6;
  state.counters["roll_ms"] = rolls > 0 ? roll_ns / static_cast<double>(rolls) / 1e6 : 0.0;
  state.counters["prepared_rolls"] = static_cast<double>(prepared_rolls) / n;
  state.counters["wait_pct"] = 100.0 * wait_ns / total_ns;
  state.counters["append_ns"] =
      (total_ns - wait_ns - create_ns) / (n * static_cast<double>(events));
  state.counters["events"] = static_cast<double>(events);
}

// ---------------------------------------------------------------------------------------------
// PwriteBaseline.

// kMaxBatchBytes of valid 96-byte records (the last one cut at the chunk's end).
const std::vector<std::byte>& record_chunk() {
  static const std::vector<std::byte> chunk = [] {
    std::vector<std::byte> c(kMaxBatchBytes + kRecordSize);
    size_t at = 0;
    for (int64_t i = 0; at + kRecordSize <= c.size(); ++i) {
      at += journal::encode_record(meta_for(i + 1), frame_for(i),
                                   std::span<std::byte>(c.data() + at, kRecordSize));
    }
    c.resize(kMaxBatchBytes);
    return c;
  }();
  return chunk;
}

void BM_PwriteBaseline(benchmark::State& state, bool sync) {
  const auto& chunk = record_chunk();
  const uint64_t bytes = static_cast<uint64_t>(kAppendEvents) * kRecordSize;
  int64_t iterations = 0;
  for (auto _ : state) {
    const std::string dir = fresh_dir("pwrite");
    const std::string path = dir + "/baseline.dat";
    const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0 || ::fallocate(fd, 0, 0, static_cast<off_t>(2 * kSegmentSize)) != 0 ||
        ::fdatasync(fd) != 0) {
      state.SkipWithError((std::string("create/fallocate: ") + std::strerror(errno)).c_str());
      if (fd >= 0) ::close(fd);
      remove_dir(dir);
      break;
    }
    std::string error;
    const int64_t t0 = now_ns();
    for (uint64_t off = 0; off < bytes && error.empty();) {
      const size_t n = static_cast<size_t>(std::min<uint64_t>(chunk.size(), bytes - off));
      size_t done = 0;
      while (done < n) {
        const ssize_t w = ::pwrite(fd, chunk.data() + done, n - done, static_cast<off_t>(off + done));
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) {
          error = std::string("pwrite: ") + std::strerror(w < 0 ? errno : EIO);
          break;
        }
        done += static_cast<size_t>(w);
      }
      if (sync && error.empty() && ::fdatasync(fd) != 0) {
        error = std::string("fdatasync: ") + std::strerror(errno);
      }
      off += n;
    }
    const int64_t t1 = now_ns();
    state.SetIterationTime(static_cast<double>(t1 - t0) * 1e-9);
    (void)::ftruncate(fd, 0);
    ::close(fd);
    remove_dir(dir);
    if (!error.empty()) {
      state.SkipWithError(error.c_str());
      break;
    }
    ++iterations;
  }
  state.SetItemsProcessed(iterations * kAppendEvents);
  state.SetBytesProcessed(static_cast<int64_t>(static_cast<uint64_t>(iterations) * bytes));
  state.counters["events"] = static_cast<double>(kAppendEvents);
}

// RecordEncode: the appender's CPU work without the writer: encode_record (header, CRC32C,
// frame copy) of the same events into a 1 MiB buffer reused like the writer's batch buffer.
void BM_RecordEncode(benchmark::State& state) {
  (void)frame_pool();
  std::vector<std::byte> buffer(kMaxBatchBytes + kRecordSize);
  int64_t iterations = 0, total_ns = 0;
  for (auto _ : state) {
    const int64_t t0 = now_ns();
    size_t at = 0;
    for (int64_t i = 0; i < kAppendEvents; ++i) {
      if (at + kRecordSize > buffer.size()) at = 0;
      at += journal::encode_record(meta_for(i + 1), frame_for(i),
                                   std::span<std::byte>(buffer.data() + at, kRecordSize));
    }
    benchmark::DoNotOptimize(buffer.data());
    benchmark::ClobberMemory();
    const int64_t t1 = now_ns();
    state.SetIterationTime(static_cast<double>(t1 - t0) * 1e-9);
    total_ns += t1 - t0;
    ++iterations;
  }
  state.SetItemsProcessed(iterations * kAppendEvents);
  state.SetBytesProcessed(iterations * kAppendEvents * static_cast<int64_t>(kRecordSize));
  if (iterations > 0) {
    state.counters["encode_ns"] =
        static_cast<double>(total_ns) / static_cast<double>(iterations * kAppendEvents);
  }
}

// ---------------------------------------------------------------------------------------------
// DurableLatency.

IdleConfig agent_idle() {
  return IdleConfig{.kind = IdleKind::kBackoff,
                    .max_spins = 200,
                    .max_yields = 50,
                    .min_park_ns = 1'000,
                    .max_park_ns = 50'000};
}

// The open-loop schedule: event r (ring sequence) is due at start + r * period.
struct Schedule {
  int64_t start_ns = 0;
  double period_ns = 0;
  int64_t intended(int64_t r) const noexcept {
    return start_ns + static_cast<int64_t>(static_cast<double>(r) * period_ns);
  }
};

// Stamps every event when it becomes durable. sync: a ring consumer gated on the stage's
// durable() (its progress gates the ring). batch: watches the writer's durable() from the side.
class DurableObserver final : public Agent {
 public:
  DurableObserver(RingBuffer<InputEvent>& ring, const JournalStage<>& stage,
                  const JournalWriter& writer, bool gate_on_stage, int64_t base, Schedule schedule,
                  int64_t events)
      : barrier_(ring.sequencer(), {&stage.durable()}),
        stage_(stage),
        writer_(writer),
        gate_on_stage_(gate_on_stage),
        base_(base),
        schedule_(schedule),
        events_(events) {}

  std::string_view name() const override { return "observer"; }

  int do_work() override {
    const int64_t durable = gate_on_stage_ ? barrier_.poll(next_)  // ring space
                                           : writer_.durable().get() - base_;
    if (durable < next_) return 0;
    const int64_t now = now_ns();
    const int64_t last = std::min(durable, events_ - 1);
    for (int64_t r = next_; r <= last; ++r) histogram_.record(now - schedule_.intended(r));
    if (trace_ && now - schedule_.intended(next_) > 5'000'000) {
      std::fprintf(stderr,
                   "TRACE t=%.3f ms: events %ld..%ld durable, oldest waited %.3f ms; now "
                   "copied %ld, written %ld\n",
                   static_cast<double>(now - schedule_.start_ns) / 1e6, static_cast<long>(next_),
                   static_cast<long>(last),
                   static_cast<double>(now - schedule_.intended(next_)) / 1e6,
                   static_cast<long>(stage_.sequence().get()),
                   static_cast<long>(writer_.written().get() - base_));
    }
    ++commits_;
    const int n = static_cast<int>(last - next_ + 1);
    next_ = last + 1;
    progress_.set(last);
    if (next_ >= events_) {
      last_ns_ = now;
      done_.store(true, std::memory_order_release);
    }
    return n;
  }

  const Sequence& progress() const noexcept { return progress_; }
  bool done() const noexcept { return done_.load(std::memory_order_acquire); }
  // Read after the runner stopped.
  const Histogram& histogram() const noexcept { return histogram_; }
  int64_t commits() const noexcept { return commits_; }
  int64_t last_ns() const noexcept { return last_ns_; }
  int64_t seen() const noexcept { return next_; }

 private:
  SequenceBarrier<SingleProducerSequencer> barrier_;
  const JournalStage<>& stage_;
  const JournalWriter& writer_;
  const bool gate_on_stage_;
  const int64_t base_;
  const Schedule schedule_;
  const int64_t events_;
  const bool trace_ = std::getenv("JOURNAL_BENCH_TRACE") != nullptr;
  int64_t next_ = 0;
  int64_t commits_ = 0;
  int64_t last_ns_ = 0;
  Histogram histogram_;
  Sequence progress_;
  std::atomic<bool> done_{false};
};

void sleep_ns(int64_t ns) {
  timespec ts{static_cast<time_t>(ns / 1'000'000'000), static_cast<long>(ns % 1'000'000'000)};
  nanosleep(&ts, nullptr);
}

// Creates the journal's first segment through a writer, then writes zeros over all of it after
// the header and syncs, so its blocks are written extents: appends into it are overwrites, and
// their fdatasync need not convert unwritten extents (a journal commit each). An experiment for
// a writer that zero-fills (or recycles) segments instead of fallocate()ing them.
std::string prezero_first_segment(const std::string& dir) {
  {
    auto w = JournalWriter::open(WriterOptions{.dir = dir, .segment_size = kSegmentSize,
                                               .durability = Durability::kNone});
    if (!w.ok()) return "open: " + status_text(w.status());
    if (absl::Status s = (*w)->close(); !s.ok()) return "close: " + status_text(s);
  }
  const std::string path = dir + "/" + journal::segment_file_name(1);
  const int fd = ::open(path.c_str(), O_WRONLY | O_CLOEXEC);
  if (fd < 0) return "open " + path + ": " + std::strerror(errno);
  const std::vector<std::byte> zeros(kMaxBatchBytes);
  std::string error;
  for (uint64_t off = journal::kSegmentHeaderSize; off < kSegmentSize && error.empty();) {
    const size_t n = static_cast<size_t>(std::min<uint64_t>(zeros.size(), kSegmentSize - off));
    const ssize_t w = ::pwrite(fd, zeros.data(), n, static_cast<off_t>(off));
    if (w <= 0) error = std::string("pwrite: ") + std::strerror(errno);
    off += static_cast<uint64_t>(std::max<ssize_t>(w, 0));
  }
  if (error.empty() && ::fdatasync(fd) != 0) error = std::string("fdatasync: ") + std::strerror(errno);
  ::close(fd);
  return error;
}

void BM_DurableLatency(benchmark::State& state, Durability durability, int64_t rate,
                       double seconds, bool zeroed, bool prepare) {
  (void)set_current_thread_timer_slack_ns(1'000);
  (void)frame_pool();
  const int64_t events = static_cast<int64_t>(static_cast<double>(rate) * seconds);
  for (auto _ : state) {
    const std::string dir = fresh_dir("latency");
    if (zeroed) {
      if (std::string e = prezero_first_segment(dir); !e.empty()) {
        state.SkipWithError(("zeroing the first segment: " + e).c_str());
        remove_dir(dir);
        break;
      }
    }
    auto opened = JournalWriter::open(WriterOptions{.dir = dir,
                                                    .segment_size = kSegmentSize,
                                                    .durability = durability,
                                                    .max_batch_bytes = kMaxBatchBytes,
                                                    .use_io_uring = true,
                                                    .prepare_segments = prepare});
    if (!opened.ok()) {
      state.SkipWithError(("open: " + status_text(opened.status())).c_str());
      remove_dir(dir);
      break;
    }
    JournalWriter& writer = **opened;
    const bool sync = durability == Durability::kSync;
    auto wait = make_yielding_wait_strategy();
    auto ring = std::make_unique<RingBuffer<InputEvent>>(kRingSize, *wait);
    JournalStage<> stage(*ring, writer);
    const int64_t base = writer.next_sequence();
    // The first event is due 5 ms from now, after the threads below have started.
    const Schedule schedule{.start_ns = now_ns() + 5'000'000,
                            .period_ns = 1e9 / static_cast<double>(rate)};
    DurableObserver observer(*ring, stage, writer, sync, base, schedule, events);
    ring->add_gating_sequence(stage.sequence());
    if (sync) ring->add_gating_sequence(observer.progress());

    AgentRunner stage_runner(stage, RunnerOptions{.idle = agent_idle(), .thread_name = "journal"});
    AgentRunner observer_runner(observer,
                                RunnerOptions{.idle = agent_idle(), .thread_name = "observer"});
    std::string error;
    if (absl::Status s = stage_runner.start(); !s.ok()) error = status_text(s);
    if (absl::Status s = observer_runner.start(); error.empty() && !s.ok()) error = status_text(s);

    Histogram lag;  // how late the producer published each event
    const int64_t deadline = schedule.start_ns + kDeadlineNs;
    int64_t sent = 0;
    while (error.empty() && sent < events) {
      const int64_t now = now_ns();
      const int64_t due_at = schedule.intended(sent);
      if (now < due_at) {
        const int64_t ahead = due_at - now;
        if (ahead > 150'000) {
          sleep_ns(ahead - 100'000);
        } else if (ahead > 2'000) {
          sched_yield();
        } else {
          cpu_relax();
        }
        continue;
      }
      // Publish everything that is due now, at most a quarter of the ring per claim.
      int64_t due = static_cast<int64_t>(static_cast<double>(now - schedule.start_ns) /
                                         schedule.period_ns) + 1;
      due = std::min(due, events);
      const int64_t n = std::clamp<int64_t>(due - sent, 1, kRingSize / 4);
      int64_t hi;
      if (ring->try_next(n, &hi) == ClaimResult::kFull) {
        // The ring is full: the stage (sync: the disk) is behind. Waiting here is part of the
        // measured latency, since it is measured from the intended times.
        if (!stage_runner.is_running()) error = "journal stage stopped: " + status_text(stage_runner.status());
        if (now > deadline) error = "ring full past the deadline";
        sched_yield();
        continue;
      }
      const int64_t lo = hi - n + 1;
      for (int64_t s = lo; s <= hi; ++s) {
        InputEvent& e = (*ring)[s];
        e.sequence = base + s;
        e.ingest_ns = 1'700'000'000'000'000'000 + s;
        e.client_id = 42;
        e.receive_ticks = schedule.intended(s);
        e.frame_length = static_cast<uint16_t>(kFrameSize);
        std::memcpy(e.frame.data(), frame_for(s).data(), kFrameSize);
      }
      ring->publish(lo, hi);
      const int64_t published = now_ns();
      for (int64_t s = lo; s <= hi; ++s) lag.record(published - schedule.intended(s));
      sent += n;
    }
    const int64_t produced_ns = now_ns();
    while (error.empty() && !observer.done()) {
      if (!stage_runner.is_running()) {
        error = "journal stage stopped: " + status_text(stage_runner.status());
      } else if (now_ns() > produced_ns + 30'000'000'000) {
        error = "events not durable 30 s after the last was published (durable " +
                std::to_string(writer.durable().get()) + " of " + std::to_string(events) + ")";
      }
      sleep_ns(200'000);
    }
    observer_runner.stop();
    stage_runner.stop();
    if (error.empty() && !stage_runner.status().ok()) error = status_text(stage_runner.status());
    if (error.empty() && !observer_runner.status().ok()) {
      error = status_text(observer_runner.status());
    }
    if (error.empty() && (writer.durable().get() != base + events - 1 ||
                          observer.histogram().total_count() != events)) {
      error = "durable() " + std::to_string(writer.durable().get()) + ", observed " +
              std::to_string(observer.histogram().total_count()) + " of " +
              std::to_string(events);
    }
    const auto segments = std::count_if(
        fs::directory_iterator(dir), fs::directory_iterator{},
        [](const fs::directory_entry& e) { return e.path().extension() == ".seg"; });
    if (!error.empty()) {
      drop_segments(dir);
      opened->reset();
      remove_dir(dir);
      state.SkipWithError(error.c_str());
      break;
    }
    const Histogram& h = observer.histogram();
    const double span_ns = static_cast<double>(observer.last_ns() - schedule.start_ns);
    state.SetIterationTime(span_ns * 1e-9);
    state.SetItemsProcessed(events);
    state.SetBytesProcessed(events * static_cast<int64_t>(kRecordSize));
    state.counters["target_per_s"] = static_cast<double>(rate);
    state.counters["achieved_per_s"] = static_cast<double>(events) / (span_ns * 1e-9);
    state.counters["p50_us"] = static_cast<double>(h.value_at_percentile(50.0)) / 1e3;
    state.counters["p99_us"] = static_cast<double>(h.value_at_percentile(99.0)) / 1e3;
    state.counters["p999_us"] = static_cast<double>(h.value_at_percentile(99.9)) / 1e3;
    state.counters["max_us"] = static_cast<double>(h.max()) / 1e3;
    state.counters["commits"] = static_cast<double>(observer.commits());
    state.counters["events_per_commit"] =
        static_cast<double>(events) / static_cast<double>(std::max<int64_t>(1, observer.commits()));
    state.counters["lag_p99_us"] = static_cast<double>(lag.value_at_percentile(99.0)) / 1e3;
    state.counters["rolls"] = static_cast<double>(segments - 1);
    state.counters["prepared_rolls"] = static_cast<double>(writer.prepared_rolls());
    drop_segments(dir);
    opened->reset();
    remove_dir(dir);
  }
}

// ---------------------------------------------------------------------------------------------
// RawFdatasync.

void BM_RawFdatasync(benchmark::State& state, bool overwrite) {
  constexpr int kSyncs = 2000;
  constexpr size_t kWrite = 4096;  // one new block per fdatasync
  constexpr size_t kFileSize = 64u << 20;
  std::vector<std::byte> block(kWrite, std::byte{0x5A});
  for (auto _ : state) {
    const std::string dir = fresh_dir("fdatasync");
    const std::string path = dir + "/sync.dat";
    std::string error;
    const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0) error = std::string("open: ") + std::strerror(errno);
    if (error.empty() && ::fallocate(fd, 0, 0, static_cast<off_t>(kFileSize)) != 0) {
      error = std::string("fallocate: ") + std::strerror(errno);
    }
    if (error.empty() && overwrite) {
      // Write the blocks the test will use, so its writes are overwrites of written extents.
      std::vector<std::byte> zeros(1 << 20);
      for (size_t off = 0; off < kSyncs * kWrite && error.empty(); off += zeros.size()) {
        if (::pwrite(fd, zeros.data(), zeros.size(), static_cast<off_t>(off)) !=
            static_cast<ssize_t>(zeros.size())) {
          error = std::string("pwrite: ") + std::strerror(errno);
        }
      }
    }
    if (error.empty() && ::fsync(fd) != 0) error = std::string("fsync: ") + std::strerror(errno);
    Histogram h;
    int64_t total = 0;
    for (int i = 0; i < kSyncs && error.empty(); ++i) {
      if (::pwrite(fd, block.data(), kWrite, static_cast<off_t>(i * kWrite)) !=
          static_cast<ssize_t>(kWrite)) {
        error = std::string("pwrite: ") + std::strerror(errno);
        break;
      }
      const int64_t t0 = now_ns();
      if (::fdatasync(fd) != 0) {
        error = std::string("fdatasync: ") + std::strerror(errno);
        break;
      }
      const int64_t d = now_ns() - t0;
      h.record(d);
      total += d;
    }
    if (fd >= 0) ::close(fd);
    remove_dir(dir);
    if (!error.empty()) {
      state.SkipWithError(error.c_str());
      break;
    }
    state.SetIterationTime(static_cast<double>(total) * 1e-9);
    state.SetItemsProcessed(kSyncs);
    state.counters["p50_us"] = static_cast<double>(h.value_at_percentile(50.0)) / 1e3;
    state.counters["p99_us"] = static_cast<double>(h.value_at_percentile(99.0)) / 1e3;
    state.counters["p999_us"] = static_cast<double>(h.value_at_percentile(99.9)) / 1e3;
    state.counters["max_us"] = static_cast<double>(h.max()) / 1e3;
  }
}

// ---------------------------------------------------------------------------------------------
// The read journal (built once per process) and the read benchmarks.

struct Mapping {
  const std::byte* base = nullptr;
  size_t size = 0;
};

struct ReadJournal {
  std::string dir;
  std::string error;
  std::vector<journal::SegmentInfo> segments;
  uint64_t record_bytes = 0;
  double cached_pct = 0;
  std::vector<Mapping> populated;  // whole files, prefaulted; for the memory baselines
};

double resident_pct(const Mapping& m, uint64_t from, uint64_t to) {
  const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  std::vector<unsigned char> vec((m.size + page - 1) / page);
  if (mincore(const_cast<std::byte*>(m.base), m.size, vec.data()) != 0) return -1;
  size_t in = 0, total = 0;
  for (size_t p = from / page; p < (to + page - 1) / page && p < vec.size(); ++p, ++total) {
    in += vec[p] & 1;
  }
  return total == 0 ? 100.0 : 100.0 * static_cast<double>(in) / static_cast<double>(total);
}

ReadJournal build_read_journal() {
  ReadJournal j;
  j.dir = fresh_dir("read-journal");
  {
    auto opened = JournalWriter::open(WriterOptions{.dir = j.dir,
                                                    .segment_size = kSegmentSize,
                                                    .durability = Durability::kNone,
                                                    .max_batch_bytes = kMaxBatchBytes});
    if (!opened.ok()) {
      j.error = "open: " + status_text(opened.status());
      return j;
    }
    AppendRun run = append_events(**opened, kReadEvents, false, now_ns() + kDeadlineNs);
    if (!run.ok) {
      j.error = run.error;
      return j;
    }
    if (absl::Status s = (*opened)->close(); !s.ok()) {
      j.error = "close: " + status_text(s);
      return j;
    }
  }
  auto scan = journal::scan_journal(j.dir);  // also the warm pass over every record
  if (!scan.ok()) {
    j.error = "scan: " + status_text(scan.status());
    return j;
  }
  if (scan->record_count != kReadEvents || scan->last_sequence != kReadEvents ||
      scan->torn_tail.has_value()) {
    j.error = "scan found " + std::to_string(scan->record_count) + " records";
    return j;
  }
  j.segments = scan->segments;
  j.record_bytes = scan->bytes;
  double resident = 0;
  for (const auto& seg : j.segments) {
    const int fd = ::open(seg.path.c_str(), O_RDONLY | O_CLOEXEC);
    void* p = fd < 0 ? MAP_FAILED
                     : ::mmap(nullptr, seg.file_size, PROT_READ, MAP_SHARED, fd, 0);
    if (fd >= 0) ::close(fd);
    if (p == MAP_FAILED) {
      j.error = std::string("mmap: ") + std::strerror(errno);
      return j;
    }
    Mapping m{static_cast<const std::byte*>(p), seg.file_size};
    // Prefault the data range only: touching the never-written remainder of the last segment
    // would put zero pages in the page cache, which SEEK_DATA then reports as data, and the
    // reader's end-of-log check would read them.
    volatile uint64_t sink = 0;
    for (uint64_t off = 0; off < seg.data_end; off += 4096) sink = sink + wire::load<uint8_t>(m.base + off);
    resident += resident_pct(m, journal::kSegmentHeaderSize, seg.data_end) *
                static_cast<double>(seg.data_end);
    j.populated.push_back(m);
  }
  uint64_t data = 0;
  for (const auto& seg : j.segments) data += seg.data_end;
  j.cached_pct = resident / static_cast<double>(data);
  return j;
}

ReadJournal& read_journal() {
  static ReadJournal j = build_read_journal();
  return j;
}

bool check_read_journal(benchmark::State& state) {
  const ReadJournal& j = read_journal();
  if (!j.error.empty()) {
    state.SkipWithError(("building the read journal: " + j.error).c_str());
    return false;
  }
  return true;
}

void set_read_counters(benchmark::State& state, int64_t iterations, int64_t faults) {
  const ReadJournal& j = read_journal();
  state.SetItemsProcessed(iterations * kReadEvents);
  state.SetBytesProcessed(iterations * static_cast<int64_t>(j.record_bytes));
  state.counters["cached_pct"] = j.cached_pct;
  state.counters["faults"] =
      iterations > 0 ? static_cast<double>(faults) / static_cast<double>(iterations) : 0.0;
  state.counters["segments"] = static_cast<double>(j.segments.size());
}

void BM_JournalRead(benchmark::State& state) {
  if (!check_read_journal(state)) return;
  const ReadJournal& j = read_journal();
  int64_t iterations = 0, faults = 0, end_ns = 0, close_ns = 0;
  for (auto _ : state) {
    const int64_t f0 = minor_faults();
    const int64_t t0 = now_ns();
    auto opened = JournalReader::open(j.dir);
    if (!opened.ok()) {
      state.SkipWithError(("reader open: " + status_text(opened.status())).c_str());
      break;
    }
    JournalReader& reader = **opened;
    journal::Record record;
    int64_t count = 0;
    uint64_t acc = 0;
    bool in_order = true;
    journal::ReadResult r;
    int64_t t_last = t0;  // when the last record was returned
    while ((r = reader.next(&record)) == journal::ReadResult::kRecord) {
      ++count;
      in_order &= record.sequence == count;
      acc += wire::load<uint64_t>(record.frame.data() + 4) ^ record.client_id;
      if (count == kReadEvents) t_last = now_ns();
    }
    const int64_t t_end = now_ns();
    opened->reset();  // unmaps the last segment: part of a pass
    const int64_t t1 = now_ns();
    end_ns += t_end - t_last;
    close_ns += t1 - t_end;
    faults += minor_faults() - f0;
    benchmark::DoNotOptimize(acc);
    state.SetIterationTime(static_cast<double>(t1 - t0) * 1e-9);
    if (r != journal::ReadResult::kEnd || count != kReadEvents || !in_order) {
      state.SkipWithError(("read " + std::to_string(count) + " records, in order: " +
                           (in_order ? "yes" : "no") + ", end: " +
                           (r == journal::ReadResult::kEnd ? "clean" : "corrupt"))
                              .c_str());
      break;
    }
    ++iterations;
  }
  set_read_counters(state, iterations, faults);
  if (iterations > 0) {
    // The final next() (kEnd: the check that the last segment's remainder is all zeros) and
    // the reader's destruction (unmapping the last segment), per pass.
    state.counters["end_ms"] = static_cast<double>(end_ns) / static_cast<double>(iterations) / 1e6;
    state.counters["close_ms"] =
        static_cast<double>(close_ns) / static_cast<double>(iterations) / 1e6;
  }
}

__attribute__((noinline)) uint64_t sum_words(const std::byte* p, size_t n) {
  uint64_t a = 0, b = 0, c = 0, d = 0;
  size_t i = 0;
  for (; i + 32 <= n; i += 32) {
    a += wire::load<uint64_t>(p + i);
    b += wire::load<uint64_t>(p + i + 8);
    c += wire::load<uint64_t>(p + i + 16);
    d += wire::load<uint64_t>(p + i + 24);
  }
  for (; i + 8 <= n; i += 8) a += wire::load<uint64_t>(p + i);
  return a + b + c + d;
}

void BM_MemoryReadBaseline(benchmark::State& state) {
  if (!check_read_journal(state)) return;
  const ReadJournal& j = read_journal();
  int64_t iterations = 0, faults = 0;
  for (auto _ : state) {
    const int64_t f0 = minor_faults();
    const int64_t t0 = now_ns();
    uint64_t acc = 0;
    for (size_t k = 0; k < j.segments.size(); ++k) {
      const uint64_t from = journal::kSegmentHeaderSize;
      acc += sum_words(j.populated[k].base + from, j.segments[k].data_end - from);
    }
    const int64_t t1 = now_ns();
    faults += minor_faults() - f0;
    benchmark::DoNotOptimize(acc);
    state.SetIterationTime(static_cast<double>(t1 - t0) * 1e-9);
    ++iterations;
  }
  set_read_counters(state, iterations, faults);
}

void BM_FreshMmapRead(benchmark::State& state, bool populate) {
  if (!check_read_journal(state)) return;
  const ReadJournal& j = read_journal();
  int64_t iterations = 0, faults = 0;
  std::string error;
  for (auto _ : state) {
    const int64_t f0 = minor_faults();
    const int64_t t0 = now_ns();
    uint64_t acc = 0;
    for (const auto& seg : j.segments) {
      // As the reader: open, fstat, map the whole file, MADV_SEQUENTIAL, read, unmap.
      const int fd = ::open(seg.path.c_str(), O_RDONLY | O_CLOEXEC);
      struct stat st{};
      if (fd < 0 || ::fstat(fd, &st) != 0) {
        error = std::string("open: ") + std::strerror(errno);
        if (fd >= 0) ::close(fd);
        break;
      }
      const size_t size = static_cast<size_t>(st.st_size);
      void* p = ::mmap(nullptr, size, PROT_READ, MAP_SHARED, fd, 0);
      if (p == MAP_FAILED) {
        error = std::string("mmap: ") + std::strerror(errno);
        ::close(fd);
        break;
      }
      ::madvise(p, size, MADV_SEQUENTIAL);
      if (populate) ::madvise(p, seg.data_end, MADV_POPULATE_READ);
      const auto* base = static_cast<const std::byte*>(p);
      acc += sum_words(base + journal::kSegmentHeaderSize,
                       seg.data_end - journal::kSegmentHeaderSize);
      ::munmap(p, size);
      ::close(fd);
    }
    const int64_t t1 = now_ns();
    faults += minor_faults() - f0;
    benchmark::DoNotOptimize(acc);
    state.SetIterationTime(static_cast<double>(t1 - t0) * 1e-9);
    if (!error.empty()) {
      state.SkipWithError(error.c_str());
      break;
    }
    ++iterations;
  }
  set_read_counters(state, iterations, faults);
}

int64_t crc_scan(const std::byte* p, uint64_t from, uint64_t to) {
  int64_t good = 0;
  uint64_t off = from;
  while (off < to) {
    const uint32_t length = wire::load<uint32_t>(p + off);
    const uint32_t crc = journal::record_crc(p + off, length);
    good += wire::load<uint32_t>(p + off + 4) == crc;
    off += journal::record_size(length);
  }
  return good;
}

void BM_RecordCrcScan(benchmark::State& state) {
  if (!check_read_journal(state)) return;
  const ReadJournal& j = read_journal();
  int64_t iterations = 0, faults = 0;
  for (auto _ : state) {
    const int64_t f0 = minor_faults();
    const int64_t t0 = now_ns();
    int64_t good = 0;
    for (size_t k = 0; k < j.segments.size(); ++k) {
      good += crc_scan(j.populated[k].base, journal::kSegmentHeaderSize, j.segments[k].data_end);
    }
    const int64_t t1 = now_ns();
    faults += minor_faults() - f0;
    state.SetIterationTime(static_cast<double>(t1 - t0) * 1e-9);
    if (good != kReadEvents) {
      state.SkipWithError(("CRC matched " + std::to_string(good) + " records").c_str());
      break;
    }
    ++iterations;
  }
  set_read_counters(state, iterations, faults);
}

// ---------------------------------------------------------------------------------------------

void register_benchmarks() {
  using benchmark::RegisterBenchmark;
  struct AppendCase {
    const char* name;
    Durability durability;
    bool uring;
    bool poll_each;
    int iterations;
    bool prepare = true;
  };
  const AppendCase appends[] = {
      {"JournalAppend/none/uring", Durability::kNone, true, false, 5},
      {"JournalAppend/none/pwrite", Durability::kNone, false, false, 5},
      {"JournalAppend/batch/uring", Durability::kBatch, true, false, 1},
      {"JournalAppend/batch/pwrite", Durability::kBatch, false, false, 1},
      // Without segment preparation: what zero-filling the second segment costs a disk-bound
      // append (one extra write of it).
      {"JournalAppend/batch/uring/noprepare", Durability::kBatch, true, false, 1, false},
      {"JournalAppend/none/uring/poll_each", Durability::kNone, true, true, 1},
      {"JournalAppend/none/pwrite/poll_each", Durability::kNone, false, true, 1},
  };
  for (const AppendCase& c : appends) {
    RegisterBenchmark(c.name, BM_JournalAppend, c.durability, c.uring, c.poll_each, c.prepare)
        ->UseManualTime()
        ->Unit(benchmark::kMillisecond)
        ->Iterations(c.iterations);
  }
  RegisterBenchmark("PwriteBaseline", BM_PwriteBaseline, false)
      ->UseManualTime()
      ->Unit(benchmark::kMillisecond)
      ->Iterations(5);
  RegisterBenchmark("PwriteBaseline/fdatasync", BM_PwriteBaseline, true)
      ->UseManualTime()
      ->Unit(benchmark::kMillisecond)
      ->Iterations(1);
  RegisterBenchmark("RecordEncode", BM_RecordEncode)
      ->UseManualTime()
      ->Unit(benchmark::kMillisecond)
      ->Iterations(5);

  struct LatencyCase {
    const char* name;
    Durability durability;
    int64_t rate;
    double seconds;
    bool zeroed;
    bool prepare = true;
  };
  const LatencyCase latencies[] = {
      {"DurableLatency/batch/10k", Durability::kBatch, 10'000, 3.0, false},
      {"DurableLatency/batch/100k", Durability::kBatch, 100'000, 2.0, false},
      {"DurableLatency/batch/1M", Durability::kBatch, 1'000'000, 2.0, false},
      {"DurableLatency/sync/10k", Durability::kSync, 10'000, 3.0, false},
      {"DurableLatency/sync/100k", Durability::kSync, 100'000, 2.0, false},
      {"DurableLatency/sync/1M", Durability::kSync, 1'000'000, 2.0, false},
      // 1M/s rolls ~1.4 s in, onto the segment prepared since ~0.7 s (prepared_rolls says
      // whether it was ready); without preparation the roll fallocates, as before.
      {"DurableLatency/sync/1M/noprepare", Durability::kSync, 1'000'000, 2.0, false, false},
      // The first segment zero-filled beforehand (written extents): the writer as it would be
      // with zero-filled or recycled segments. 1M/s would leave it after 1.4 s, so 10k and 100k.
      {"DurableLatency/sync/10k/zeroed", Durability::kSync, 10'000, 3.0, true},
      {"DurableLatency/sync/100k/zeroed", Durability::kSync, 100'000, 2.0, true},
  };
  for (const LatencyCase& c : latencies) {
    RegisterBenchmark(c.name, BM_DurableLatency, c.durability, c.rate, c.seconds, c.zeroed,
                      c.prepare)
        ->UseManualTime()
        ->Unit(benchmark::kMillisecond)
        ->Iterations(1);
  }
  RegisterBenchmark("RawFdatasync/fallocated", BM_RawFdatasync, false)
      ->UseManualTime()
      ->Unit(benchmark::kMillisecond)
      ->Iterations(1);
  RegisterBenchmark("RawFdatasync/overwrite", BM_RawFdatasync, true)
      ->UseManualTime()
      ->Unit(benchmark::kMillisecond)
      ->Iterations(1);

  RegisterBenchmark("JournalRead", BM_JournalRead)->UseManualTime()->Unit(benchmark::kMillisecond)->Iterations(5);
  RegisterBenchmark("MemoryReadBaseline", BM_MemoryReadBaseline)
      ->UseManualTime()
      ->Unit(benchmark::kMillisecond)
      ->Iterations(10);
  RegisterBenchmark("FreshMmapRead", BM_FreshMmapRead, false)
      ->UseManualTime()
      ->Unit(benchmark::kMillisecond)
      ->Iterations(5);
  RegisterBenchmark("FreshMmapRead/populate", BM_FreshMmapRead, true)
      ->UseManualTime()
      ->Unit(benchmark::kMillisecond)
      ->Iterations(5);
  RegisterBenchmark("RecordCrcScan", BM_RecordCrcScan)
      ->UseManualTime()
      ->Unit(benchmark::kMillisecond)
      ->Iterations(5);
}

void add_context() {
  const std::string& dir = process_dir();
  benchmark::AddCustomContext("journal_dir", dir);
  benchmark::AddCustomContext("journal_filesystem", filesystem_name(dir));
  benchmark::AddCustomContext("record_bytes", std::to_string(kRecordSize) + " (32-byte header + " +
                                                  std::to_string(kFrameSize) + "-byte frame)");
  benchmark::AddCustomContext("segment_size", std::to_string(kSegmentSize));
  benchmark::AddCustomContext("max_batch_bytes", std::to_string(kMaxBatchBytes));
  benchmark::AddCustomContext("append_events", std::to_string(kAppendEvents));
  benchmark::AddCustomContext("read_events", std::to_string(kReadEvents));
  benchmark::AddCustomContext("io_uring", probe_uring().available
                                              ? probe_uring().describe()
                                              : "unavailable: " + probe_uring().unavailable_reason);
  utsname u{};
  if (uname(&u) == 0) benchmark::AddCustomContext("kernel", std::string(u.release));
  benchmark::AddCustomContext("tsc_clock", tsc_in_use() ? "yes" : "no");
}

void cleanup() {
  remove_dir(process_dir());
  std::error_code ec;
  fs::remove(scratch_root(), ec);  // only if empty
}

}  // namespace
}  // namespace sluice

int main(int argc, char** argv) {
  (void)sluice::now_ns();  // calibrate the clock before anything is timed
  sluice::register_benchmarks();
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  sluice::add_context();
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  sluice::cleanup();
  return 0;
}
