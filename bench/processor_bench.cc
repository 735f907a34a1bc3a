// processor_bench: per-shard processor throughput and replay throughput.
//
//   Processor/<fraud|risk>/<accounts>[/noprefetch]
//       One Shard (index 0 of 1) handles a stream of TRANSACTIONs (fraud) or ORDERs (risk) from
//       bench/workload.h, generated 64 at a time into a buffer and handed to on_event with the
//       shard's prefetch() 4 events ahead, as ShardStage does (/noprefetch: without). The state
//       is warmed to its steady size first (3 events per account). items_per_second = events/s.
//   Generate
//       The generator alone (included in the Processor numbers).
//   Replay/<accounts>
//       run_replay() (the `sluice replay` path: journal reader with its read-ahead thread, one
//       shard, digest) over a 10M-event mixed journal in the page cache, written once per
//       process into $REPLAY_BENCH_DIR (default ./bench-replay-tmp, removed at exit).
//   Replay/read_here/<accounts>
//       The same with the reader reading every window on the replaying thread.
//   Replay/shards:2/<accounts>
//       The same with two shards, each on its own thread with its own journal reader (what
//       `sluice replay --shards 2` does without --decisions-out on a machine of two or more CPUs).
//   Every Replay and JournalReadOnly run records the placement of the two vCPUs before and
//   after it (cl_rtt_before_ns, cl_rtt_after_ns: bench/run_conditions.h): the read-ahead
//   thread's window is read on the other CPU, which costs more when the CPUs are "far".
//   JournalReadOnly[/read_ahead]/<accounts>
//       A JournalReader over the same journal, nothing else: the reader's share (/read_ahead:
//       with its read-ahead thread reading and checking the next window).
#include <benchmark/benchmark.h>

#include <array>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <memory>
#include <string>

#include "bench/run_conditions.h"
#include "bench/workload.h"
#include "core/clock.h"
#include "io/journal_reader.h"
#include "io/journal_writer.h"
#include "pipeline/keyed_processors.h"
#include "pipeline/recovery.h"
#include "pipeline/replay.h"

namespace sluice {
namespace {

constexpr int64_t kBatchEvents = 2'000'000;
constexpr int64_t kReplayEvents = 10'000'000;

class CountingSink final : public DecisionSink {
 public:
  void on_decision(const DecisionRecord& d) override {
    verdicts_ += static_cast<int64_t>(d.verdict);
  }
  void on_alert(const AlertRecord&) override { ++alerts_; }
  int64_t verdicts_ = 0;
  int64_t alerts_ = 0;
};

struct Buffered {
  std::array<std::byte, 64> frame;
  size_t length;
};

void run_events(Shard& shard, bench::EventGen& gen, int64_t n, bool prefetch) {
  constexpr int kChunk = 64, kAhead = 4;
  std::array<Buffered, kChunk> buf;
  for (int64_t done = 0; done < n; done += kChunk) {
    for (auto& b : buf) b.length = gen.next(b.frame.data());
    for (int i = 0; i < kChunk; ++i) {
      if (prefetch && i + kAhead < kChunk) {
        shard.prefetch({buf[i + kAhead].frame.data(), buf[i + kAhead].length});
      }
      shard.on_event(done + i + 1, 1, 0, {buf[i].frame.data(), buf[i].length});
    }
  }
}

void BM_Processor(benchmark::State& state, bench::Mix mix, bool prefetch) {
  const auto accounts = static_cast<uint64_t>(state.range(0));
  CountingSink sink;
  auto shard = std::make_unique<Shard>(ProcessorConfig{}, 0, 1, sink);
  bench::EventGen gen(accounts, mix);
  run_events(*shard, gen, bench::warmup_events(accounts), true);
  for (auto _ : state) {
    const int64_t start = now_ns();
    run_events(*shard, gen, kBatchEvents, prefetch);
    state.SetIterationTime(static_cast<double>(now_ns() - start) / 1e9);
  }
  benchmark::DoNotOptimize(sink.verdicts_);
  state.SetItemsProcessed(state.iterations() * kBatchEvents);
  const ShardStateCounts c = shard->state_counts();
  state.counters["accounts_in_state"] =
      static_cast<double>(mix == bench::Mix::kFraud ? c.accounts : c.positions / 2);
  state.counters["alerts_per_event"] =
      static_cast<double>(sink.alerts_) /
      static_cast<double>(state.iterations() * kBatchEvents + bench::warmup_events(accounts));
}

void BM_Generate(benchmark::State& state) {
  bench::EventGen gen(1'000'000, bench::Mix::kMixed);
  std::array<std::byte, 64> frame;
  size_t sink = 0;
  for (auto _ : state) {
    const int64_t start = now_ns();
    for (int64_t i = 0; i < kBatchEvents; ++i) sink += gen.next(frame.data());
    state.SetIterationTime(static_cast<double>(now_ns() - start) / 1e9);
  }
  benchmark::DoNotOptimize(sink);
  state.SetItemsProcessed(state.iterations() * kBatchEvents);
}

// ---- replay ------------------------------------------------------------------------------------

std::string scratch_root() {
  const char* env = std::getenv("REPLAY_BENCH_DIR");
  return env != nullptr ? env : "bench-replay-tmp";
}

struct ScratchCleanup {
  ~ScratchCleanup() {
    std::error_code ec;
    if (created) std::filesystem::remove_all(scratch_root(), ec);
  }
  bool created = false;
} cleanup;

// The journal of `accounts`, written on first use.
const std::string& journal_for(uint64_t accounts, std::string* error) {
  static std::map<uint64_t, std::string> dirs;
  auto it = dirs.find(accounts);
  if (it != dirs.end()) return it->second;
  const std::string dir = scratch_root() + "/journal-" + std::to_string(accounts);
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  cleanup.created = true;
  auto w = journal::JournalWriter::open(
      journal::WriterOptions{.dir = dir, .durability = journal::Durability::kNone});
  if (!w.ok()) {
    *error = std::string(w.status().message());
    static const std::string empty;
    return empty;
  }
  bench::EventGen gen(accounts, bench::Mix::kMixed);
  std::array<std::byte, 64> frame;
  for (int64_t seq = 1; seq <= kReplayEvents; ++seq) {
    const size_t n = gen.next(frame.data());
    while ((*w)->append(journal::RecordMeta{seq, seq, 1}, {frame.data(), n}) ==
           journal::AppendResult::kFull) {
      (*w)->poll();
    }
  }
  if (absl::Status s = (*w)->close(); !s.ok()) *error = std::string(s.message());
  // Read it once so it is in the page cache.
  auto r = journal::scan_journal(dir);
  if (!r.ok()) *error = std::string(r.status().message());
  return dirs[accounts] = dir;
}

void BM_Replay(benchmark::State& state, uint32_t shards, bool read_ahead) {
  std::string error;
  const std::string& dir = journal_for(static_cast<uint64_t>(state.range(0)), &error);
  if (!error.empty()) {
    state.SkipWithError(error.c_str());
    return;
  }
  int64_t events = 0;
  const bench::PlacementProbe placement;
  for (auto _ : state) {
    auto r =
        run_replay(ReplayOptions{.journal_dir = dir, .shards = shards, .read_ahead = read_ahead});
    if (!r.ok()) {
      state.SkipWithError(std::string(r.status().message()).c_str());
      return;
    }
    state.SetIterationTime(r->seconds);
    events += r->events;
    if (r->events != kReplayEvents) state.SkipWithError("replay read too few events");
  }
  state.SetItemsProcessed(events);
  placement.record(state);
}

void BM_JournalReadOnly(benchmark::State& state, bool read_ahead) {
  std::string error;
  const std::string& dir = journal_for(static_cast<uint64_t>(state.range(0)), &error);
  if (!error.empty()) {
    state.SkipWithError(error.c_str());
    return;
  }
  int64_t events = 0;
  uint64_t sink = 0;
  const bench::PlacementProbe placement;
  for (auto _ : state) {
    const int64_t start = now_ns();
    auto reader = journal::JournalReader::open(dir);
    (*reader)->set_read_ahead(read_ahead);
    journal::Record rec;
    int64_t n = 0;
    while ((*reader)->next(&rec) == journal::ReadResult::kRecord) {
      sink += rec.frame.size();
      ++n;
    }
    state.SetIterationTime(static_cast<double>(now_ns() - start) / 1e9);
    events += n;
  }
  benchmark::DoNotOptimize(sink);
  state.SetItemsProcessed(events);
  placement.record(state);
}

void accounts3(benchmark::internal::Benchmark* b) {
  b->Arg(10'000)
      ->Arg(1'000'000)
      ->Arg(10'000'000)
      ->UseManualTime()
      ->Unit(benchmark::kMillisecond)
      ->Iterations(3);
}

// The journal benchmarks: one pass over a 10M-event journal per repetition.
void journal_accounts(benchmark::internal::Benchmark* b) {
  b->Arg(10'000)->Arg(1'000'000)->UseManualTime()->Unit(benchmark::kMillisecond)->Iterations(1);
}

BENCHMARK(BM_Generate)
    ->Name("Generate")
    ->UseManualTime()
    ->Unit(benchmark::kMillisecond)
    ->Iterations(3);
BENCHMARK_CAPTURE(BM_Processor, fraud, bench::Mix::kFraud, true)
    ->Name("Processor/fraud")
    ->Apply(accounts3);
BENCHMARK_CAPTURE(BM_Processor, risk, bench::Mix::kRisk, true)
    ->Name("Processor/risk")
    ->Apply(accounts3);
BENCHMARK_CAPTURE(BM_Processor, fraud_np, bench::Mix::kFraud, false)
    ->Name("Processor/fraud/noprefetch")
    ->Arg(1'000'000)
    ->UseManualTime()
    ->Unit(benchmark::kMillisecond)
    ->Iterations(3);
BENCHMARK_CAPTURE(BM_Processor, risk_np, bench::Mix::kRisk, false)
    ->Name("Processor/risk/noprefetch")
    ->Arg(1'000'000)
    ->UseManualTime()
    ->Unit(benchmark::kMillisecond)
    ->Iterations(3);
BENCHMARK_CAPTURE(BM_JournalReadOnly, read_here, false)
    ->Name("JournalReadOnly")
    ->Apply(journal_accounts);
BENCHMARK_CAPTURE(BM_JournalReadOnly, read_ahead, true)
    ->Name("JournalReadOnly/read_ahead")
    ->Apply(journal_accounts);
BENCHMARK_CAPTURE(BM_Replay, one_shard, 1u, true)->Name("Replay")->Apply(journal_accounts);
BENCHMARK_CAPTURE(BM_Replay, one_shard_read_here, 1u, false)
    ->Name("Replay/read_here")
    ->Apply(journal_accounts);
BENCHMARK_CAPTURE(BM_Replay, two_shards, 2u, true)
    ->Name("Replay/shards:2")
    ->Apply(journal_accounts);

}  // namespace
}  // namespace sluice

BENCHMARK_MAIN();
