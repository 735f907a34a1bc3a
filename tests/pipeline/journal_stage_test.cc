#include "pipeline/journal_stage.h"

#include <filesystem>
#include <string>

#include "core/input_event.h"
#include "core/ring_buffer.h"
#include "core/wait_strategy.h"
#include "core/wire_format.h"
#include "gtest/gtest.h"
#include "io/journal_reader.h"
#include "pipeline/agent_runner.h"
#include "pipeline/batch_event_processor.h"
#include "tests/test_util.h"

namespace sluice {
namespace {

using testing::eventually;
namespace fs = std::filesystem;

std::string make_temp_dir() {
  std::string tmpl = (fs::temp_directory_path() / "sluice-stage-XXXXXX").string();
  return mkdtemp(tmpl.data());
}

void fill(InputEvent& e, int64_t sequence) {
  e.sequence = sequence;
  e.ingest_ns = sequence * 7;
  e.client_id = 3;
  wire::Watermark w{.event_time_ns = sequence};
  e.frame_length = static_cast<uint16_t>(wire::encode(w, e.frame));
}

// A shard stand-in gated on the journal's durable sequence: it records whether it ever saw an
// event the writer had not yet made durable.
struct DurabilityChecker {
  const journal::JournalWriter* writer;
  int64_t not_durable = 0;
  int64_t seen = 0;
  void on_event(InputEvent& e, int64_t, bool) {
    if (writer->durable().get() < e.sequence) ++not_durable;
    ++seen;
  }
};

TEST(JournalStage, InSyncModeNoDownstreamStageSeesAnEventBeforeItIsDurable) {
  const std::string dir = make_temp_dir();
  auto writer = journal::JournalWriter::open(journal::WriterOptions{
      .dir = dir, .segment_size = 256 * 1024, .durability = journal::Durability::kSync,
      .max_batch_bytes = 4096});
  ASSERT_TRUE(writer.ok()) << writer.status();

  auto wait = make_yielding_wait_strategy();
  RingBuffer<InputEvent> ring(256, *wait);
  JournalStage<> journal_stage(ring, **writer);
  DurabilityChecker checker{.writer = writer->get()};
  BatchEventProcessor<InputEvent, DurabilityChecker> shard("shard", ring, checker,
                                                           {&journal_stage.durable()});
  ring.add_gating_sequence(journal_stage.sequence());
  ring.add_gating_sequence(shard.sequence());

  const RunnerOptions yielding{.idle = IdleConfig{.kind = IdleKind::kYield}};
  AgentRunner journal_runner(journal_stage, yielding);
  AgentRunner shard_runner(shard, yielding);
  ASSERT_TRUE(journal_runner.start().ok());
  ASSERT_TRUE(shard_runner.start().ok());
  const int64_t total = 3000;
  const int64_t base = (*writer)->next_sequence();  // ring s holds journal base + s
  for (int64_t i = 0; i < total; ++i) {
    int64_t s;
    // try_next: if the journal stage died the ring never drains, and the test must fail, not hang.
    ASSERT_TRUE(eventually([&] { return ring.try_next(&s) == ClaimResult::kOk; }))
        << journal_runner.status();
    fill(ring[s], base + i);
    ring.publish(s);
  }
  ASSERT_TRUE(eventually([&] { return shard.sequence().get() == total - 1; }));
  shard_runner.stop();
  journal_runner.stop();
  EXPECT_TRUE(journal_runner.status().ok()) << journal_runner.status();
  EXPECT_EQ(checker.seen, total);
  EXPECT_EQ(checker.not_durable, 0);
  EXPECT_EQ(journal_stage.durable().get(), total - 1);
  EXPECT_EQ((*writer)->durable().get(), total);

  auto scan = journal::scan_journal(dir);
  ASSERT_TRUE(scan.ok()) << scan.status();
  EXPECT_EQ(scan->last_sequence, total);
  fs::remove_all(dir);
}

TEST(JournalStage, AWriterFailureIsReportedAndStopsTheStage) {
  const std::string dir = make_temp_dir();
  auto writer = journal::JournalWriter::open(journal::WriterOptions{.dir = dir});
  ASSERT_TRUE(writer.ok());
  auto wait = make_yielding_wait_strategy();
  RingBuffer<InputEvent> ring(64, *wait);
  JournalStage<> journal_stage(ring, **writer);
  ring.add_gating_sequence(journal_stage.sequence());

  // A slot out of sequence is a bug upstream: the writer refuses it and the stage fails loudly.
  const int64_t s = ring.next();
  fill(ring[s], 5);
  ring.publish(s);
  absl::Status reported;
  AgentRunner runner(journal_stage, RunnerOptions{.idle = IdleConfig{.kind = IdleKind::kYield}},
                     [&](std::string_view, const absl::Status& st) { reported = st; });
  ASSERT_TRUE(runner.start().ok());
  ASSERT_TRUE(eventually([&] { return !runner.is_running(); }));
  runner.stop();
  EXPECT_FALSE(runner.status().ok());
  EXPECT_NE(runner.status().message().find("expected sequence 1"), std::string::npos)
      << runner.status();
  EXPECT_EQ(journal_stage.durable().get(), Sequence::kInitialValue);
  fs::remove_all(dir);
}

// Driven on the test's thread: every event gets one ingest-to-durable latency, and the counters
// follow the writer.
TEST(JournalStage, CountsEventsAndRecordsIngestToDurableLatency) {
  const std::string dir = make_temp_dir();
  auto writer = journal::JournalWriter::open(journal::WriterOptions{
      .dir = dir, .segment_size = 256 * 1024, .durability = journal::Durability::kBatch});
  ASSERT_TRUE(writer.ok()) << writer.status();
  auto wait = make_yielding_wait_strategy();
  RingBuffer<InputEvent> ring(256, *wait);
  JournalCounters counters;
  SharedHistogram latency;
  JournalStage<> stage(ring, **writer, {}, &counters, &latency);
  ring.add_gating_sequence(stage.sequence());
  constexpr int64_t kEvents = 1000;
  int64_t published = 0;
  while (stage.durable().get() < kEvents - 1) {
    int64_t s;
    if (published < kEvents && ring.try_next(&s) == ClaimResult::kOk) {
      fill(ring[s], published + 1);
      ring[s].receive_ticks = now_ticks();
      ring.publish(s);
      ++published;
    }
    stage.do_work();
  }
  EXPECT_EQ(counters.events.get(), kEvents);
  EXPECT_EQ(counters.durable_sequence.get(), kEvents);
  EXPECT_EQ(counters.written_sequence.get(), kEvents);
  EXPECT_EQ(counters.failed.get(), 0);
  EXPECT_EQ(latency.total_count(), kEvents);
  EXPECT_GT(latency.max(), 0);
  ASSERT_TRUE((*writer)->close().ok());
  fs::remove_all(dir);
}

}  // namespace
}  // namespace sluice
