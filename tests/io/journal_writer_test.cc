#include "io/journal_writer.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "core/wire_format.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "io/journal_reader.h"
#include "tests/test_util.h"

namespace sluice::journal {
namespace {

namespace fs = std::filesystem;

// A fresh directory per test, removed afterwards.
// The suite's scratch directories.
class TempDir : public testing::TempDir {
 public:
  TempDir() : testing::TempDir("journal") {}
};

// A TRANSACTION frame whose fields derive from its sequence, so a reader can check content.
std::vector<std::byte> frame_for(int64_t seq) {
  std::vector<std::byte> frame(wire::kMaxFrameSize);
  wire::Transaction t{.client_seq = static_cast<uint64_t>(seq),
                      .event_time_ns = seq * 1000,
                      .account_id = static_cast<uint64_t>(seq % 97 + 1),
                      .amount_minor = seq * 3 + 1,
                      .merchant_id = 7,
                      .currency = 978,
                      .channel = 1};
  frame.resize(wire::encode(t, frame));
  return frame;
}

RecordMeta meta_for(int64_t seq) {
  return RecordMeta{.sequence = seq, .ingest_ns = seq * 10, .client_id = 42};
}

// Appends [first, last], polling whenever the writer pushes back.
void append_range(JournalWriter& w, int64_t first, int64_t last) {
  for (int64_t s = first; s <= last; ++s) {
    const auto frame = frame_for(s);
    AppendResult r;
    while ((r = w.append(meta_for(s), frame)) == AppendResult::kFull) w.poll();
    ASSERT_EQ(r, AppendResult::kOk) << "seq " << s << ": " << w.status();
    if (s % 64 == 0) w.poll();
  }
}

// Reads the whole journal and checks it is exactly [1, last] with the expected contents.
void expect_journal_holds(const std::string& dir, int64_t last) {
  auto reader = JournalReader::open(dir);
  ASSERT_TRUE(reader.ok()) << reader.status();
  Record rec;
  int64_t expected = 1;
  JournalReader::ReadResult r;
  while ((r = (*reader)->next(&rec)) == JournalReader::ReadResult::kRecord) {
    ASSERT_EQ(rec.sequence, expected);
    ASSERT_EQ(rec.ingest_ns, expected * 10);
    ASSERT_EQ(rec.client_id, 42u);
    const auto want = frame_for(expected);
    ASSERT_EQ(rec.frame.size(), want.size());
    ASSERT_EQ(std::memcmp(rec.frame.data(), want.data(), want.size()), 0) << "seq " << expected;
    ++expected;
  }
  ASSERT_EQ(r, JournalReader::ReadResult::kEnd) << (*reader)->status();
  EXPECT_EQ(expected - 1, last);
}

// Lowers this process's file-size limit (RLIMIT_FSIZE) for its lifetime, with SIGXFSZ ignored
// so a write past it fails with EFBIG instead of killing the process.
class FileSizeLimit {
 public:
  explicit FileSizeLimit(rlim_t bytes) {
    struct sigaction ignore{};
    ignore.sa_handler = SIG_IGN;
    EXPECT_EQ(sigaction(SIGXFSZ, &ignore, &old_action_), 0);
    EXPECT_EQ(getrlimit(RLIMIT_FSIZE, &saved_), 0);
    rlimit low = saved_;
    low.rlim_cur = bytes;
    EXPECT_EQ(setrlimit(RLIMIT_FSIZE, &low), 0);
  }
  ~FileSizeLimit() {
    EXPECT_EQ(setrlimit(RLIMIT_FSIZE, &saved_), 0);
    EXPECT_EQ(sigaction(SIGXFSZ, &old_action_, nullptr), 0);
  }
  FileSizeLimit(const FileSizeLimit&) = delete;
  FileSizeLimit& operator=(const FileSizeLimit&) = delete;

 private:
  struct sigaction old_action_{};
  rlimit saved_{};
};

class JournalWriterTest : public ::testing::TestWithParam<bool> {
 protected:
  WriterOptions options(Durability d = Durability::kBatch) {
    return WriterOptions{.dir = dir_.path(),
                         .segment_size = 64 * 1024,
                         .durability = d,
                         .max_batch_bytes = 8 * 1024,
                         .use_io_uring = GetParam()};
  }
  TempDir dir_;
};

TEST_P(JournalWriterTest, RoundTripAcrossSegmentRolls) {
  auto w = JournalWriter::open(options());
  ASSERT_TRUE(w.ok()) << w.status();
  if (GetParam() && !(*w)->using_io_uring()) {
    GTEST_SKIP() << "io_uring unavailable here: " << (*w)->fallback_reason();
  }
  EXPECT_EQ((*w)->next_sequence(), 1);
  append_range(**w, 1, 5000);  // ~100-byte records: several 64 KiB segments
  ASSERT_TRUE((*w)->flush().ok()) << (*w)->status();
  EXPECT_EQ((*w)->written().get(), 5000);
  EXPECT_EQ((*w)->durable().get(), 5000);
  ASSERT_TRUE((*w)->close().ok());

  auto scan = scan_journal(dir_.path());
  ASSERT_TRUE(scan.ok()) << scan.status();
  EXPECT_GT(scan->segments.size(), 5u);
  EXPECT_EQ(scan->first_sequence, 1);
  EXPECT_EQ(scan->last_sequence, 5000);
  EXPECT_FALSE(scan->torn_tail.has_value());
  expect_journal_holds(dir_.path(), 5000);
}

TEST_P(JournalWriterTest, ReopenContinuesTheNumbering) {
  {
    auto w = JournalWriter::open(options());
    ASSERT_TRUE(w.ok()) << w.status();
    append_range(**w, 1, 700);
    ASSERT_TRUE((*w)->close().ok());
  }
  auto w = JournalWriter::open(options());
  ASSERT_TRUE(w.ok()) << w.status();
  EXPECT_EQ((*w)->next_sequence(), 701);
  EXPECT_EQ((*w)->durable().get(), 700);
  append_range(**w, 701, 1500);
  ASSERT_TRUE((*w)->close().ok());
  expect_journal_holds(dir_.path(), 1500);
}

TEST_P(JournalWriterTest, DurabilityNoneWritesButOnlyCloseMakesDurable) {
  auto w = JournalWriter::open(options(Durability::kNone));
  ASSERT_TRUE(w.ok()) << w.status();
  append_range(**w, 1, 300);
  ASSERT_TRUE((*w)->flush().ok());
  EXPECT_EQ((*w)->written().get(), 300);
  EXPECT_EQ((*w)->durable().get(), 0);
  ASSERT_TRUE((*w)->close().ok());
  EXPECT_EQ((*w)->durable().get(), 300);
}

// Polls until written() reaches `seq` (the io_uring write completes asynchronously).
bool poll_until_written(JournalWriter& w, int64_t seq) {
  for (int i = 0; i < 10'000 && w.written().get() < seq && !w.failed(); ++i) {
    if (w.poll() == 0) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return w.written().get() == seq;
}

TEST_P(JournalWriterTest, WithNoneAWriteWaitsUntilMinWriteBytesAreThere) {
  WriterOptions o = options(Durability::kNone);
  o.min_write_bytes = 4096;
  o.max_write_delay_ns = int64_t{3600} * 1'000'000'000;  // never, in this test
  auto w = JournalWriter::open(o);
  ASSERT_TRUE(w.ok()) << w.status();
  append_range(**w, 1, 10);  // ~1 KB
  for (int i = 0; i < 100; ++i) (*w)->poll();
  std::this_thread::sleep_for(std::chrono::milliseconds(30));  // as for a write to complete
  (*w)->poll();
  EXPECT_EQ((*w)->written().get(), 0);
  for (int64_t s = 11; s <= 60; ++s) {  // past 4096 bytes
    ASSERT_EQ((*w)->append(meta_for(s), frame_for(s)), AppendResult::kOk);
  }
  EXPECT_TRUE(poll_until_written(**w, 60)) << (*w)->written().get() << " " << (*w)->status();
  // flush() writes what is pending at once, however little.
  append_range(**w, 61, 65);
  ASSERT_TRUE((*w)->flush().ok());
  EXPECT_EQ((*w)->written().get(), 65);
  ASSERT_TRUE((*w)->close().ok());
  expect_journal_holds(dir_.path(), 65);
}

TEST_P(JournalWriterTest, WithNoneAWriteStartsOnceTheDelayHasPassed) {
  WriterOptions o = options(Durability::kNone);
  o.min_write_bytes = 4096;
  o.max_write_delay_ns = 300'000'000;
  auto w = JournalWriter::open(o);
  ASSERT_TRUE(w.ok()) << w.status();
  append_range(**w, 1, 5);
  (*w)->poll();  // sees the batch first now: not due yet
  // Time for a write, had one started, to complete and be reaped; not for the delay to pass.
  std::this_thread::sleep_for(std::chrono::milliseconds(30));
  (*w)->poll();
  EXPECT_EQ((*w)->written().get(), 0);
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  EXPECT_TRUE(poll_until_written(**w, 5)) << (*w)->written().get() << " " << (*w)->status();
  ASSERT_TRUE((*w)->close().ok());
  expect_journal_holds(dir_.path(), 5);
}

TEST_P(JournalWriterTest, MinWriteBytesIsForNoneOnlyAndAtMostMaxBatchBytes) {
  WriterOptions o = options(Durability::kBatch);
  o.min_write_bytes = 4096;
  o.max_write_delay_ns = int64_t{3600} * 1'000'000'000;
  {
    auto w = JournalWriter::open(o);
    ASSERT_TRUE(w.ok()) << w.status();
    append_range(**w, 1, 3);  // ~300 bytes: batch mode writes them at once anyway
    EXPECT_TRUE(poll_until_written(**w, 3)) << (*w)->written().get() << " " << (*w)->status();
    ASSERT_TRUE((*w)->close().ok());
  }
  o.min_write_bytes = o.max_batch_bytes + 1;
  auto bad = JournalWriter::open(o);
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(bad.status().message()), ::testing::HasSubstr("min_write_bytes 8193"));
}

TEST_P(JournalWriterTest, OpenTruncatesATornTailAndAppendsAfterIt) {
  {
    auto w = JournalWriter::open(options());
    ASSERT_TRUE(w.ok()) << w.status();
    append_range(**w, 1, 100);
    ASSERT_TRUE((*w)->close().ok());
  }
  // Cut the last record in half: keep its first 20 bytes, zero the rest.
  auto scan = scan_journal(dir_.path());
  ASSERT_TRUE(scan.ok());
  const SegmentInfo& last = scan->segments.back();
  const uint64_t last_record = last.data_end - record_size(frame_for(100).size());
  {
    const int fd = ::open(last.path.c_str(), O_WRONLY);
    ASSERT_GE(fd, 0);
    std::vector<char> zeros(last.data_end - last_record - 20, 0);
    ASSERT_EQ(pwrite(fd, zeros.data(), zeros.size(), static_cast<off_t>(last_record + 20)),
              static_cast<ssize_t>(zeros.size()));
    ::close(fd);
  }
  auto w = JournalWriter::open(options());
  ASSERT_TRUE(w.ok()) << w.status();
  EXPECT_NE((*w)->recovery_note().find("torn tail"), std::string::npos);
  EXPECT_NE((*w)->recovery_note().find(std::to_string(last_record)), std::string::npos)
      << (*w)->recovery_note();
  EXPECT_EQ((*w)->next_sequence(), 100);  // record 100 was lost with the tear
  append_range(**w, 100, 200);
  ASSERT_TRUE((*w)->close().ok());
  expect_journal_holds(dir_.path(), 200);
}

TEST_P(JournalWriterTest, RefusesToOpenACorruptJournal) {
  {
    auto w = JournalWriter::open(options());
    ASSERT_TRUE(w.ok());
    append_range(**w, 1, 100);
    ASSERT_TRUE((*w)->close().ok());
  }
  const std::string seg = (fs::path(dir_.path()) / segment_file_name(1)).string();
  const int fd = ::open(seg.c_str(), O_RDWR);
  ASSERT_GE(fd, 0);
  char byte;
  const off_t at = kSegmentHeaderSize + 40;  // inside the first record's frame
  ASSERT_EQ(pread(fd, &byte, 1, at), 1);
  byte ^= 0x10;
  ASSERT_EQ(pwrite(fd, &byte, 1, at), 1);
  ::close(fd);
  auto w = JournalWriter::open(options());
  ASSERT_FALSE(w.ok());
  EXPECT_NE(w.status().message().find(segment_file_name(1)), std::string::npos) << w.status();
}

TEST_P(JournalWriterTest, AnOutOfOrderSequenceFailsTheWriterLoudly) {
  auto w = JournalWriter::open(options());
  ASSERT_TRUE(w.ok());
  append_range(**w, 1, 10);
  const auto frame = frame_for(12);
  EXPECT_EQ((*w)->append(meta_for(12), frame), AppendResult::kFailed);
  EXPECT_TRUE((*w)->failed());
  EXPECT_EQ((*w)->status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ((*w)->append(meta_for(11), frame_for(11)), AppendResult::kFailed);
}

TEST_P(JournalWriterTest, AFullBatchPushesBackUntilPolled) {
  WriterOptions o = options();
  o.max_batch_bytes = kMaxRecordSize;  // the smallest allowed
  auto w = JournalWriter::open(o);
  ASSERT_TRUE(w.ok());
  int64_t s = 1;
  AppendResult r = AppendResult::kOk;
  // Without poll() the open batch fills and stays full: the caller must push back.
  for (; s < 1000 && (r = (*w)->append(meta_for(s), frame_for(s))) == AppendResult::kOk; ++s) {
  }
  EXPECT_EQ(r, AppendResult::kFull);
  EXPECT_LT(s, 1000);
  ASSERT_TRUE((*w)->flush().ok());
  EXPECT_EQ((*w)->append(meta_for(s), frame_for(s)), AppendResult::kOk);
  ASSERT_TRUE((*w)->close().ok());
  expect_journal_holds(dir_.path(), s);
}

// A real EFBIG: the file-size limit is lowered below a 1 MiB segment after it was preallocated,
// so the write itself fails. Appends 1..100 before the limit, then appends until the writer
// fails; returns the first sequence not appended and what flush() said. SIGXFSZ would kill the
// process; it is ignored meanwhile.
int64_t fail_with_efbig(JournalWriter& w, absl::Status* flushed) {
  append_range(w, 1, 100);
  EXPECT_TRUE(w.flush().ok());
  int64_t s = 101;
  FileSizeLimit limit(64 * 1024);
  AppendResult r = AppendResult::kOk;
  for (; s < 20000; ++s) {
    while ((r = w.append(meta_for(s), frame_for(s))) == AppendResult::kFull) w.poll();
    if (r != AppendResult::kOk) break;
    w.poll();
  }
  *flushed = w.flush();
  return s;
}

TEST_P(JournalWriterTest, AWriteErrorStopsTheWriterAndNamesFileAndOffset) {
  WriterOptions o = options();
  o.segment_size = 1 << 20;
  auto w = JournalWriter::open(o);
  ASSERT_TRUE(w.ok());
  absl::Status flushed;
  const int64_t s = fail_with_efbig(**w, &flushed);

  EXPECT_FALSE(flushed.ok());
  EXPECT_TRUE((*w)->failed());
  const std::string message((*w)->status().message());
  EXPECT_NE(message.find(segment_file_name(1)), std::string::npos) << message;
  EXPECT_NE(message.find("offset"), std::string::npos) << message;
  EXPECT_NE(message.find("too large"), std::string::npos) << message;  // strerror(EFBIG)
  EXPECT_EQ((*w)->append(meta_for(s), frame_for(s)), AppendResult::kFailed);
  // Nothing past the failure is claimed written or durable; everything claimed is readable.
  const int64_t durable = (*w)->durable().get();
  EXPECT_GE(durable, 100);
  EXPECT_LT(durable, s);
  auto scan = scan_journal(dir_.path());
  ASSERT_TRUE(scan.ok()) << scan.status();
  EXPECT_GE(scan->last_sequence, durable);
}

// With sync durability nothing of the failed batch was answered: the part of it the kernel
// took before the limit (the write stops at 64 KiB) is erased, so the journal ends exactly at
// the last durable record and a restart does not find unanswered events in it.
TEST_P(JournalWriterTest, WithSyncAFailedBatchIsErasedFromTheFile) {
  WriterOptions o = options(Durability::kSync);
  o.segment_size = 1 << 20;
  auto w = JournalWriter::open(o);
  ASSERT_TRUE(w.ok());
  absl::Status flushed;
  fail_with_efbig(**w, &flushed);

  EXPECT_FALSE(flushed.ok());
  const std::string message((*w)->status().message());
  EXPECT_NE(message.find("too large"), std::string::npos) << message;
  const int64_t durable = (*w)->durable().get();
  EXPECT_NE(message.find(absl::StrCat("sequences ", durable + 1, "..")), std::string::npos)
      << message;
  EXPECT_NE(message.find("was erased"), std::string::npos) << message;
  auto scan = scan_journal(dir_.path());
  ASSERT_TRUE(scan.ok()) << scan.status();
  EXPECT_EQ(scan->last_sequence, durable);
  EXPECT_FALSE(scan->torn_tail.has_value()) << scan->torn_tail->reason;
  // From the last durable record to the limit, where the kernel stopped the write: zeros.
  const std::string bytes = testing::read_file(scan->segments.back().path);
  ASSERT_GE(bytes.size(), 64u * 1024);
  const size_t end = static_cast<size_t>(scan->segments.back().data_end);
  EXPECT_EQ(bytes.find_first_not_of('\0', end), std::string::npos);
}

// A batch that begins at or past the limit writes nothing: there is nothing to erase, and the
// message says that none of it reached the file (the daemon's log then is not silent about it).
TEST_P(JournalWriterTest, WithSyncABatchThatWroteNothingSaysSo) {
  WriterOptions o = options(Durability::kSync);
  o.segment_size = 1 << 20;
  auto w = JournalWriter::open(o);
  ASSERT_TRUE(w.ok());
  append_range(**w, 1, 100);
  ASSERT_TRUE((*w)->flush().ok());
  auto before = scan_journal(dir_.path());
  ASSERT_TRUE(before.ok()) << before.status();
  absl::Status flushed;
  {
    // The next write starts right at the limit.
    FileSizeLimit limit(static_cast<rlim_t>(before->segments.back().data_end));
    ASSERT_EQ((*w)->append(meta_for(101), frame_for(101)), AppendResult::kOk);
    flushed = (*w)->flush();
  }
  EXPECT_FALSE(flushed.ok());
  const std::string message((*w)->status().message());
  EXPECT_NE(message.find("too large"), std::string::npos) << message;
  EXPECT_NE(message.find("none of the unanswered batch (sequences 101..101) had reached the file"),
            std::string::npos)
      << message;
  EXPECT_EQ(message.find("erase"), std::string::npos) << message;
  EXPECT_EQ((*w)->durable().get(), 100);
  auto scan = scan_journal(dir_.path());
  ASSERT_TRUE(scan.ok()) << scan.status();
  EXPECT_EQ(scan->last_sequence, 100);
  EXPECT_EQ(scan->segments.back().path, before->segments.back().path);
}

INSTANTIATE_TEST_SUITE_P(Paths, JournalWriterTest, ::testing::Values(true, false),
                         [](const auto& info) { return info.param ? "IoUring" : "Pwrite"; });

// The crash model: a child appends in sync mode and reports each durable sequence on a pipe; it
// is SIGKILLed at a random moment. The journal must then hold a gap-free prefix 1..n that
// contains every sequence reported durable, and reopen cleanly for appending.
TEST(JournalWriterCrash, SigkillLeavesAGapFreePrefixWithEverythingDurable) {
  const int rounds = 12 / static_cast<int>(testing::kStressScale) + 3;
  std::mt19937_64 rng(12345);
  for (int round = 0; round < rounds; ++round) {
    TempDir dir;
    int fds[2];
    ASSERT_EQ(pipe(fds), 0);
    const pid_t child = fork();
    ASSERT_GE(child, 0);
    if (child == 0) {
      ::close(fds[0]);
      auto w = JournalWriter::open(WriterOptions{.dir = dir.path(),
                                                 .segment_size = 256 * 1024,
                                                 .durability = Durability::kSync,
                                                 .max_batch_bytes = 16 * 1024});
      if (!w.ok()) _exit(3);
      int64_t reported = 0;
      for (int64_t s = 1;; ++s) {
        const auto frame = frame_for(s);
        while ((*w)->append(meta_for(s), frame) == AppendResult::kFull) (*w)->poll();
        (*w)->poll();
        const int64_t durable = (*w)->durable().get();
        if (durable > reported) {
          reported = durable;
          if (write(fds[1], &reported, sizeof(reported)) != sizeof(reported)) _exit(4);
        }
      }
    }
    ::close(fds[1]);
    // Wait for the first durable report (creating the first segment takes an fsync or two,
    // which a loaded machine can stretch), then let it run for a random 20..150 ms more and
    // kill it mid-flight.
    int64_t last_reported = 0, v;
    if (read(fds[0], &v, sizeof(v)) == sizeof(v)) last_reported = v;
    usleep(static_cast<useconds_t>(20'000 + rng() % 130'000));
    kill(child, SIGKILL);
    int status = 0;
    waitpid(child, &status, 0);
    while (read(fds[0], &v, sizeof(v)) == sizeof(v)) last_reported = v;
    ::close(fds[0]);
    ASSERT_TRUE(WIFSIGNALED(status)) << "child exited on its own with " << WEXITSTATUS(status);
    ASSERT_GT(last_reported, 0) << "round " << round << ": the child made nothing durable";

    auto scan = scan_journal(dir.path());
    ASSERT_TRUE(scan.ok()) << "round " << round << ": " << scan.status();
    EXPECT_GE(scan->last_sequence, last_reported) << "round " << round;
    EXPECT_TRUE(scan->record_count == scan->last_sequence) << "round " << round;
    // Recovery truncates whatever tail the kill left, and appending goes on from there.
    auto w = JournalWriter::open(WriterOptions{.dir = dir.path(), .segment_size = 256 * 1024});
    ASSERT_TRUE(w.ok()) << w.status();
    const int64_t next = (*w)->next_sequence();
    EXPECT_EQ(next, scan->last_sequence + 1);
    append_range(**w, next, next + 10);
    ASSERT_TRUE((*w)->close().ok());
    auto after = scan_journal(dir.path());
    ASSERT_TRUE(after.ok()) << after.status();
    EXPECT_EQ(after->last_sequence, next + 10);
    EXPECT_FALSE(after->torn_tail.has_value());
  }
}

}  // namespace
}  // namespace sluice::journal

namespace sluice::journal {
namespace {

// A journal written with one segment size and reopened with another: the open segment is
// filled to its own header's size, and the segments made after it take the new size.
TEST(JournalWriterReopen, ATailSegmentKeepsItsOwnSizeAndNewSegmentsTakeTheConfiguredOne) {
  TempDir dir;
  {
    auto w = JournalWriter::open(WriterOptions{.dir = dir.path(), .segment_size = 64 * 1024});
    ASSERT_TRUE(w.ok());
    append_range(**w, 1, 100);
    ASSERT_TRUE((*w)->close().ok());
  }
  auto w = JournalWriter::open(WriterOptions{.dir = dir.path(), .segment_size = 256 * 1024});
  ASSERT_TRUE(w.ok()) << w.status();
  append_range(**w, 101, 5000);
  ASSERT_TRUE((*w)->close().ok());
  auto scan = scan_journal(dir.path());
  ASSERT_TRUE(scan.ok()) << scan.status();
  ASSERT_GE(scan->segments.size(), 3u);
  EXPECT_EQ(scan->segments[0].header.segment_size, 64u * 1024);
  EXPECT_LE(scan->segments[0].data_end, 64u * 1024);
  EXPECT_GT(scan->segments[0].data_end, 60u * 1024);  // it was filled, not abandoned early
  for (size_t i = 1; i < scan->segments.size(); ++i) {
    EXPECT_EQ(scan->segments[i].header.segment_size, 256u * 1024) << "segment " << i;
  }
  expect_journal_holds(dir.path(), 5000);
}

}  // namespace
}  // namespace sluice::journal

#include <linux/fiemap.h>
#include <linux/fs.h>
#include <sys/ioctl.h>

namespace sluice::journal {
namespace {

// ---- Segment preparation ---------------------------------------------------------------------

// Whether any extent of the file is unwritten (allocated by fallocate, never written), per
// FIEMAP; nullopt if the filesystem cannot say.
std::optional<bool> has_unwritten_extents(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return std::nullopt;
  constexpr size_t kExtents = 256;
  std::vector<std::byte> buffer(sizeof(fiemap) + kExtents * sizeof(fiemap_extent));
  auto* map = reinterpret_cast<fiemap*>(buffer.data());
  map->fm_start = 0;
  map->fm_length = FIEMAP_MAX_OFFSET;
  map->fm_flags = FIEMAP_FLAG_SYNC;
  map->fm_extent_count = kExtents;
  const int rc = ::ioctl(fd, FS_IOC_FIEMAP, map);
  ::close(fd);
  if (rc != 0) return std::nullopt;
  for (uint32_t i = 0; i < map->fm_mapped_extents; ++i) {
    if ((map->fm_extents[i].fe_flags & FIEMAP_EXTENT_UNWRITTEN) != 0) return true;
  }
  return false;
}

// Appends from `from` until the writer's segment reaches `bytes`; returns the next sequence.
int64_t append_until_offset(JournalWriter& w, int64_t from, uint64_t bytes) {
  int64_t s = from;
  while (std::filesystem::path(w.segment_path()).filename() == segment_file_name(1) &&
         static_cast<uint64_t>((s - 1)) * record_size(frame_for(1).size()) + kSegmentHeaderSize <
             bytes) {
    append_range(w, s, s);
    ++s;
  }
  return s;
}

// Polls until the writer has a prepared segment (or 20 s pass).
bool wait_for_prepared(JournalWriter& w) {
  for (int i = 0; i < 20'000 && !w.prepared_segment_ready(); ++i) {
    w.poll();
    usleep(1000);
  }
  return w.prepared_segment_ready();
}

WriterOptions preparing_options(const std::string& dir, Durability d = Durability::kSync) {
  return WriterOptions{.dir = dir,
                       .segment_size = 256 * 1024,
                       .durability = d,
                       .max_batch_bytes = 16 * 1024,
                       .prepare_in_idle_time = false};  // ctest -j2 may keep both CPUs busy
}

TEST(JournalWriterPrepare, ARollUsesTheZeroFilledSegmentPreparedInTheBackground) {
  TempDir dir;
  auto w = JournalWriter::open(preparing_options(dir.path()));
  ASSERT_TRUE(w.ok()) << w.status();
  const std::string prepared = dir.path() + "/" + std::string(kPreparedSegmentName);
  int64_t next = append_until_offset(**w, 1, 100 * 1024);
  (*w)->poll();
  EXPECT_FALSE(std::filesystem::exists(prepared)) << "prepared before the segment was half full";
  next = append_until_offset(**w, next, 140 * 1024);
  ASSERT_TRUE(wait_for_prepared(**w)) << (*w)->prepare_error();
  EXPECT_EQ(std::filesystem::file_size(prepared), 256u * 1024);
  const std::string first_segment = (*w)->segment_path();

  append_range(**w, next, next + 3000);  // ~100-byte records: past the roll
  ASSERT_TRUE((*w)->flush().ok()) << (*w)->status();
  EXPECT_EQ((*w)->prepared_rolls(), 1);
  EXPECT_EQ((*w)->prepare_failures(), 0);
  EXPECT_TRUE((*w)->prepare_error().empty()) << (*w)->prepare_error();
  const std::string second_segment = (*w)->segment_path();
  ASSERT_NE(second_segment, first_segment);
  ASSERT_TRUE((*w)->close().ok());
  EXPECT_FALSE(std::filesystem::exists(prepared)) << "close leaves the next preparation behind";

  expect_journal_holds(dir.path(), next + 3000);
  // The point of it: the prepared segment's blocks are all written (its unused part too),
  // where a fallocate'd segment's unused part is unwritten extents. Checked where the
  // filesystem has unwritten extents at all (a fallocate'd control file says).
  const std::string control = dir.path() + "/control";
  const int fd = ::open(control.c_str(), O_RDWR | O_CREAT | O_TRUNC, 0644);
  ASSERT_GE(fd, 0);
  const bool allocated = ::fallocate(fd, 0, 0, 256 * 1024) == 0;
  ::close(fd);
  const std::optional<bool> control_unwritten = has_unwritten_extents(control);
  if (!allocated || !control_unwritten.has_value() || !*control_unwritten) {
    GTEST_SKIP() << "this filesystem shows no unwritten extents for a fallocate'd file";
  }
  EXPECT_EQ(has_unwritten_extents(second_segment), std::optional<bool>(false));
}

TEST(JournalWriterPrepare, NothingIsPreparedWithDurabilityNone) {
  TempDir dir;
  auto w = JournalWriter::open(preparing_options(dir.path(), Durability::kNone));
  ASSERT_TRUE(w.ok()) << w.status();
  append_range(**w, 1, 6000);
  ASSERT_TRUE((*w)->flush().ok());
  EXPECT_EQ((*w)->prepared_rolls(), 0);
  EXPECT_FALSE(std::filesystem::exists(dir.path() + "/" + std::string(kPreparedSegmentName)));
  ASSERT_TRUE((*w)->close().ok());
  expect_journal_holds(dir.path(), 6000);
}

TEST(JournalWriterPrepare, ALeftoverPreparedFileIsRemovedAtOpenAndNeverRead) {
  TempDir dir;
  {
    auto w = JournalWriter::open(preparing_options(dir.path()));
    ASSERT_TRUE(w.ok()) << w.status();
    append_range(**w, 1, 300);
    ASSERT_TRUE((*w)->close().ok());
  }
  // What a crash mid-preparation leaves: a partial file of garbage.
  const std::string prepared = dir.path() + "/" + std::string(kPreparedSegmentName);
  {
    const int fd = ::open(prepared.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    ASSERT_GE(fd, 0);
    const std::vector<std::byte> junk(5000, std::byte{0x5A});
    ASSERT_EQ(::write(fd, junk.data(), junk.size()), static_cast<ssize_t>(junk.size()));
    ::close(fd);
  }
  auto scan = scan_journal(dir.path());
  ASSERT_TRUE(scan.ok()) << scan.status();
  EXPECT_EQ(scan->last_sequence, 300);
  auto w = JournalWriter::open(preparing_options(dir.path()));
  ASSERT_TRUE(w.ok()) << w.status();
  EXPECT_FALSE(std::filesystem::exists(prepared));
  append_range(**w, 301, 6000);  // rolls, with or without a preparation ready in time
  ASSERT_TRUE((*w)->close().ok());
  expect_journal_holds(dir.path(), 6000);
}

TEST(JournalWriterPrepare, APreparedFileThatChangedIsNotUsedAndTheRollFallsBack) {
  TempDir dir;
  auto w = JournalWriter::open(preparing_options(dir.path()));
  ASSERT_TRUE(w.ok()) << w.status();
  int64_t next = append_until_offset(**w, 1, 140 * 1024);
  ASSERT_TRUE(wait_for_prepared(**w)) << (*w)->prepare_error();
  const std::string prepared = dir.path() + "/" + std::string(kPreparedSegmentName);
  ASSERT_EQ(::truncate(prepared.c_str(), 100), 0);

  append_range(**w, next, next + 3000);
  ASSERT_TRUE((*w)->flush().ok()) << (*w)->status();
  EXPECT_EQ((*w)->prepared_rolls(), 0);
  EXPECT_EQ((*w)->prepare_failures(), 1);
  EXPECT_NE((*w)->prepare_error().find("not the segment size"), std::string::npos)
      << (*w)->prepare_error();
  ASSERT_TRUE((*w)->close().ok());
  expect_journal_holds(dir.path(), next + 3000);
}

// A preparation that fails (here EFBIG: the file-size limit is below the segment size) is
// reported, not retried before the next roll, and costs the journal nothing.
TEST(JournalWriterPrepare, AFailedPreparationIsReportedAndTheJournalCarriesOn) {
  TempDir dir;
  auto w = JournalWriter::open(preparing_options(dir.path()));
  ASSERT_TRUE(w.ok()) << w.status();
  int64_t next = append_until_offset(**w, 1, 120 * 1024);

  {
    FileSizeLimit limit(200 * 1024);  // above the journal's tail, below the prepared file's end
    next = append_until_offset(**w, next, 140 * 1024);  // past half: the preparation starts
    for (int i = 0; i < 20'000 && (*w)->prepare_error().empty(); ++i) {
      (*w)->poll();
      usleep(1000);
    }
  }

  EXPECT_NE((*w)->prepare_error().find(std::string(kPreparedSegmentName)), std::string::npos)
      << (*w)->prepare_error();
  EXPECT_FALSE((*w)->failed()) << (*w)->status();
  EXPECT_EQ((*w)->prepare_failures(), 1);
  EXPECT_FALSE(std::filesystem::exists(dir.path() + "/" + std::string(kPreparedSegmentName)));
  for (int i = 0; i < 50; ++i) (*w)->poll();
  EXPECT_FALSE((*w)->prepared_segment_ready()) << "retried before the next roll";
  append_range(**w, next, next + 3000);  // rolls onto a fallocate'd segment
  ASSERT_TRUE((*w)->flush().ok()) << (*w)->status();
  EXPECT_EQ((*w)->prepared_rolls(), 0);
  ASSERT_TRUE((*w)->close().ok());
  expect_journal_holds(dir.path(), next + 3000);
}

}  // namespace
}  // namespace sluice::journal
