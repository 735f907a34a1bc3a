// The snapshot file format: header round trip, every header check, the body CRC and length,
// file names, listing, atomic writes and pruning.
#include "io/snapshot_format.h"

#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "core/crc32c.h"
#include "gtest/gtest.h"
#include "io/snapshot_file.h"

namespace sluice::snapshot {
namespace {

namespace fs = std::filesystem;

Header sample() {
  Header h;
  h.shard_index = 2;
  h.shard_count = 3;
  h.sequence = 123'456;
  h.max_time = -5;
  h.config_fingerprint = 0x1122334455667788ull;
  h.created_ns = 1'700'000'000'000'000'000;
  h.accounts = 1;
  h.history_entries = 2;
  h.positions = 3;
  h.rate_accounts = 4;
  h.rate_entries = 5;
  h.timers = 6;
  h.clients = 7;
  return h;
}

std::vector<std::byte> file_with_body(size_t body) {
  std::vector<std::byte> f(kHeaderSize + body);
  for (size_t i = 0; i < body; ++i) f[kHeaderSize + i] = static_cast<std::byte>(i * 7);
  seal(sample(), f);
  return f;
}

TEST(SnapshotFormat, HeaderRoundTripsEveryField) {
  const std::vector<std::byte> f = file_with_body(1000);
  auto h = verify(f);
  ASSERT_TRUE(h.ok()) << h.status();
  const Header want = sample();
  EXPECT_EQ(h->shard_index, want.shard_index);
  EXPECT_EQ(h->shard_count, want.shard_count);
  EXPECT_EQ(h->sequence, want.sequence);
  EXPECT_EQ(h->max_time, want.max_time);
  EXPECT_EQ(h->config_fingerprint, want.config_fingerprint);
  EXPECT_EQ(h->created_ns, want.created_ns);
  EXPECT_EQ(h->body_length, 1000u);
  EXPECT_EQ(h->entries(), 2u + 3 + 5 + 6 + 7);
}

TEST(SnapshotFormat, EveryDamageIsNamed) {
  const std::vector<std::byte> good = file_with_body(1000);
  auto damaged = [&](size_t at) {
    std::vector<std::byte> f = good;
    f[at] ^= std::byte{0x01};
    return std::string(verify(f).status().message());
  };
  EXPECT_EQ(damaged(0), "bad magic: not a snapshot file");
  EXPECT_EQ(damaged(20), "header CRC mismatch");
  EXPECT_EQ(damaged(kHeaderSize + 500), "body CRC mismatch");
  std::vector<std::byte> cut(good.begin(), good.end() - 1);
  EXPECT_EQ(std::string(verify(cut).status().message()),
            "truncated: body is 999 bytes, header says 1000");
  std::vector<std::byte> tiny(good.begin(), good.begin() + 50);
  EXPECT_EQ(std::string(verify(tiny).status().message()),
            "shorter than a header (50 of 128 bytes)");
  // A newer version with a valid CRC is refused by version, not misread.
  std::vector<std::byte> v2 = good;
  v2[8] = std::byte{2};
  const uint32_t crc = crc32c(v2.data(), 124);
  std::memcpy(v2.data() + 124, &crc, 4);
  EXPECT_EQ(std::string(verify(v2).status().message()), "format version 2, this build reads 1");
}

TEST(SnapshotFormat, FileNamesRoundTripAndOthersAreNotSnapshots) {
  EXPECT_EQ(file_name({0, 2, 1000}), "shard-0-of-2-00000000000000001000.snap");
  auto n = parse_file_name("shard-3-of-4-00000000000000000077.snap");
  ASSERT_TRUE(n.has_value());
  EXPECT_EQ(n->shard_index, 3u);
  EXPECT_EQ(n->shard_count, 4u);
  EXPECT_EQ(n->sequence, 77);
  for (const char* bad : {"shard-4-of-4-00000000000000000077.snap",  // index >= count
                          "shard-0-of-0-00000000000000000077.snap", "shard-0-of-2-77.snap",
                          "shard-0-of-2-00000000000000000077.snap.tmp",
                          "shard-x-of-2-00000000000000000077.snap", "00000000000000000001.seg"}) {
    EXPECT_FALSE(parse_file_name(bad).has_value()) << bad;
  }
}

class SnapshotFiles : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = (fs::temp_directory_path() / "sluice-snapfmt-XXXXXX").string();
    dir_ = mkdtemp(tmpl.data());
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string dir_;
};

TEST_F(SnapshotFiles, AtomicWriteLeavesTheFileAndNoTempAndPruneKeepsTheNewest) {
  const std::vector<std::byte> f = file_with_body(4096);
  for (int64_t s : {10, 20, 30, 40}) {
    ASSERT_TRUE(write_file_atomically(dir_, file_name({0, 2, s}), f).ok());
    ASSERT_TRUE(write_file_atomically(dir_, file_name({1, 2, s}), f).ok());
  }
  ASSERT_TRUE(write_file_atomically(dir_, file_name({0, 3, 5}), f).ok());
  std::ofstream(dir_ + "/" + file_name({0, 2, 50}) + ".tmp") << "partial";
  auto listed = list(dir_);
  ASSERT_TRUE(listed.ok());
  ASSERT_EQ(listed->size(), 9u);  // the temp file is not listed
  EXPECT_EQ(listed->front().name.sequence, 40);
  ASSERT_TRUE(prune(dir_, 0, 2, 2).ok());
  EXPECT_FALSE(fs::exists(dir_ + "/" + file_name({0, 2, 20})));
  EXPECT_TRUE(fs::exists(dir_ + "/" + file_name({0, 2, 30})));
  EXPECT_TRUE(fs::exists(dir_ + "/" + file_name({1, 2, 10})));  // another shard: untouched
  EXPECT_TRUE(fs::exists(dir_ + "/" + file_name({0, 3, 5})));   // another count: untouched
  remove_temp_files(dir_);
  EXPECT_FALSE(fs::exists(dir_ + "/" + file_name({0, 2, 50}) + ".tmp"));
  auto m = MappedSnapshot::open(dir_ + "/" + file_name({0, 2, 40}));
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_EQ((*m)->bytes().size(), f.size());
  EXPECT_EQ((*m)->header().sequence, 123'456);  // what the header says (sample())
}

TEST_F(SnapshotFiles, AMissingDirectoryListsNothingAndAMissingFileIsNotFound) {
  auto listed = list(dir_ + "/nope");
  ASSERT_TRUE(listed.ok());
  EXPECT_TRUE(listed->empty());
  auto m = MappedSnapshot::open(dir_ + "/nope.snap");
  EXPECT_EQ(m.status().code(), absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace sluice::snapshot
