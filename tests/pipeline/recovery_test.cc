// Recovery: snapshot sets plus the journal tail against a replay from scratch, bad snapshots of
// every kind, and a process killed while it writes snapshots.
#include "pipeline/recovery.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "gtest/gtest.h"
#include "io/snapshot_file.h"
#include "io/snapshot_format.h"
#include "io/snapshot_writer.h"
#include "pipeline/shard_stage.h"
#include "tests/pipeline/test_journal.h"
#include "tests/test_util.h"

namespace sluice {
namespace {

namespace fs = std::filesystem;
using testing::Collected;
using testing::image_of;
using testing::JournalEvent;

class RecoveryTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = (fs::temp_directory_path() / "sluice-recovery-XXXXXX").string();
    root_ = mkdtemp(tmpl.data());
    journal_ = root_ + "/journal";
    snapshots_ = root_ + "/snapshots";
  }
  void TearDown() override { fs::remove_all(root_); }

  // N shards fed events [0, upto).
  static std::vector<std::unique_ptr<Shard>> shards_at(const std::vector<JournalEvent>& events,
                                                       uint32_t n, size_t upto, DecisionSink& sink,
                                                       const ProcessorConfig& config = {}) {
    std::vector<std::unique_ptr<Shard>> shards;
    for (uint32_t i = 0; i < n; ++i) shards.push_back(std::make_unique<Shard>(config, i, n, sink));
    for (size_t k = 0; k < upto && k < events.size(); ++k) {
      for (auto& s : shards)
        s->on_event(static_cast<int64_t>(k + 1), events[k].client_id, 0, events[k].frame);
    }
    return shards;
  }

  // Writes the snapshot set of the shards (as of their last sequence).
  void write_set(std::vector<std::unique_ptr<Shard>>& shards) {
    auto writer = snapshot::SnapshotWriter::start({.dir = snapshots_, .keep = 100});
    ASSERT_TRUE(writer.ok()) << writer.status();
    for (auto& s : shards) ASSERT_TRUE(write_snapshot(*s, **writer).ok());
  }
  std::string snap(uint32_t k, uint32_t n, int64_t s) const {
    return snapshots_ + "/" + snapshot::file_name({k, n, s});
  }

  // Recovers and checks the state equals a replay from scratch of the whole journal.
  Recovered recover_and_check(const std::vector<JournalEvent>& events, uint32_t n,
                              const ProcessorConfig& config = {}, DecisionSink* tail = nullptr) {
    auto r = recover(RecoveryOptions{.snapshot_dir = snapshots_,
                                     .journal_dir = journal_,
                                     .shards = n,
                                     .config = config,
                                     .tail_sink = tail});
    EXPECT_TRUE(r.ok()) << r.status();
    if (!r.ok()) return {};
    Collected ignore;
    auto scratch = shards_at(events, n, events.size(), ignore, config);
    EXPECT_EQ(r->shards.size(), n);
    EXPECT_EQ(r->last_sequence, static_cast<int64_t>(events.size()));
    for (uint32_t k = 0; k < n && k < r->shards.size(); ++k) {
      EXPECT_EQ(r->shards[k]->last_sequence(), static_cast<int64_t>(events.size()));
      EXPECT_TRUE(image_of(*r->shards[k]) == image_of(*scratch[k])) << "shard " << k << " of " << n;
    }
    return *std::move(r);
  }

  std::string root_, journal_, snapshots_;
};

void flip_byte(const std::string& path, off_t offset) {
  const int fd = ::open(path.c_str(), O_RDWR);
  ASSERT_GE(fd, 0);
  unsigned char b = 0;
  ASSERT_EQ(::pread(fd, &b, 1, offset), 1);
  b ^= 0x40;
  ASSERT_EQ(::pwrite(fd, &b, 1, offset), 1);
  ::close(fd);
}

std::string joined(const std::vector<std::string>& v) { return absl::StrJoin(v, "\n"); }

TEST_F(RecoveryTest, SnapshotAtRandomSequencePlusTailEqualsReplayFromScratch) {
  const auto events = testing::random_events(6'000, 1);
  testing::append_journal(journal_, events);
  std::mt19937_64 rng(2);
  for (uint32_t n = 1; n <= 4; ++n) {
    for (int round = 0; round < 3; ++round) {
      fs::remove_all(snapshots_);
      const size_t s = 1 + rng() % (events.size() - 1);
      SCOPED_TRACE(absl::StrCat(n, " shards, snapshot at ", s));
      Collected ignore;
      auto at_s = shards_at(events, n, s, ignore);
      write_set(at_s);
      Collected tail;
      const Recovered r = recover_and_check(events, n, {}, &tail);
      EXPECT_EQ(r.snapshot_sequence, static_cast<int64_t>(s));
      EXPECT_EQ(r.replayed_events, static_cast<int64_t>(events.size() - s));
      EXPECT_TRUE(r.warnings.empty()) << joined(r.warnings);
      // Every decision and alert of the tail, exactly as a replay from scratch made them.
      Collected scratch;
      shards_at(events, n, events.size(), scratch);
      std::vector<DecisionRecord> want_d;
      std::vector<AlertRecord> want_a;
      for (const auto& d : scratch.decisions) {
        if (d.seq > static_cast<int64_t>(s)) want_d.push_back(d);
      }
      for (const auto& a : scratch.alerts) {
        if (a.seq > static_cast<int64_t>(s)) want_a.push_back(a);
      }
      EXPECT_EQ(tail.decisions, want_d);
      EXPECT_EQ(tail.alerts, want_a);
      EXPECT_GT(want_d.size(), 0u);
    }
  }
}

TEST_F(RecoveryTest, AParallelTailLeavesEachShardAsOneThreadWouldWithItsOwnDecisionsInOrder) {
  const auto events = testing::random_events(6'000, 21);
  testing::append_journal(journal_, events);
  std::mt19937_64 rng(22);
  for (uint32_t n = 2; n <= 5; ++n) {  // more shards than this machine's CPUs: groups per thread
    fs::remove_all(snapshots_);
    const size_t s = n == 2 ? 0 : 1 + rng() % (events.size() - 1);  // 0: no snapshot
    SCOPED_TRACE(absl::StrCat(n, " shards, snapshot at ", s));
    if (s > 0) {
      Collected ignore;
      auto at_s = shards_at(events, n, s, ignore);
      write_set(at_s);
    }
    std::vector<Collected> per_shard(n);
    std::vector<uint32_t> asked;
    Collected unused;
    auto sink_of = [&](uint32_t k, uint32_t count) -> DecisionSink* {
      EXPECT_EQ(count, n);
      asked.push_back(k);
      return &per_shard[k];
    };
    auto r = recover(RecoveryOptions{.snapshot_dir = snapshots_,
                                     .journal_dir = journal_,
                                     .shards = n,
                                     .tail_sink = &unused,
                                     .shard_sink = sink_of});
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_EQ(r->snapshot_sequence, static_cast<int64_t>(s));
    EXPECT_EQ(r->replayed_events, static_cast<int64_t>(events.size() - s));
    EXPECT_EQ(r->first_sequence, static_cast<int64_t>(s + 1));
    EXPECT_EQ(r->last_sequence, static_cast<int64_t>(events.size()));
    EXPECT_EQ(asked.size(), n);
    EXPECT_TRUE(std::is_sorted(asked.begin(), asked.end()));
    EXPECT_TRUE(unused.decisions.empty());
    // From scratch on one thread, a sink per shard.
    std::vector<Collected> want(n);
    std::vector<std::unique_ptr<Shard>> scratch;
    for (uint32_t k = 0; k < n; ++k) {
      scratch.push_back(std::make_unique<Shard>(ProcessorConfig{}, k, n, want[k]));
    }
    for (size_t e = 0; e < events.size(); ++e) {
      for (auto& shard : scratch) {
        shard->on_event(static_cast<int64_t>(e + 1), events[e].client_id, 0, events[e].frame);
      }
    }
    const auto before_s = [s](const auto& x) { return x.seq <= static_cast<int64_t>(s); };
    size_t total = 0;
    for (uint32_t k = 0; k < n; ++k) {
      EXPECT_TRUE(image_of(*r->shards[k]) == image_of(*scratch[k])) << "shard " << k;
      std::erase_if(want[k].decisions, before_s);
      std::erase_if(want[k].alerts, before_s);
      EXPECT_EQ(per_shard[k].decisions, want[k].decisions) << "shard " << k;
      EXPECT_EQ(per_shard[k].alerts, want[k].alerts) << "shard " << k;
      total += per_shard[k].decisions.size();
    }
    EXPECT_GT(total, 0u);
  }
}

TEST_F(RecoveryTest, AParallelTailStopsAtACorruptRecordNamingItsFileAndOffset) {
  const auto events = testing::random_events(500, 23);
  testing::append_journal(journal_, events);
  flip_byte(journal_ + "/" + journal::segment_file_name(1), 64 + 45);
  std::vector<Collected> per_shard(3);
  auto r = recover(RecoveryOptions{
      .journal_dir = journal_,
      .shards = 3,
      .use_snapshots = false,
      .shard_sink = [&](uint32_t k, uint32_t) -> DecisionSink* { return &per_shard[k]; }});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kDataLoss) << r.status();
  EXPECT_NE(r.status().message().find(journal::segment_file_name(1)), std::string::npos)
      << r.status();
  EXPECT_NE(r.status().message().find("offset 64"), std::string::npos) << r.status();
}

TEST_F(RecoveryTest, NoSnapshotsMeansAFullReplay) {
  const auto events = testing::random_events(2'000, 3);
  testing::append_journal(journal_, events);
  const Recovered r = recover_and_check(events, 2);
  EXPECT_EQ(r.snapshot_sequence, 0);
  EXPECT_EQ(r.first_sequence, 1);
  EXPECT_EQ(r.replayed_events, 2'000);
}

TEST_F(RecoveryTest, AFlippedByteOrATruncatedFileIsNamedAndAnOlderSetIsUsed) {
  const auto events = testing::random_events(5'000, 4);
  testing::append_journal(journal_, events);
  Collected ignore;
  for (size_t s : {1'000u, 3'000u}) {
    auto shards = shards_at(events, 2, s, ignore);
    write_set(shards);
  }
  // Newest set: shard 1's body damaged.
  flip_byte(snap(1, 2, 3'000), 4'000);
  {
    const Recovered r = recover_and_check(events, 2);
    EXPECT_EQ(r.snapshot_sequence, 1'000);
    ASSERT_EQ(r.warnings.size(), 1u) << joined(r.warnings);
    EXPECT_NE(r.warnings[0].find(snap(1, 2, 3'000)), std::string::npos) << r.warnings[0];
    EXPECT_NE(r.warnings[0].find("CRC"), std::string::npos) << r.warnings[0];
  }
  // Older set: shard 0 cut short.
  fs::resize_file(snap(0, 2, 1'000), fs::file_size(snap(0, 2, 1'000)) - 100);
  {
    const Recovered r = recover_and_check(events, 2);
    EXPECT_EQ(r.snapshot_sequence, 0);  // nothing usable: the journal from the start
    const std::string w = joined(r.warnings);
    EXPECT_NE(w.find(snap(0, 2, 1'000)), std::string::npos) << w;
    EXPECT_NE(w.find("truncated"), std::string::npos) << w;
  }
  // A damaged header is named too.
  flip_byte(snap(0, 2, 3'000), 30);
  {
    const Recovered r = recover_and_check(events, 2);
    const std::string w = joined(r.warnings);
    EXPECT_NE(w.find(snap(0, 2, 3'000) + ": header CRC mismatch"), std::string::npos) << w;
  }
}

TEST_F(RecoveryTest, AnIncompleteSetIsSkippedForAnOlderCompleteOne) {
  const auto events = testing::random_events(3'000, 5);
  testing::append_journal(journal_, events);
  Collected ignore;
  auto a = shards_at(events, 3, 1'000, ignore);
  write_set(a);
  auto b = shards_at(events, 3, 2'000, ignore);
  write_set(b);
  fs::remove(snap(2, 3, 2'000));  // a crash before shard 2 wrote its file
  const Recovered r = recover_and_check(events, 3);
  EXPECT_EQ(r.snapshot_sequence, 1'000);
  EXPECT_NE(joined(r.warnings).find("incomplete"), std::string::npos) << joined(r.warnings);
}

TEST_F(RecoveryTest, SnapshotsOfAnotherShardCountAreNeverRestored) {
  const auto events = testing::random_events(3'000, 6);
  testing::append_journal(journal_, events);
  Collected ignore;
  auto two = shards_at(events, 2, 2'000, ignore);
  write_set(two);
  const Recovered r = recover_and_check(events, 3);
  EXPECT_EQ(r.snapshot_sequence, 0);
  EXPECT_NE(joined(r.warnings).find("taken with 2 shards"), std::string::npos)
      << joined(r.warnings);
  // The same files are good for two shards.
  EXPECT_EQ(recover_and_check(events, 2).snapshot_sequence, 2'000);
}

TEST_F(RecoveryTest, SnapshotsOfAnotherConfigAreNeverRestored) {
  const auto events = testing::random_events(3'000, 7);
  testing::append_journal(journal_, events);
  ProcessorConfig strict;
  strict.velocity_max = 2;
  Collected ignore;
  auto shards = shards_at(events, 1, 2'000, ignore, strict);
  write_set(shards);
  const Recovered r = recover_and_check(events, 1);  // default config
  EXPECT_EQ(r.snapshot_sequence, 0);
  EXPECT_NE(joined(r.warnings).find("another processor config"), std::string::npos)
      << joined(r.warnings);
  EXPECT_EQ(recover_and_check(events, 1, strict).snapshot_sequence, 2'000);
}

TEST_F(RecoveryTest, ASnapshotAheadOfTheJournalIsNotUsed) {
  // Durability none and a power cut: the snapshot survived, the journal's end did not.
  const auto events = testing::random_events(4'000, 8);
  testing::append_journal(journal_, events, 0, 3'000);
  const std::vector<JournalEvent> kept(events.begin(), events.begin() + 3'000);
  Collected ignore;
  auto old_set = shards_at(events, 2, 1'500, ignore);
  write_set(old_set);
  auto ahead = shards_at(events, 2, 3'500, ignore);
  write_set(ahead);
  const Recovered r = recover_and_check(kept, 2);
  EXPECT_EQ(r.snapshot_sequence, 1'500);
  EXPECT_NE(joined(r.warnings).find("sequence 3500: the journal ends before it"), std::string::npos)
      << joined(r.warnings);
}

TEST_F(RecoveryTest, ShardZerosClientTableEqualsABruteForceScanOfTheJournal) {
  const auto events = testing::random_events(5'000, 9);
  testing::append_journal(journal_, events);
  Collected ignore;
  auto at = shards_at(events, 2, 2'500, ignore);
  write_set(at);
  const Recovered r = recover_and_check(events, 2);
  ASSERT_EQ(r.snapshot_sequence, 2'500);
  std::map<uint64_t, uint64_t> want;
  for (const JournalEvent& e : events) {
    const uint8_t type = static_cast<uint8_t>(e.frame[2]);
    if (e.client_id == 0) continue;
    uint64_t client_seq = 0;
    if (type == static_cast<uint8_t>(wire::FrameType::kTransaction)) {
      client_seq = wire::decode_transaction(e.frame).client_seq;
    } else if (type == static_cast<uint8_t>(wire::FrameType::kOrder)) {
      client_seq = wire::decode_order(e.frame).client_seq;
    } else {
      continue;
    }
    want[e.client_id] = std::max(want[e.client_id], client_seq);
  }
  std::map<uint64_t, uint64_t> got;
  for (const auto [client, last] : r.client_table()) got[client] = last;
  EXPECT_EQ(got, want);
  EXPECT_EQ(want.size(), 3u);
  for (const auto& [client, last] : want) EXPECT_EQ(r.client_table().last_client_seq(client), last);
  // Only shard 0 keeps it.
  EXPECT_EQ(r.shards[1]->client_table().size(), 0u);
}

TEST_F(RecoveryTest, ACorruptJournalIsAnErrorNamingTheFileAndOffset) {
  const auto events = testing::random_events(500, 10);
  testing::append_journal(journal_, events);
  flip_byte(journal_ + "/" + journal::segment_file_name(1), 64 + 45);
  auto r = recover(RecoveryOptions{.snapshot_dir = snapshots_, .journal_dir = journal_});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_NE(r.status().message().find("offset 64"), std::string::npos) << r.status();
}

// A child process writes snapshot sets over and over and is killed at a random moment, many
// times: recovery must always succeed from a complete older set or the journal, and every file
// with a final name must be whole.
TEST_F(RecoveryTest, SigkillWhileWritingSnapshotsNeverLeavesAPartialFileInUse) {
  const auto events = testing::random_events(40'000, 11, 20'000);
  testing::append_journal(journal_, events);
  std::mt19937_64 rng(12);
  int used_snapshot = 0, cut_mid_write = 0;
  const int rounds = 20;
  for (int round = 0; round < rounds; ++round) {
    const pid_t pid = ::fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      // Child: a fresh state, snapshot sets at rising sequences until killed.
      auto writer = snapshot::SnapshotWriter::start({.dir = snapshots_, .keep = 2});
      if (!writer.ok()) ::_exit(3);
      Collected ignore;
      std::vector<std::unique_ptr<Shard>> shards;
      for (uint32_t i = 0; i < 2; ++i)
        shards.push_back(std::make_unique<Shard>(ProcessorConfig{}, i, 2, ignore));
      for (size_t k = 0; k < events.size(); ++k) {
        for (auto& s : shards)
          s->on_event(static_cast<int64_t>(k + 1), events[k].client_id, 0, events[k].frame);
        ignore.decisions.clear();
        ignore.alerts.clear();
        if (k + 1 >= 10'000 && (k + 1) % 500 == 0) {
          for (auto& s : shards) (void)write_snapshot(*s, **writer);
        }
      }
      ::_exit(0);
    }
    std::this_thread::sleep_for(std::chrono::microseconds(rng() % 80'000));
    ::kill(pid, SIGKILL);
    int status = 0;
    ASSERT_EQ(::waitpid(pid, &status, 0), pid);
    for (const auto& entry : fs::directory_iterator(snapshots_)) {
      cut_mid_write += entry.path().extension() == ".tmp";
    }
    // Every complete-named file is whole (temp files may be cut anywhere).
    auto listed = snapshot::list(snapshots_);
    ASSERT_TRUE(listed.ok());
    for (const auto& f : *listed) {
      auto m = snapshot::MappedSnapshot::open(f.path, true);
      EXPECT_TRUE(m.ok()) << "round " << round << ": " << m.status();
    }
    const Recovered r = recover_and_check(events, 2);
    if (r.snapshot_sequence > 0) ++used_snapshot;
  }
  std::printf("  %d of %d kills left a temp file; recovered from a snapshot set in %d\n",
              cut_mid_write, rounds, used_snapshot);
}

}  // namespace
}  // namespace sluice
