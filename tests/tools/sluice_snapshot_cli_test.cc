// Runs the built `sluice` binary (SLUICE_TOOL_PATH) on a data directory with snapshots and
// checks what `sluice snapshot info|verify` and `sluice replay` print and how they exit.
#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/tools/tool_run.h"
#include "io/snapshot_format.h"
#include "io/snapshot_writer.h"
#include "pipeline/keyed_processors.h"
#include "pipeline/shard_stage.h"
#include "tests/pipeline/test_journal.h"


namespace sluice {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using ::testing::Not;

using testing::ToolRun;

class SluiceSnapshotCli : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string pattern = (fs::temp_directory_path() / "sluice_snap_cli_XXXXXX");
    ASSERT_NE(::mkdtemp(pattern.data()), nullptr);
    root_ = pattern;
    data_ = root_ + "/data";
    snapshots_ = data_ + "/snapshots";
    events_ = sluice::testing::random_events(3'000, 31);
    sluice::testing::append_journal(data_ + "/journal", events_);
    auto writer = snapshot::SnapshotWriter::start({.dir = snapshots_});
    ASSERT_TRUE(writer.ok());
    sluice::testing::Collected ignore;
    std::vector<std::unique_ptr<Shard>> shards;
    for (uint32_t i = 0; i < 2; ++i) {
      shards.push_back(std::make_unique<Shard>(ProcessorConfig{}, i, 2, ignore));
    }
    for (size_t k = 0; k < 2'000; ++k) {
      for (auto& s : shards)
        s->on_event(static_cast<int64_t>(k + 1), events_[k].client_id, 0, events_[k].frame);
      if (k + 1 == 1'000 || k + 1 == 2'000) {
        for (auto& s : shards) ASSERT_TRUE(write_snapshot(*s, **writer).ok());
      }
    }
  }
  void TearDown() override { fs::remove_all(root_); }

  std::string file(uint32_t k, int64_t s) const {
    return snapshots_ + "/" + snapshot::file_name({k, 2, s});
  }

  ToolRun run(const std::vector<std::string>& args) {
    return testing::run_tool(SLUICE_TOOL_PATH, args, root_);
  }

  void flip(const std::string& path, off_t offset) {
    const int fd = ::open(path.c_str(), O_RDWR);
    unsigned char b = 0;
    ASSERT_EQ(::pread(fd, &b, 1, offset), 1);
    b ^= 0x11;
    ASSERT_EQ(::pwrite(fd, &b, 1, offset), 1);
    ::close(fd);
  }

  std::string root_, data_, snapshots_;
  std::vector<sluice::testing::JournalEvent> events_;
};

TEST_F(SluiceSnapshotCli, InfoPrintsALineAFileAndTheSetRecoveryWouldUse) {
  for (const std::string& dir : {data_, snapshots_}) {
    const ToolRun r = run({"snapshot", "info", dir});
    EXPECT_EQ(r.exit_code, 0) << r.err;
    EXPECT_EQ(r.err, "");
    EXPECT_THAT(r.out, HasSubstr("files: 4\n"));
    EXPECT_THAT(r.out,
                HasSubstr("  shard-0-of-2-00000000000000002000.snap  shard 0/2  seq 2000  maxT "));
    EXPECT_THAT(r.out,
                HasSubstr("  shard-1-of-2-00000000000000001000.snap  shard 1/2  seq 1000  maxT "));
    EXPECT_THAT(r.out, HasSubstr(" entries "));
    EXPECT_THAT(r.out, HasSubstr(" created 20"));
    EXPECT_THAT(r.out, Not(HasSubstr("BAD")));
    EXPECT_THAT(
        r.out,
        HasSubstr("recovery would start from: sequence 2000 (2 shards, present in the journal)\n"));
  }
}

TEST_F(SluiceSnapshotCli, VerifyPassesIntactFilesAndNamesEachBadOne) {
  ToolRun r = run({"snapshot", "verify", data_});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("ok: " + snapshots_ + ": 4 snapshot files"));

  flip(file(1, 2'000), 5'000);
  fs::resize_file(file(0, 1'000), 1'000);
  r = run({"snapshot", "verify", data_});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err,
              HasSubstr("sluice: snapshot verify: " + file(1, 2'000) + ": body CRC mismatch\n"));
  EXPECT_THAT(r.err, HasSubstr("sluice: snapshot verify: " + file(0, 1'000) + ": truncated: "));
  EXPECT_EQ(r.out, "");

  // info shows them as bad, and no set is complete and valid any more.
  r = run({"snapshot", "info", data_});
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_THAT(r.out, HasSubstr("BAD: body CRC mismatch"));
  EXPECT_THAT(r.out, HasSubstr("recovery would start from: none"));
}

TEST_F(SluiceSnapshotCli, AMissingDirectoryOrNoSubcommandIsBadUsage) {
  EXPECT_EQ(run({"snapshot", "info", root_ + "/nope"}).exit_code, 2);
  EXPECT_EQ(run({"snapshot", "verify", root_ + "/nope"}).exit_code, 2);
  EXPECT_EQ(run({"snapshot"}).exit_code, 2);
  EXPECT_EQ(run({"snapshot", "info"}).exit_code, 2);
}

TEST_F(SluiceSnapshotCli, ReplayStartsFromTheSnapshotSetAndGivesTheSameDigest) {
  const ToolRun with = run({"replay", data_, "--from", "2500"});
  const ToolRun without = run({"replay", data_, "--from", "2500", "--no-snapshots"});
  ASSERT_EQ(with.exit_code, 0) << with.err;
  ASSERT_EQ(without.exit_code, 0) << without.err;
  EXPECT_THAT(with.out, HasSubstr("started from the snapshot set at sequence 2000 (2 shards"));
  EXPECT_THAT(with.out, HasSubstr("replayed 1000 events (sequences 2001..3000) with 2 shards"));
  EXPECT_THAT(without.out, HasSubstr("replayed 3000 events (sequences 1..3000) with 1 shard "));
  auto digest = [](const std::string& out) { return out.substr(out.rfind("digest ")); };
  EXPECT_EQ(digest(with.out), digest(without.out));
  // --shards 3: no set of 3 shards, so the journal from the start, said so.
  const ToolRun three = run({"replay", data_, "--from", "2500", "--shards", "3"});
  EXPECT_EQ(three.exit_code, 0);
  EXPECT_THAT(three.out, HasSubstr("taken with 2 shards"));
  EXPECT_EQ(digest(three.out), digest(without.out));
}

}  // namespace
}  // namespace sluice
