// Runs the built `sluice` binary (SLUICE_TOOL_PATH) on hand-made journals and checks what
// `sluice journal info|dump|verify` print and how they exit.
#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "core/wire_format.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "io/journal_format.h"
#include "tests/tools/tool_run.h"

namespace sluice::journal {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::StartsWith;

constexpr uint64_t kSegmentSize = 4096;
constexpr int64_t kIngestBase = 1'700'000'000'000'000'000;  // 2023-11-14T22:13:20Z

using testing::read_file;
using testing::ToolRun;

// ---- A journal of TRANSACTION / ORDER / WATERMARK records, built by hand ---------------------

std::vector<std::byte> frame_for(int64_t seq) {
  std::vector<std::byte> frame(wire::kMaxFrameSize);
  size_t n = 0;
  switch (seq % 3) {
    case 1:
      n = wire::encode(wire::Transaction{static_cast<uint64_t>(seq), seq * 10, 100, seq * 7, 55,
                                         978, 1},
                       frame);
      break;
    case 2:
      n = wire::encode(wire::Order{static_cast<uint64_t>(seq), seq * 10, 200, 9000 + static_cast<uint64_t>(seq), 4,
                                   static_cast<uint8_t>(seq % 2 == 0 ? 1 : 2), 10, 250},
                       frame);
      break;
    default:
      n = wire::encode(wire::Watermark{seq * 10}, frame);
      break;
  }
  frame.resize(n);
  return frame;
}

struct Layout {
  std::vector<std::string> paths;
  std::vector<uint64_t> offsets;  // offsets[seq - 1]: the record's offset in its segment
  std::vector<size_t> segment_of;
};

// Writes records 1..count into segments of kSegmentSize (zero remainder as a hole).
Layout write_journal(const std::string& dir, int64_t count,
                     const std::vector<std::byte>& extra_frame = {}) {
  std::filesystem::create_directories(dir);
  Layout layout;
  std::vector<std::byte> image;
  uint64_t used = 0;
  auto flush = [&] {
    if (image.empty()) return;
    const int fd = ::open(layout.paths.back().c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    EXPECT_EQ(::write(fd, image.data(), used), static_cast<ssize_t>(used));
    EXPECT_EQ(::ftruncate(fd, kSegmentSize), 0);
    ::close(fd);
  };
  for (int64_t seq = 1; seq <= count; ++seq) {
    std::vector<std::byte> frame = seq == count && !extra_frame.empty() ? extra_frame : frame_for(seq);
    const size_t size = record_size(frame.size());
    if (image.empty() || used + size > kSegmentSize) {
      flush();
      image.assign(kSegmentSize, std::byte{0});
      encode_segment_header(SegmentHeader{static_cast<uint64_t>(seq), kIngestBase, kSegmentSize},
                            image);
      used = kSegmentHeaderSize;
      layout.paths.push_back(absl::StrCat(dir, "/", segment_file_name(static_cast<uint64_t>(seq))));
    }
    encode_record(RecordMeta{seq, kIngestBase + seq * 1000, static_cast<uint64_t>(seq % 3)}, frame,
                  std::span<std::byte>(image).subspan(used));
    layout.offsets.push_back(used);
    layout.segment_of.push_back(layout.paths.size() - 1);
    used += size;
  }
  flush();
  return layout;
}

void flip_byte(const std::string& path, uint64_t offset) {
  const int fd = ::open(path.c_str(), O_RDWR);
  unsigned char b = 0;
  EXPECT_EQ(::pread(fd, &b, 1, static_cast<off_t>(offset)), 1);
  b ^= 0x5A;
  EXPECT_EQ(::pwrite(fd, &b, 1, static_cast<off_t>(offset)), 1);
  ::close(fd);
}

// ---- Fixture -------------------------------------------------------------------------------

class SluiceJournalCli : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string pattern = (std::filesystem::temp_directory_path() / "sluice_cli_XXXXXX");
    ASSERT_NE(::mkdtemp(pattern.data()), nullptr);
    root_ = pattern;
    dir_ = root_ + "/journal";
  }
  void TearDown() override { std::filesystem::remove_all(root_); }

  // Runs `sluice args...`, stdout and stderr into files.
  ToolRun run(const std::vector<std::string>& args) {
    return testing::run_tool(SLUICE_TOOL_PATH, args, root_);
  }

  std::string root_;
  std::string dir_;
};

std::vector<std::string> lines(const std::string& text) {
  return absl::StrSplit(text, '\n', absl::SkipEmpty());
}

// ---- info --------------------------------------------------------------------------------------

TEST_F(SluiceJournalCli, InfoPrintsSegmentsRangeCountBytesAndTimeSpan) {
  const Layout layout = write_journal(dir_, 200);
  ASSERT_GT(layout.paths.size(), 2u);
  const ToolRun r = run({"journal", "info", dir_});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.err, "");
  EXPECT_THAT(r.out, HasSubstr(absl::StrCat("segments: ", layout.paths.size(), "\n")));
  EXPECT_THAT(r.out, HasSubstr("  00000000000000000001.seg  seq 1.."));
  EXPECT_THAT(r.out, HasSubstr("first sequence: 1\n"));
  EXPECT_THAT(r.out, HasSubstr("last sequence: 200\n"));
  EXPECT_THAT(r.out, HasSubstr("records: 200\n"));
  EXPECT_THAT(r.out, HasSubstr("ingest time: 2023-11-14T22:13:20.000001000Z .. "
                               "2023-11-14T22:13:20.000200000Z (0.000199000s)\n"));
  EXPECT_THAT(r.out, Not(HasSubstr("torn")));
}

TEST_F(SluiceJournalCli, InfoReportsATornTail) {
  const Layout layout = write_journal(dir_, 50);
  flip_byte(layout.paths.back(), layout.offsets.back() + 40);
  const ToolRun r = run({"journal", "info", dir_});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("records: 49\n"));
  EXPECT_THAT(r.out, HasSubstr(absl::StrCat("torn tail: ", layout.paths.back(), " offset ",
                                            layout.offsets.back(), ": CRC mismatch")));
}

TEST_F(SluiceJournalCli, InfoOnAnEmptyJournalSaysSo) {
  std::filesystem::create_directories(dir_);
  const ToolRun r = run({"journal", "info", dir_});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("segments: 0\n"));
  EXPECT_THAT(r.out, HasSubstr("records: 0\n"));
}

// ---- dump --------------------------------------------------------------------------------------

TEST_F(SluiceJournalCli, DumpPrintsOneRecordALineWithDecodedFields) {
  std::vector<std::byte> unknown(9, std::byte{1});
  wire::encode_header(unknown.data(), wire::FrameHeader{9, 0x42, 3});
  write_journal(dir_, 4, unknown);
  const ToolRun r = run({"journal", "dump", dir_});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.err, "");
  const std::vector<std::string> got = lines(r.out);
  ASSERT_EQ(got.size(), 4u) << r.out;
  EXPECT_EQ(got[0],
            "seq=1 ingest_ns=1700000000000001000 client_id=1 type=TRANSACTION v=1 client_seq=1 "
            "event_time_ns=10 account_id=100 amount_minor=7 merchant_id=55 currency=978 "
            "channel=1");
  EXPECT_EQ(got[1],
            "seq=2 ingest_ns=1700000000000002000 client_id=2 type=ORDER v=1 client_seq=2 "
            "event_time_ns=20 account_id=200 order_id=9002 instrument_id=4 side=B quantity=10 "
            "price=250");
  EXPECT_EQ(got[2],
            "seq=3 ingest_ns=1700000000000003000 client_id=0 type=WATERMARK v=1 "
            "event_time_ns=30");
  EXPECT_EQ(got[3], "seq=4 ingest_ns=1700000000000004000 client_id=1 type=0x42 v=3 len=9");
}

TEST_F(SluiceJournalCli, DumpPrintsSellSideAsS) {
  write_journal(dir_, 5);
  const ToolRun r = run({"journal", "dump", dir_, "--from", "5"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr(" type=ORDER v=1 "));
  EXPECT_THAT(r.out, HasSubstr(" side=S "));
}

TEST_F(SluiceJournalCli, DumpFromToPrintsExactlyThatRange) {
  write_journal(dir_, 300);
  const ToolRun r = run({"journal", "dump", dir_, "--from", "95", "--to", "205"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  const std::vector<std::string> got = lines(r.out);
  ASSERT_EQ(got.size(), 111u);
  for (size_t i = 0; i < got.size(); ++i) {
    ASSERT_THAT(got[i], StartsWith(absl::StrCat("seq=", 95 + i, " "))) << i;
  }
  // Bounds outside the journal clamp; an inverted range is bad usage.
  EXPECT_EQ(lines(run({"journal", "dump", dir_, "--from", "0", "--to", "3"}).out).size(), 3u);
  EXPECT_EQ(lines(run({"journal", "dump", dir_, "--from", "299"}).out).size(), 2u);
  const ToolRun past = run({"journal", "dump", dir_, "--from", "301"});
  EXPECT_EQ(past.exit_code, 0);
  EXPECT_EQ(past.out, "");
  const ToolRun inverted = run({"journal", "dump", dir_, "--from", "9", "--to", "3"});
  EXPECT_EQ(inverted.exit_code, 2);
  EXPECT_EQ(inverted.err, "sluice: journal dump: --from 9 is after --to 3\n");
}

TEST_F(SluiceJournalCli, DumpIntoAPipeClosedEarlyExitsQuietly) {
  write_journal(dir_, 20000);  // ~2.5 MB of text: far more than a pipe holds
  int fds[2];
  ASSERT_EQ(::pipe(fds), 0);
  const std::string err_path = root_ + "/stderr";
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, fds[1], 1);
  posix_spawn_file_actions_addclose(&actions, fds[0]);
  posix_spawn_file_actions_addclose(&actions, fds[1]);
  posix_spawn_file_actions_addopen(&actions, 2, err_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  std::vector<std::string> argv_strings = {SLUICE_TOOL_PATH, "journal", "dump", dir_};
  std::vector<char*> argv;
  for (std::string& s : argv_strings) argv.push_back(s.data());
  argv.push_back(nullptr);
  pid_t pid = 0;
  ASSERT_EQ(posix_spawn(&pid, SLUICE_TOOL_PATH, &actions, nullptr, argv.data(), environ), 0);
  posix_spawn_file_actions_destroy(&actions);
  ::close(fds[1]);
  char buffer[100];
  ASSERT_GT(::read(fds[0], buffer, sizeof(buffer)), 0);  // like `head -c 100`
  ::close(fds[0]);
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status)) << "killed by signal " << WTERMSIG(status);
  EXPECT_EQ(WEXITSTATUS(status), 0);
  EXPECT_EQ(read_file(err_path), "");
  EXPECT_EQ(std::string(buffer, 6), "seq=1 ");
}

TEST_F(SluiceJournalCli, DumpStopsAtCorruptionWithExitStatus1) {
  const Layout layout = write_journal(dir_, 100);
  flip_byte(layout.paths[layout.segment_of[39]], layout.offsets[39] + 36);  // record 40
  const ToolRun r = run({"journal", "dump", dir_});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(lines(r.out).size(), 39u);
  EXPECT_EQ(lines(r.err).size(), 1u);
  EXPECT_THAT(r.err, StartsWith(absl::StrCat("sluice: journal corrupt: ",
                                             layout.paths[layout.segment_of[39]], " offset ",
                                             layout.offsets[39], ": CRC mismatch")));
}

TEST_F(SluiceJournalCli, DumpNotesATornTailOnStderr) {
  const Layout layout = write_journal(dir_, 30);
  flip_byte(layout.paths.back(), layout.offsets.back() + 36);
  const ToolRun r = run({"journal", "dump", dir_});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(lines(r.out).size(), 29u);
  EXPECT_THAT(r.err, StartsWith("sluice: note: torn tail"));
}

// ---- verify ------------------------------------------------------------------------------------

TEST_F(SluiceJournalCli, VerifyIntactJournalExits0) {
  write_journal(dir_, 500);
  const ToolRun r = run({"journal", "verify", dir_});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.err, "");
  EXPECT_THAT(r.out, StartsWith(absl::StrCat("ok: ", dir_, ": 500 records, sequences 1..500")));
}

TEST_F(SluiceJournalCli, VerifyTornTailExits0WithANote) {
  const Layout layout = write_journal(dir_, 500);
  flip_byte(layout.paths.back(), layout.offsets.back() + 20);
  const ToolRun r = run({"journal", "verify", dir_});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.err, "");
  EXPECT_THAT(r.out, HasSubstr("499 records"));
  EXPECT_THAT(r.out, HasSubstr(absl::StrCat("note: torn tail (the end of the log, not corruption) at ",
                                            layout.paths.back(), " offset ",
                                            layout.offsets.back(), ": CRC mismatch")));
}

TEST_F(SluiceJournalCli, VerifyCorruptJournalExits1NamingFileAndOffset) {
  const Layout layout = write_journal(dir_, 500);
  const size_t seq = 77;
  const std::string& path = layout.paths[layout.segment_of[seq - 1]];
  const uint64_t offset = layout.offsets[seq - 1];
  flip_byte(path, offset + 44);
  const ToolRun r = run({"journal", "verify", dir_});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.out, "");
  EXPECT_EQ(lines(r.err).size(), 1u) << r.err;
  EXPECT_THAT(r.err, StartsWith(absl::StrCat("sluice: journal corrupt: ", path, " offset ", offset,
                                             ": CRC mismatch")));
}

TEST_F(SluiceJournalCli, VerifyBadSegmentHeaderExits1NamingTheFile) {
  const Layout layout = write_journal(dir_, 100);
  flip_byte(layout.paths[0], 1);
  const ToolRun r = run({"journal", "verify", dir_});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.err, absl::StrCat("sluice: journal corrupt: ", layout.paths[0],
                                " offset 0: segment header: bad magic number\n"));
}

// ---- usage -------------------------------------------------------------------------------------

TEST_F(SluiceJournalCli, MissingDirectoryIsBadUsage) {
  for (const char* command : {"info", "dump", "verify"}) {
    const ToolRun r = run({"journal", command, dir_});
    EXPECT_EQ(r.exit_code, 2) << command;
    EXPECT_EQ(r.err, absl::StrCat("sluice: journal ", command, ": ", dir_, ": no such directory\n"));
  }
}

TEST_F(SluiceJournalCli, BadCommandLinesExit2WithOneLineOnStderr) {
  for (const std::vector<std::string>& args :
       {std::vector<std::string>{}, {"journal"}, {"journal", "info"}, {"journal", "frobnicate"},
        {"journal", "dump", "/tmp", "--from", "abc"}, {"journal", "verify", "/tmp", "--bogus"},
        {"nonsense"}}) {
    const ToolRun r = run(args);
    const std::string shown = absl::StrJoin(args, " ");
    EXPECT_EQ(r.exit_code, 2) << shown;
    EXPECT_THAT(r.err, StartsWith("sluice: ")) << shown;
    EXPECT_EQ(lines(r.err).size(), 1u) << shown << ": " << r.err;
  }
}

TEST_F(SluiceJournalCli, HelpExits0) {
  for (const std::vector<std::string>& args :
       {std::vector<std::string>{"--help"}, {"journal", "--help"}, {"journal", "dump", "--help"}}) {
    const ToolRun r = run(args);
    EXPECT_EQ(r.exit_code, 0);
    EXPECT_THAT(r.out, HasSubstr("Usage")) << absl::StrJoin(args, " ");
  }
}

}  // namespace
}  // namespace sluice::journal
