#include "pipeline/replay.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <functional>
#include <iterator>
#include <optional>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "core/wire_format.h"
#include "gtest/gtest.h"
#include "io/journal_reader.h"
#include "io/journal_writer.h"
#include "io/snapshot_format.h"
#include "io/snapshot_writer.h"
#include "pipeline/decision_digest.h"
#include "pipeline/keyed_processors.h"
#include "pipeline/shard_stage.h"

namespace sluice {
namespace {

namespace fs = std::filesystem;

class ReplayTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = (fs::temp_directory_path() / "sluice-replay-XXXXXX").string();
    dir_ = mkdtemp(tmpl.data());
  }
  void TearDown() override { fs::remove_all(dir_); }

  // A random but reproducible journal of transactions, orders and watermarks over few accounts,
  // with out-of-order and late event times so every verdict path is taken.
  std::vector<std::vector<std::byte>> write_journal(int64_t count, uint64_t seed) {
    auto w = journal::JournalWriter::open(journal::WriterOptions{
        .dir = journal_dir(), .segment_size = 1 << 20, .durability = journal::Durability::kNone});
    EXPECT_TRUE(w.ok()) << w.status();
    std::mt19937_64 rng(seed);
    std::vector<std::vector<std::byte>> frames;
    int64_t now = 1'000'000'000'000;
    for (int64_t seq = 1; seq <= count; ++seq) {
      std::vector<std::byte> f(wire::kMaxFrameSize);
      now += static_cast<int64_t>(rng() % 200'000'000);
      int64_t t = now - static_cast<int64_t>(rng() % 3'000'000'000);  // jitter within lateness
      if (rng() % 50 == 0) t = now - 20'000'000'000;                  // late
      const uint64_t account = 1 + rng() % 20;
      switch (rng() % 10) {
        case 0:
          f.resize(wire::encode(wire::Watermark{.event_time_ns = now}, f));
          break;
        case 1:
        case 2:
        case 3: {
          wire::Order o{.client_seq = static_cast<uint64_t>(seq),
                        .event_time_ns = t,
                        .account_id = account,
                        .order_id = static_cast<uint64_t>(seq),
                        .instrument_id = static_cast<uint32_t>(rng() % 3),
                        .side = static_cast<uint8_t>(1 + rng() % 2),
                        .quantity = static_cast<int64_t>(1 + rng() % 20'000),
                        .price = static_cast<int64_t>(1 + rng() % 200'000)};
          f.resize(wire::encode(o, f));
          break;
        }
        default: {
          wire::Transaction tx{.client_seq = static_cast<uint64_t>(seq),
                               .event_time_ns = t,
                               .account_id = account,
                               .amount_minor = static_cast<int64_t>(
                                   rng() % 20 == 0 ? 1 + rng() % 1'000'000 : 1 + rng() % 10'000),
                               .merchant_id = 9,
                               .currency = 840,
                               .channel = 1};
          f.resize(wire::encode(tx, f));
          break;
        }
      }
      while ((*w)->append(journal::RecordMeta{seq, seq, 5}, f) == journal::AppendResult::kFull) {
        (*w)->poll();
      }
      frames.push_back(std::move(f));
    }
    EXPECT_TRUE((*w)->close().ok());
    return frames;
  }

  std::string journal_dir() const { return dir_ + "/journal"; }
  std::string dir_;
};

struct CollectingSink final : DecisionSink {
  std::vector<DecisionRecord> decisions;
  DecisionDigest digest;
  void on_decision(const DecisionRecord& d) override {
    decisions.push_back(d);
    digest.add(d);
  }
  void on_alert(const AlertRecord&) override {}
};

TEST_F(ReplayTest, DigestIsTheSameForAnyShardCountAndEqualsTheLivePath) {
  const auto frames = write_journal(20'000, 7);
  // The "live" path: one shard fed straight from memory.
  CollectingSink live;
  Shard shard(ProcessorConfig{}, 0, 1, live);
  for (size_t i = 0; i < frames.size(); ++i) {
    shard.on_event(static_cast<int64_t>(i + 1), 5, 0, frames[i]);
  }
  ASSERT_GT(live.decisions.size(), 10'000u);

  // Several shards without a decisions file replay in parallel, each into its own counts.
  std::optional<ReplayResult> one;
  for (uint32_t shards : {1u, 2u, 3u, 4u}) {
    SCOPED_TRACE(testing::Message() << shards << " shards");
    auto r = run_replay(ReplayOptions{.journal_dir = journal_dir(), .shards = shards});
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_EQ(r->shards, shards);
    EXPECT_EQ(r->events, 20'000);
    EXPECT_EQ(r->first_sequence, 1);
    EXPECT_EQ(r->last_sequence, 20'000);
    EXPECT_EQ(r->decisions, static_cast<int64_t>(live.decisions.size()));
    EXPECT_EQ(r->digest.hex(), live.digest.hex());
    EXPECT_GT(r->verdicts[static_cast<int>(wire::Verdict::kLate)], 0);
    EXPECT_GT(r->verdicts[static_cast<int>(wire::Verdict::kReject)], 0);
    EXPECT_GT(r->verdicts[static_cast<int>(wire::Verdict::kFlag)], 0);
    EXPECT_GT(r->alerts, 0);
    if (!one) {
      one = *r;
      continue;
    }
    EXPECT_EQ(r->alerts, one->alerts);
    EXPECT_TRUE(std::equal(std::begin(r->verdicts), std::end(r->verdicts), one->verdicts));
    EXPECT_TRUE(std::equal(std::begin(r->alerts_by_rule), std::end(r->alerts_by_rule),
                           one->alerts_by_rule));
  }
}

TEST_F(ReplayTest, ParallelShardsReportTheSameRangeAsOneShard) {
  write_journal(5'000, 23);
  for (auto [from, to] : {std::pair<int64_t, int64_t>{1'001, 2'000}, {4'500, INT64_MAX}, {1, 1}}) {
    SCOPED_TRACE(testing::Message() << "from " << from << " to " << to);
    auto one = run_replay(
        ReplayOptions{.journal_dir = journal_dir(), .from = from, .to = to, .shards = 1});
    auto three = run_replay(
        ReplayOptions{.journal_dir = journal_dir(), .from = from, .to = to, .shards = 3});
    ASSERT_TRUE(one.ok()) << one.status();
    ASSERT_TRUE(three.ok()) << three.status();
    EXPECT_EQ(three->events, one->events);
    EXPECT_EQ(three->reported_events, one->reported_events);
    EXPECT_EQ(three->last_sequence, std::min<int64_t>(to, 5'000));
    EXPECT_EQ(three->last_sequence, one->last_sequence);
    EXPECT_EQ(three->decisions, one->decisions);
    EXPECT_EQ(three->alerts, one->alerts);
    EXPECT_EQ(three->digest.hex(), one->digest.hex());
  }
}

// Replay reads the journal a batch at a time and hands the last few records of each batch on
// to the next: --to anywhere, at batch and read-window edges included, must stop exactly there
// with every decision through it, the same as the live path's.
TEST_F(ReplayTest, ToAnywhereStopsExactlyThereWithTheLiveDecisions) {
  const auto frames = write_journal(30'000, 29);  // a 1 MiB segment is ~12k records: 3 segments
  CollectingSink live;
  Shard shard(ProcessorConfig{}, 0, 1, live);
  std::vector<DecisionDigest> through(frames.size() + 1);  // digest of the decisions through seq
  std::vector<int64_t> decisions(frames.size() + 1);
  for (size_t i = 0; i < frames.size(); ++i) {
    shard.on_event(static_cast<int64_t>(i + 1), 5, 0, frames[i]);
    through[i + 1] = live.digest;
    decisions[i + 1] = static_cast<int64_t>(live.decisions.size());
  }
  std::vector<int64_t> tos = {1, 2, 3, 4, 5, 6, 63, 64, 65, 67, 68, 69, 127, 128, 129, 132, 133};
  std::mt19937_64 rng(31);
  for (int i = 0; i < 12; ++i) tos.push_back(1 + static_cast<int64_t>(rng() % frames.size()));
  tos.push_back(static_cast<int64_t>(frames.size()) - 1);
  tos.push_back(static_cast<int64_t>(frames.size()));
  for (const int64_t to : tos) {
    SCOPED_TRACE(testing::Message() << "to " << to);
    auto r = run_replay(ReplayOptions{.journal_dir = journal_dir(), .to = to, .shards = 1});
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_EQ(r->events, to);
    EXPECT_EQ(r->first_sequence, 1);
    EXPECT_EQ(r->last_sequence, to);
    EXPECT_EQ(r->decisions, decisions[static_cast<size_t>(to)]);
    EXPECT_EQ(r->digest.hex(), through[static_cast<size_t>(to)].hex());
  }
}

TEST_F(ReplayTest, DecisionsFileHasSpecColumnsOneLineADecisionInSequenceOrder) {
  const auto frames = write_journal(2'000, 11);
  const std::string out = dir_ + "/decisions.csv";
  auto r =
      run_replay(ReplayOptions{.journal_dir = journal_dir(), .shards = 3, .decisions_out = out});
  ASSERT_TRUE(r.ok()) << r.status();
  std::ifstream in(out);
  std::string line;
  ASSERT_TRUE(std::getline(in, line));
  EXPECT_EQ(line, "seq,type,account_id,client_id,client_seq,verdict,reason,flags");
  int64_t lines = 0, last_seq = 0;
  while (std::getline(in, line)) {
    ++lines;
    std::stringstream fields(line);
    std::string seq, type, account, client, client_seq, verdict, reason, flags;
    std::getline(fields, seq, ',');
    std::getline(fields, type, ',');
    std::getline(fields, account, ',');
    std::getline(fields, client, ',');
    std::getline(fields, client_seq, ',');
    std::getline(fields, verdict, ',');
    std::getline(fields, reason, ',');
    std::getline(fields, flags, ',');
    ASSERT_FALSE(flags.empty()) << line;
    EXPECT_GT(std::stoll(seq), last_seq);
    last_seq = std::stoll(seq);
    EXPECT_TRUE(type == "T" || type == "O") << line;
    EXPECT_EQ(client, "5");
    EXPECT_EQ(client_seq, seq);  // the generator used seq as client_seq
    EXPECT_TRUE(verdict == "ACCEPT" || verdict == "FLAG" || verdict == "REJECT" ||
                verdict == "LATE")
        << line;
    // A watermark has no decision, so the line's frame must be a T or O.
    const auto& frame = frames[static_cast<size_t>(last_seq - 1)];
    EXPECT_EQ(type == "T" ? 0x02 : 0x03, static_cast<int>(frame[2]));
  }
  EXPECT_EQ(lines, r->decisions);
}

TEST_F(ReplayTest, FromAndToReportOnlyTheRangeButBuildStateFromTheStart) {
  write_journal(3'000, 13);
  auto full = run_replay(ReplayOptions{.journal_dir = journal_dir()});
  ASSERT_TRUE(full.ok());
  auto part = run_replay(ReplayOptions{.journal_dir = journal_dir(), .from = 1001, .to = 2000});
  ASSERT_TRUE(part.ok()) << part.status();
  EXPECT_EQ(part->reported_events, 1000);
  EXPECT_EQ(part->last_sequence, 2000);

  // The range's decisions are exactly the full run's decisions in that range.
  const std::string a = dir_ + "/a.csv", b = dir_ + "/b.csv";
  ASSERT_TRUE(run_replay(ReplayOptions{.journal_dir = journal_dir(), .decisions_out = a}).ok());
  ASSERT_TRUE(
      run_replay(
          ReplayOptions{.journal_dir = journal_dir(), .from = 1001, .to = 2000, .decisions_out = b})
          .ok());
  auto read_lines = [](const std::string& path, int64_t lo, int64_t hi) {
    std::ifstream in(path);
    std::string line;
    std::getline(in, line);
    std::vector<std::string> kept;
    while (std::getline(in, line)) {
      const int64_t seq = std::stoll(line.substr(0, line.find(',')));
      if (seq >= lo && seq <= hi) kept.push_back(line);
    }
    return kept;
  };
  EXPECT_EQ(read_lines(a, 1001, 2000), read_lines(b, 0, INT64_MAX));
  EXPECT_EQ(static_cast<int64_t>(read_lines(b, 0, INT64_MAX).size()), part->decisions);
}

// Overwrites one byte of `path` at `offset` with a value no test frame holds there.
void write_junk_byte(const std::string& path, uint64_t offset) {
  const int fd = ::open(path.c_str(), O_RDWR);
  ASSERT_GE(fd, 0) << path;
  const char junk = 0x5a;
  ASSERT_EQ(pwrite(fd, &junk, 1, static_cast<off_t>(offset)), 1);
  ::close(fd);
}

TEST_F(ReplayTest, ACorruptJournalIsAnErrorNamingTheSegmentAndOffset) {
  write_journal(500, 17);
  const std::string seg = journal_dir() + "/" + journal::segment_file_name(1);
  // Inside the first record's frame.
  write_junk_byte(seg, 64 + 45);
  for (uint32_t shards : {1u, 2u}) {  // on the calling thread, and in parallel
    auto r = run_replay(ReplayOptions{.journal_dir = journal_dir(), .shards = shards});
    ASSERT_FALSE(r.ok()) << shards;
    EXPECT_EQ(r.status().code(), absl::StatusCode::kDataLoss);
    EXPECT_NE(r.status().message().find(journal::segment_file_name(1)), std::string::npos);
    EXPECT_NE(r.status().message().find("offset 64"), std::string::npos) << r.status();
  }
}

// A replay that stops at --to N reads nothing it needs past N: a bad record after N does not fail
// it, and one at N does, naming where.
TEST_F(ReplayTest, ABadRecordPastToDoesNotFailTheReplayThatStopsBeforeIt) {
  write_journal(500, 37);
  const std::string seg = journal_dir() + "/" + journal::segment_file_name(1);
  uint64_t offset = 0;  // of record 300
  {
    auto reader = journal::JournalReader::open(journal_dir());
    ASSERT_TRUE(reader.ok()) << reader.status();
    journal::Record r;
    for (int i = 0; i < 299; ++i) ASSERT_EQ((*reader)->next(&r), journal::ReadResult::kRecord);
    ASSERT_EQ(r.sequence, 299);
    offset = (*reader)->position_offset();
  }
  write_junk_byte(seg, offset + journal::kRecordHeaderSize + 6);  // inside record 300's frame
  for (const int64_t to : {1, 64, 298, 299}) {
    auto r = run_replay(ReplayOptions{.journal_dir = journal_dir(), .to = to, .shards = 1});
    ASSERT_TRUE(r.ok()) << "to " << to << ": " << r.status();
    EXPECT_EQ(r->last_sequence, to);
  }
  for (const int64_t to : {int64_t{300}, int64_t{301}, INT64_MAX}) {
    auto r = run_replay(ReplayOptions{.journal_dir = journal_dir(), .to = to, .shards = 1});
    ASSERT_FALSE(r.ok()) << "to " << to;
    EXPECT_EQ(r.status().code(), absl::StatusCode::kDataLoss);
    EXPECT_NE(r.status().message().find(absl::StrCat("offset ", offset)), std::string::npos)
        << r.status();
  }
}

std::string read_all(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

TEST_F(ReplayTest, StartingFromASnapshotSetGivesTheSameDecisionsAsFromScratch) {
  const auto frames = write_journal(6'000, 19);
  const std::string snapshots = dir_ + "/snapshots";
  // Snapshot sets of 2 shards at 1'500 and 4'000, as the daemon would leave them.
  {
    auto writer = snapshot::SnapshotWriter::start({.dir = snapshots});
    ASSERT_TRUE(writer.ok());
    CollectingSink ignore;
    std::vector<std::unique_ptr<Shard>> shards;
    for (uint32_t i = 0; i < 2; ++i)
      shards.push_back(std::make_unique<Shard>(ProcessorConfig{}, i, 2, ignore));
    for (size_t k = 0; k < 4'000; ++k) {
      for (auto& s : shards) s->on_event(static_cast<int64_t>(k + 1), 5, 0, frames[k]);
      if (k + 1 == 1'500 || k + 1 == 4'000) {
        for (auto& s : shards) ASSERT_TRUE(write_snapshot(*s, **writer).ok());
      }
    }
  }
  for (int64_t from : {1, 1'501, 3'000, 4'001, 5'500}) {
    SCOPED_TRACE(from);
    const std::string a = dir_ + "/scratch.csv", b = dir_ + "/snap.csv";
    auto scratch = run_replay(
        ReplayOptions{.journal_dir = journal_dir(), .from = from, .shards = 1, .decisions_out = a});
    auto snap = run_replay(ReplayOptions{.journal_dir = journal_dir(),
                                         .snapshot_dir = snapshots,
                                         .from = from,
                                         .shards = 0,
                                         .decisions_out = b});
    ASSERT_TRUE(scratch.ok()) << scratch.status();
    ASSERT_TRUE(snap.ok()) << snap.status();
    const int64_t want_s = from > 4'000 ? 4'000 : from > 1'500 ? 1'500 : 0;
    EXPECT_EQ(snap->snapshot_sequence, want_s);
    EXPECT_EQ(snap->shards, want_s > 0 ? 2u : 1u);  // the set's shard count, else 1
    EXPECT_EQ(snap->events, 6'000 - want_s);
    EXPECT_EQ(snap->digest.hex(), scratch->digest.hex());
    EXPECT_EQ(snap->decisions, scratch->decisions);
    EXPECT_EQ(snap->alerts, scratch->alerts);
    EXPECT_EQ(snap->reported_events, scratch->reported_events);
    EXPECT_EQ(read_all(a), read_all(b));
    // Without a decisions file the set's two shards replay the tail in parallel.
    auto parallel = run_replay(ReplayOptions{
        .journal_dir = journal_dir(), .snapshot_dir = snapshots, .from = from, .shards = 0});
    ASSERT_TRUE(parallel.ok()) << parallel.status();
    EXPECT_EQ(parallel->snapshot_sequence, want_s);
    EXPECT_EQ(parallel->events, snap->events);
    EXPECT_EQ(parallel->first_sequence, snap->first_sequence);
    EXPECT_EQ(parallel->last_sequence, 6'000);
    EXPECT_EQ(parallel->digest.hex(), scratch->digest.hex());
    EXPECT_EQ(parallel->alerts, scratch->alerts);
  }
}

TEST_F(ReplayTest, AMissingJournalIsNotFound) {
  auto r = run_replay(ReplayOptions{.journal_dir = dir_ + "/nope"});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kNotFound);
}

// The digest sees every field of a decision (a change to any one changes it) and not the order
// the decisions arrive in.
TEST(DecisionDigestTest, EveryFieldCountsAndOrderDoesNot) {
  std::mt19937_64 rng(5);
  std::vector<DecisionRecord> stream;
  for (int i = 0; i < 1'000; ++i) {
    stream.push_back(DecisionRecord{.seq = i + 1,
                                    .type = i % 2 == 0 ? 'T' : 'O',
                                    .account_id = 1 + rng() % 50,
                                    .client_id = 1 + rng() % 3,
                                    .client_seq = rng() % 1'000'000,
                                    .verdict = static_cast<wire::Verdict>(rng() % 5),
                                    .reason = static_cast<uint8_t>(rng() % 7),
                                    .flags = static_cast<uint32_t>(rng() % 64)});
  }
  DecisionDigest in_order;
  for (const DecisionRecord& d : stream) in_order.add(d);
  std::vector<DecisionRecord> shuffled = stream;
  std::shuffle(shuffled.begin(), shuffled.end(), rng);
  DecisionDigest reordered;
  for (const DecisionRecord& d : shuffled) reordered.add(d);
  EXPECT_EQ(in_order.hex(), reordered.hex());

  // Each field, changed by one bit in one decision, changes the digest.
  const std::vector<std::function<void(DecisionRecord&)>> changes = {
      [](DecisionRecord& d) { d.seq ^= 1; },
      [](DecisionRecord& d) { d.type = d.type == 'T' ? 'O' : 'T'; },
      [](DecisionRecord& d) { d.account_id ^= 1; },
      [](DecisionRecord& d) { d.client_id ^= 1; },
      [](DecisionRecord& d) { d.client_seq ^= 1ull << 40; },
      [](DecisionRecord& d) {
        d.verdict = d.verdict == wire::Verdict::kAccept ? wire::Verdict::kFlag
                                                        : wire::Verdict::kAccept;
      },
      [](DecisionRecord& d) { d.reason ^= 1; },
      [](DecisionRecord& d) { d.flags ^= 1u << 5; }};
  for (size_t field = 0; field < changes.size(); ++field) {
    for (size_t at : {size_t{0}, size_t{499}, stream.size() - 1}) {
      std::vector<DecisionRecord> changed = stream;
      changes[field](changed[at]);
      DecisionDigest d;
      for (const DecisionRecord& r : changed) d.add(r);
      EXPECT_NE(d.hex(), in_order.hex()) << "field " << field << " at " << at;
    }
  }
  // A missing or an extra decision changes it too.
  DecisionDigest missing;
  for (size_t i = 1; i < stream.size(); ++i) missing.add(stream[i]);
  EXPECT_NE(missing.hex(), in_order.hex());
  DecisionDigest extra = in_order;
  extra.add(stream[0]);
  EXPECT_NE(extra.hex(), in_order.hex());
}

}  // namespace
}  // namespace sluice
