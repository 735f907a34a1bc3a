#include "io/journal_writer.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cstring>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include "core/wire_format.h"
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

// A real EFBIG: the file-size limit is lowered below the segment after it was preallocated, so
// the write itself fails. SIGXFSZ would kill the process; it is ignored for the test.
TEST_P(JournalWriterTest, AWriteErrorStopsTheWriterAndNamesFileAndOffset) {
  WriterOptions o = options();
  o.segment_size = 1 << 20;
  auto w = JournalWriter::open(o);
  ASSERT_TRUE(w.ok());
  append_range(**w, 1, 100);
  ASSERT_TRUE((*w)->flush().ok());

  struct sigaction ignore{}, old{};
  ignore.sa_handler = SIG_IGN;
  ASSERT_EQ(sigaction(SIGXFSZ, &ignore, &old), 0);
  rlimit saved{};
  ASSERT_EQ(getrlimit(RLIMIT_FSIZE, &saved), 0);
  rlimit low = saved;
  low.rlim_cur = 64 * 1024;
  ASSERT_EQ(setrlimit(RLIMIT_FSIZE, &low), 0);

  int64_t s = 101;
  AppendResult r = AppendResult::kOk;
  for (; s < 20000; ++s) {
    while ((r = (*w)->append(meta_for(s), frame_for(s))) == AppendResult::kFull) (*w)->poll();
    if (r != AppendResult::kOk) break;
    (*w)->poll();
  }
  const absl::Status flushed = (*w)->flush();
  ASSERT_EQ(setrlimit(RLIMIT_FSIZE, &saved), 0);
  ASSERT_EQ(sigaction(SIGXFSZ, &old, nullptr), 0);

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
