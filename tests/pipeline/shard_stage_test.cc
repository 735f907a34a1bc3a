// ShardStage: the output ring's backpressure with a slow consumer thread, and snapshots taken
// incrementally (copy-on-write) while events keep changing the state.
#include "pipeline/shard_stage.h"

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "core/idle_strategy.h"
#include "core/wait_strategy.h"
#include "gtest/gtest.h"
#include "io/snapshot_file.h"
#include "pipeline/agent_runner.h"
#include "pipeline/recovery.h"
#include "tests/pipeline/test_journal.h"
#include "tests/test_util.h"

namespace sluice {
namespace {

namespace fs = std::filesystem;
using testing::Collected;
using testing::image_of;
using testing::JournalEvent;

using InputRing = ShardStage::InputRing;
using OutputRing = ShardStage::OutputRing;

void fill(InputEvent& slot, const JournalEvent& e, int64_t seq, bool barrier) {
  slot.sequence = seq;
  slot.ingest_ns = seq;
  slot.client_id = e.client_id;
  slot.receive_ticks = 1'000'000 + seq;
  slot.connection_id = static_cast<uint32_t>(seq % 7 + 1);
  slot.frame_length = static_cast<uint16_t>(e.frame.size());
  slot.flags = barrier ? kInputSnapshotAfter : 0;
  std::memcpy(slot.frame.data(), e.frame.data(), e.frame.size());
}

// What the stage must put in its output ring: a direct Shard's decisions and alerts, with the
// routing fields the input slots carried.
struct Expected {
  std::vector<OutputEvent> outputs;
};
Expected expected_outputs(const std::vector<JournalEvent>& events, uint32_t index, uint32_t count) {
  Collected sink;
  Shard shard(ProcessorConfig{}, index, count, sink);
  Expected out;
  for (size_t k = 0; k < events.size(); ++k) {
    const auto seq = static_cast<int64_t>(k + 1);
    const size_t d0 = sink.decisions.size(), a0 = sink.alerts.size();
    shard.on_event(seq, events[k].client_id, static_cast<uint32_t>(seq % 7 + 1), events[k].frame);
    for (size_t i = d0; i < sink.decisions.size(); ++i) {
      const DecisionRecord& d = sink.decisions[i];
      OutputEvent o;
      o.kind = OutputEvent::Kind::kDecision;
      o.type = d.type;
      o.verdict = static_cast<uint8_t>(d.verdict);
      o.reason = d.reason;
      o.connection_id = d.connection_id;
      o.flags = d.flags;
      o.seq = d.seq;
      o.account_id = d.account_id;
      o.client_id = d.client_id;
      o.client_seq = d.client_seq;
      o.receive_ticks = 1'000'000 + seq;
      out.outputs.push_back(o);
    }
    for (size_t i = a0; i < sink.alerts.size(); ++i) {
      const AlertRecord& a = sink.alerts[i];
      OutputEvent o;
      o.kind = OutputEvent::Kind::kAlert;
      o.rule = static_cast<uint16_t>(a.rule);
      o.seq = a.seq;
      o.account_id = a.account_id;
      o.event_time_ns = a.event_time_ns;
      o.value = a.value;
      o.threshold = a.threshold;
      o.receive_ticks = 1'000'000 + seq;
      out.outputs.push_back(o);
    }
  }
  return out;
}

std::string describe(const OutputEvent& o) {
  return absl::StrCat(o.kind == OutputEvent::Kind::kDecision ? "D" : "A", " seq=", o.seq,
                      " acct=", o.account_id, " v=", o.verdict, " r=", o.reason, " f=", o.flags,
                      " conn=", o.connection_id, " cl=", o.client_id, "/", o.client_seq,
                      " rule=", o.rule, " val=", o.value, " thr=", o.threshold,
                      " t=", o.event_time_ns, " ticks=", o.receive_ticks);
}
bool same(const OutputEvent& a, const OutputEvent& b) { return describe(a) == describe(b); }

TEST(ShardStage, AFullOutputRingNeitherLosesNorDuplicatesAnswers) {
  const auto events = testing::random_events(20'000 / sluice::testing::kStressScale, 21, 30);
  constexpr uint32_t kShards = 2;
  for (uint32_t index = 0; index < kShards; ++index) {
    SCOPED_TRACE(absl::StrCat("shard ", index));
    const Expected want = expected_outputs(events, index, kShards);
    IdleWaitStrategy wait(IdleConfig{.kind = IdleKind::kYield});
    InputRing input(1024, wait);
    OutputRing output(8, wait);  // tiny: the stage must stall and resume many times
    Collected unused;
    Shard shard(ProcessorConfig{}, index, kShards, unused);
    ShardStage stage(input, {}, shard, output, nullptr);
    input.add_gating_sequence(stage.sequence());
    Sequence consumed;
    output.add_gating_sequence(consumed);
    AgentRunner runner(stage, RunnerOptions{.idle = IdleConfig{.kind = IdleKind::kYield}});
    ASSERT_TRUE(runner.start().ok());

    std::vector<OutputEvent> got;
    std::atomic<bool> done{false};
    std::thread consumer([&] {
      SequenceBarrier<SingleProducerSequencer> barrier(output.sequencer(), {});
      IdleStrategy idle(IdleConfig{.kind = IdleKind::kYield});
      int64_t next = 0;
      while (static_cast<size_t>(next) < want.outputs.size()) {
        const int64_t hi = barrier.poll(next);
        if (hi < next) {
          idle.idle();
          continue;
        }
        // Slow: one item per pass, and a yield after each.
        got.push_back(output[next]);
        consumed.set(next);
        ++next;
        std::this_thread::yield();
      }
      done.store(true, std::memory_order_release);
    });
    for (size_t k = 0; k < events.size(); ++k) {
      const int64_t s = input.next();
      fill(input[s], events[k], static_cast<int64_t>(k + 1), false);
      input.publish(s);
    }
    consumer.join();
    ASSERT_TRUE(sluice::testing::eventually(
        [&] { return stage.sequence().get() == static_cast<int64_t>(events.size()) - 1; }));
    runner.stop();
    ASSERT_TRUE(runner.status().ok()) << runner.status();
    ASSERT_EQ(got.size(), want.outputs.size());
    int64_t mismatches = 0;
    for (size_t i = 0; i < got.size(); ++i) {
      if (!same(got[i], want.outputs[i]) && ++mismatches <= 5) {
        ADD_FAILURE() << "output " << i << "\n  got  " << describe(got[i]) << "\n  want "
                      << describe(want.outputs[i]);
      }
    }
    // Nothing beyond what was expected was published.
    EXPECT_EQ(output.cursor().get(), static_cast<int64_t>(want.outputs.size()) - 1);
    EXPECT_GT(stage.counters().output_full_stalls.get(), 0);
    EXPECT_EQ(stage.counters().events.get(), static_cast<int64_t>(events.size()));
    EXPECT_EQ(stage.counters().decisions.get() + stage.counters().alerts.get(),
              static_cast<int64_t>(want.outputs.size()));
  }
}

void check_captures(const std::vector<JournalEvent>& events, const std::string& journal,
                    const std::string& snapshots, uint32_t shards);

class ShardStageSnapshot : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = (fs::temp_directory_path() / "sluice-stage-XXXXXX").string();
    root_ = mkdtemp(tmpl.data());
  }
  void TearDown() override { fs::remove_all(root_); }
  std::string root_;
};

// One thread drives the stage pass by pass, feeding a few events per pass, with a one-chunk
// slice per pass: each capture spans hundreds of passes while the events keep writing to the
// state, so most chunks are copied by copy-on-write. Each file must hold the state exactly as
// of its barrier, and recovery from it must equal a replay from scratch.
// A state that grows between barriers (here from nothing to some 3 MB) outgrows the image
// buffer asked for at start: the stage asks for a bigger one while it runs, so the barrier's
// capture finds it ready instead of mapping a fresh buffer and faulting its pages in on the
// shard's thread, inside copy-on-write copies.
TEST_F(ShardStageSnapshot, AGrowingStateHasItsNextImageBufferPreparedBeforeTheBarrier) {
  const auto events = testing::random_events(300'000, 23, 1'000'000);
  auto writer = snapshot::SnapshotWriter::start({.dir = root_ + "/snapshots", .keep = 10});
  ASSERT_TRUE(writer.ok());
  IdleWaitStrategy wait(IdleConfig{.kind = IdleKind::kYield});
  InputRing input(16'384, wait);
  OutputRing output(1 << 20, wait);  // no consumer: room for every answer
  Collected unused;
  Shard shard(ProcessorConfig{}, 0, 1, unused);
  ShardStage stage(input, {}, shard, output, writer->get(), nullptr, ShardStageOptions{});
  const size_t initial = shard.capture().image_bytes();
  size_t k = 0;
  auto feed = [&](size_t until, bool barrier_last) {
    while (k < until) {
      for (int j = 0; j < 512 && k < until; ++j, ++k) {
        const int64_t s = input.next();
        fill(input[s], events[k], static_cast<int64_t>(k + 1), barrier_last && k + 1 == until);
        input.publish(s);
      }
      while (stage.sequence().get() < static_cast<int64_t>(k) - 1) stage.do_work();
    }
  };
  feed(events.size() - 1, false);
  const size_t grown = shard.capture().image_bytes();
  ASSERT_GT(grown, initial * 4);
  ASSERT_GT(grown, size_t{2} << 20) << grown;  // beyond the first buffer (2 MiB granules)
  // The writer thread populates the bigger buffer meanwhile.
  for (int i = 0; i < 500 && (*writer)->largest_pooled() < grown; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_GE((*writer)->largest_pooled(), grown);
  feed(events.size(), true);
  while (stage.snapshot_in_progress()) stage.do_work();
  ASSERT_TRUE((*writer)->flush().ok());
  EXPECT_EQ(stage.counters().snapshots_taken.get(), 1);
  EXPECT_EQ((*writer)->unprepared_acquires(), 0);
  EXPECT_EQ(stage.counters().snapshot_unprepared_buffers.get(), 0);
}

// The writer's buffers: one mapped by acquire() says so (and is counted by the stage that got
// it); back in the pool its pages are in, so the next acquire of it does not.
TEST_F(ShardStageSnapshot, AnImageBufferMappedAtTheBarrierIsCountedAndPooledOnesAreNot) {
  {
    auto writer = snapshot::SnapshotWriter::start({.dir = root_ + "/w"});
    ASSERT_TRUE(writer.ok());
    const size_t bytes = (size_t{3} << 20) + 5;
    const snapshot::ImageBuffer fresh = (*writer)->acquire(bytes);
    EXPECT_TRUE(fresh.unprepared);
    EXPECT_EQ(fresh.capacity, snapshot::SnapshotWriter::buffer_capacity(bytes));
    EXPECT_GE(fresh.capacity, bytes + bytes / 4);
    EXPECT_EQ(fresh.capacity % (size_t{2} << 20), 0);
    (*writer)->release(fresh);
    const snapshot::ImageBuffer pooled = (*writer)->acquire(bytes);
    EXPECT_FALSE(pooled.unprepared);
    EXPECT_EQ(pooled.data, fresh.data);
    EXPECT_EQ((*writer)->unprepared_acquires(), 1);
    (*writer)->release(pooled);
  }
  // A writer that pools nothing prepares nothing: every barrier maps its buffer.
  const auto events = testing::random_events(3'000, 24, 400);
  auto writer =
      snapshot::SnapshotWriter::start({.dir = root_ + "/snapshots", .max_pooled_buffers = 0});
  ASSERT_TRUE(writer.ok());
  IdleWaitStrategy wait(IdleConfig{.kind = IdleKind::kYield});
  InputRing input(4'096, wait);
  OutputRing output(1 << 14, wait);  // no consumer: room for every answer
  Collected unused;
  Shard shard(ProcessorConfig{}, 0, 1, unused);
  ShardStage stage(input, {}, shard, output, writer->get(), nullptr, ShardStageOptions{});
  for (size_t k = 0; k < events.size(); ++k) {
    const int64_t s = input.next();
    fill(input[s], events[k], static_cast<int64_t>(k + 1), (k + 1) % 1'000 == 0);
    input.publish(s);
    while (stage.sequence().get() < static_cast<int64_t>(k)) stage.do_work();
  }
  while (stage.snapshot_in_progress()) stage.do_work();
  ASSERT_TRUE((*writer)->flush().ok());
  EXPECT_EQ(stage.counters().snapshots_taken.get(), 3);
  EXPECT_EQ(stage.counters().snapshot_unprepared_buffers.get(), 3);
  EXPECT_EQ((*writer)->unprepared_acquires(), 3);
}

// ready() (ingest's gate for the next barrier) is false while a snapshot is queued or being
// written and while a prepare() is not covered by a populated buffer.
TEST_F(ShardStageSnapshot, TheWriterIsReadyOnlyWithNothingToWriteOrPrepare) {
  std::mutex mu;
  std::condition_variable cv;
  bool release = false;
  auto writer = snapshot::SnapshotWriter::start(
      {.dir = root_ + "/w", .before_commit = [&](const snapshot::Header&) {
         std::unique_lock<std::mutex> lock(mu);
         cv.wait(lock, [&] { return release; });
         return absl::OkStatus();
       }});
  ASSERT_TRUE(writer.ok());
  snapshot::SnapshotWriter& w = **writer;
  EXPECT_TRUE(w.ready().load());
  const snapshot::ImageBuffer b = w.acquire(4096);
  w.submit(snapshot::Header{.shard_count = 1, .sequence = 7}, b, 4096);
  EXPECT_FALSE(w.ready().load());  // held in before_commit until released
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  EXPECT_FALSE(w.ready().load());
  {
    std::lock_guard<std::mutex> lock(mu);
    release = true;
  }
  cv.notify_all();
  ASSERT_TRUE(w.flush().ok());
  EXPECT_TRUE(w.ready().load());
  // A prepare() is covered once a buffer that big is pooled: ready again then, not before.
  const size_t big = size_t{16} << 20;
  w.prepare(big);
  for (int i = 0; i < 1000 && !w.ready().load(); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  EXPECT_TRUE(w.ready().load());
  EXPECT_GE(w.largest_pooled(), big);
}

TEST_F(ShardStageSnapshot, CapturesSpreadOverManyPassesHoldTheStateAsOfTheirBarrier) {
  const auto events = testing::random_events(12'000, 22, 400);
  const std::string journal = root_ + "/journal";
  testing::append_journal(journal, events);
  for (uint32_t shards = 1; shards <= 4; ++shards) {
    SCOPED_TRACE(absl::StrCat(shards, " shards"));
    check_captures(events, journal, root_ + "/snapshots-" + std::to_string(shards), shards);
  }
}

void check_captures(const std::vector<JournalEvent>& events, const std::string& journal,
                    const std::string& snapshots, const uint32_t kShards) {
  const std::vector<int64_t> barriers = {3'000, 3'010, 7'777, 11'000};  // 3'010: mid-capture

  auto writer = snapshot::SnapshotWriter::start({.dir = snapshots, .keep = 10});
  ASSERT_TRUE(writer.ok());
  IdleWaitStrategy wait(IdleConfig{.kind = IdleKind::kYield});
  InputRing input(16'384, wait);
  std::vector<std::unique_ptr<OutputRing>> outputs;
  std::vector<std::unique_ptr<Shard>> shards;
  std::vector<std::unique_ptr<ShardStage>> stages;
  Collected unused;
  for (uint32_t i = 0; i < kShards; ++i) {
    outputs.push_back(std::make_unique<OutputRing>(1 << 16, wait));
    shards.push_back(std::make_unique<Shard>(ProcessorConfig{}, i, kShards, unused,
                                             StateStore::Options{.chunk_bytes = 1024}));
    stages.push_back(std::make_unique<ShardStage>(
        input, std::vector<const Sequence*>{}, *shards[i], *outputs[i], writer->get(), nullptr,
        ShardStageOptions{
            .max_batch = 5, .max_batch_snapshotting = 5, .snapshot_slice_bytes = 1024}));
  }
  // The states the files must hold: a separate set of shards stopped at each barrier.
  std::map<int64_t, std::vector<std::vector<std::byte>>> want;
  {
    Collected ignore;
    std::vector<std::unique_ptr<Shard>> ref;
    for (uint32_t i = 0; i < kShards; ++i)
      ref.push_back(std::make_unique<Shard>(ProcessorConfig{}, i, kShards, ignore,
                                            StateStore::Options{.chunk_bytes = 1024}));
    size_t b = 0;
    for (size_t k = 0; k < events.size() && b < barriers.size(); ++k) {
      for (auto& s : ref)
        s->on_event(static_cast<int64_t>(k + 1), events[k].client_id, 0, events[k].frame);
      if (static_cast<int64_t>(k + 1) == barriers[b]) {
        for (auto& s : ref) want[barriers[b]].push_back(image_of(*s));
        ++b;
      }
    }
  }
  int64_t passes_while_capturing = 0;
  size_t k = 0;
  while (k < events.size()) {
    for (int j = 0; j < 3 && k < events.size(); ++j, ++k) {
      const int64_t seq = static_cast<int64_t>(k + 1);
      const int64_t s = input.next();
      fill(input[s], events[k], seq,
           std::find(barriers.begin(), barriers.end(), seq) != barriers.end());
      input.publish(s);
    }
    for (auto& st : stages) {
      passes_while_capturing += st->snapshot_in_progress();
      st->do_work();
    }
  }
  for (int pass = 0; pass < 100'000; ++pass) {
    bool busy = false;
    for (auto& st : stages) {
      st->do_work();
      busy = busy || st->snapshot_in_progress() ||
             st->sequence().get() != static_cast<int64_t>(events.size()) - 1;
    }
    if (!busy) break;
  }
  ASSERT_TRUE((*writer)->flush().ok());
  EXPECT_GT(passes_while_capturing, 100);  // each capture spans many passes
  for (uint32_t i = 0; i < kShards; ++i) {
    const ShardCounters& c = stages[i]->counters();
    EXPECT_EQ(c.snapshots_taken.get(), static_cast<int64_t>(barriers.size()));
    EXPECT_EQ(c.snapshots_forced.get(), 1);  // 3'010 arrived while 3'000 was being copied
    EXPECT_GT(c.snapshot_cow_chunks.get(), 10);
    EXPECT_GT(c.snapshot_stall_ns_max.get(), 0);
  }
  for (int64_t s : barriers) {
    for (uint32_t i = 0; i < kShards; ++i) {
      const std::string path = snapshots + "/" + snapshot::file_name({i, kShards, s});
      auto m = snapshot::MappedSnapshot::open(path);
      ASSERT_TRUE(m.ok()) << m.status();
      EXPECT_EQ((*m)->header().sequence, s);
      const auto body = (*m)->bytes().subspan(snapshot::kHeaderSize);
      const auto& w = want[s][i];
      ASSERT_EQ(body.size(), w.size() - snapshot::kHeaderSize) << path;
      EXPECT_TRUE(std::equal(body.begin(), body.end(), w.begin() + snapshot::kHeaderSize))
          << path << " differs from the state at its barrier";
    }
  }
  // Recovery from the newest set plus the tail equals a replay from scratch.
  auto r = recover(RecoveryOptions{.snapshot_dir = snapshots,
                                   .journal_dir = journal,
                                   .shards = kShards,
                                   .store = StateStore::Options{.chunk_bytes = 1024}});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->snapshot_sequence, 11'000);
  for (uint32_t i = 0; i < kShards; ++i) {
    EXPECT_TRUE(image_of(*r->shards[i]) == image_of(*shards[i])) << "shard " << i;
  }
  // At shutdown: a snapshot of the last handled event.
  for (auto& st : stages) ASSERT_TRUE(st->snapshot_now().ok());
  for (uint32_t i = 0; i < kShards; ++i) {
    EXPECT_TRUE(fs::exists(snapshots + "/" + snapshot::file_name({i, kShards, 12'000})));
  }
}

}  // namespace
}  // namespace sluice
