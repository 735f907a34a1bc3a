// snapshot_bench: what snapshots cost a shard with 1M and 10M accounts of state, and how long
// recovery takes.
//
//   SnapshotCapture/<accounts>   a stop-the-world copy of the whole state into an image (what a
//                                non-incremental snapshot would stall the shard for)
//   SnapshotWrite/<accounts>     the writer's part, off the shard's thread: body CRC, write,
//                                fsync, rename, directory fsync
//   SnapshotRestore/<accounts>   map the file, check its CRC, restore a fresh shard from it
//   SnapshotStall/<accounts>     a ShardStage (default options) under continuous load (256 new
//                                events published per benchmark pass, drained by do_work)
//                                takes an incremental copy-on-write snapshot: counters
//                                stall_max_us (the most snapshot work in one pass, the shard's
//                                stall, as ShardCounters reports it), pass_{p50,p99,max}_us
//                                (whole passes while the capture ran) beside
//                                pass_{p50,p99,max}_us_before (500 passes without a snapshot),
//                                pass_cpu_{p50,max}_us[_before]: the same passes in the
//                                thread's CPU time (preemption left out, page faults in),
//                                capture_ms (barrier to complete image), passes
//   Recovery/1M-accounts/10M-journal/1M-tail
//                                recover(): newest snapshot (at 9M) + the last 1M events of a
//                                10M-event journal, everything in the page cache; the
//                                journal reader with its read-ahead thread (/1) or without
//                                (/read_here/0); cl_rtt_{before,after}_ns: the placement
//
// The state is the mixed workload of bench/workload.h warmed to steady size (3 events per
// account), built once per account count. Scratch files: $SNAPSHOT_BENCH_DIR (default
// ./bench-snapshot-tmp), removed at exit.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstdlib>
#include <ctime>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "bench/run_conditions.h"
#include "bench/workload.h"
#include "core/clock.h"
#include "core/idle_strategy.h"
#include "core/wait_strategy.h"
#include "io/journal_writer.h"
#include "io/snapshot_file.h"
#include "io/snapshot_writer.h"
#include "pipeline/keyed_processors.h"
#include "pipeline/recovery.h"
#include "pipeline/shard_stage.h"

namespace sluice {
namespace {

class NullSink final : public DecisionSink {
 public:
  void on_decision(const DecisionRecord&) override {}
  void on_alert(const AlertRecord&) override {}
};

std::string scratch() {
  const char* env = std::getenv("SNAPSHOT_BENCH_DIR");
  return env != nullptr ? env : "bench-snapshot-tmp";
}
struct Cleanup {
  ~Cleanup() {
    std::error_code ec;
    std::filesystem::remove_all(scratch(), ec);
  }
} cleanup;

// Knobs for trying other settings: SNAPSHOT_CHUNK (bytes, the copy-on-write chunk),
// SNAPSHOT_BATCH (events per pass while a capture runs), SNAPSHOT_SLICE (bytes copied per pass).
int64_t knob(const char* name, int64_t fallback) {
  const char* v = std::getenv(name);
  return v != nullptr ? std::atoll(v) : fallback;
}

double ms_since(int64_t start) { return static_cast<double>(now_ns() - start) / 1e6; }

void feed(Shard& shard, bench::EventGen& gen, int64_t n, int64_t* seq) {
  std::array<std::byte, 64> frame;
  for (int64_t i = 0; i < n; ++i) {
    const size_t len = gen.next(frame.data());
    shard.on_event(++*seq, 1, 0, {frame.data(), len});
  }
}

// The warmed state of one account count, kept between benchmarks of that count.
struct Fixture {
  uint64_t accounts = 0;
  NullSink sink;
  std::unique_ptr<Shard> shard;
  std::unique_ptr<bench::EventGen> gen;
  int64_t seq = 0;
  std::unique_ptr<snapshot::SnapshotWriter> writer;
  std::string dir;
};

Fixture& fixture(uint64_t accounts) {
  static Fixture f;
  if (f.accounts != accounts) {
    f.shard.reset();
    f.writer.reset();
    f.accounts = accounts;
    f.seq = 0;
    f.dir = scratch() + "/snapshots-" + std::to_string(accounts);
    std::filesystem::remove_all(f.dir);
    std::filesystem::create_directories(f.dir);
    f.writer = *snapshot::SnapshotWriter::start({.dir = f.dir, .keep = 1});
    f.shard = std::make_unique<Shard>(
        ProcessorConfig{}, 0, 1, f.sink,
        StateStore::Options{
            .chunk_bytes = static_cast<size_t>(
                knob("SNAPSHOT_CHUNK", static_cast<int64_t>(StateStore::Options{}.chunk_bytes)))});
    f.gen = std::make_unique<bench::EventGen>(accounts, bench::Mix::kMixed);
    feed(*f.shard, *f.gen, bench::warmup_events(accounts), &f.seq);
  }
  return f;
}

void BM_SnapshotCapture(benchmark::State& state) {
  Fixture& f = fixture(static_cast<uint64_t>(state.range(0)));
  StateCapture& c = f.shard->capture();
  size_t bytes = 0;
  for (auto _ : state) {
    const snapshot::ImageBuffer b = f.writer->acquire(c.image_bytes());
    const int64_t start = now_ns();
    c.begin(b.data, b.capacity);
    c.finish();
    bytes = c.take().second;
    state.SetIterationTime(static_cast<double>(now_ns() - start) / 1e9);
    c.take_work_ticks();
    f.writer->release(b);
  }
  state.counters["image_mb"] = static_cast<double>(bytes) / 1e6;
  state.counters["keys"] = static_cast<double>(f.shard->state_counts().accounts);
}

void BM_SnapshotWrite(benchmark::State& state) {
  Fixture& f = fixture(static_cast<uint64_t>(state.range(0)));
  for (auto _ : state) {
    feed(*f.shard, *f.gen, 1'000, &f.seq);  // a new sequence each time
    StateCapture& c = f.shard->capture();
    const snapshot::ImageBuffer b = f.writer->acquire(c.image_bytes());
    c.begin(b.data, b.capacity);
    c.finish();
    const size_t size = c.take().second;
    c.take_work_ticks();
    const int64_t start = now_ns();
    const absl::Status s =
        f.writer->write_now(snapshot_header(*f.shard, f.shard->last_sequence()), b, size);
    state.SetIterationTime(static_cast<double>(now_ns() - start) / 1e9);
    if (!s.ok()) state.SkipWithError(std::string(s.message()).c_str());
    state.counters["file_mb"] = static_cast<double>(size) / 1e6;
  }
}

void BM_SnapshotRestore(benchmark::State& state) {
  Fixture& f = fixture(static_cast<uint64_t>(state.range(0)));
  if (absl::Status s = write_snapshot(*f.shard, *f.writer); !s.ok()) {
    state.SkipWithError(std::string(s.message()).c_str());
    return;
  }
  const std::string path = f.dir + "/" + snapshot::file_name({0, 1, f.shard->last_sequence()});
  for (auto _ : state) {
    NullSink sink;
    const int64_t start = now_ns();
    auto m = snapshot::MappedSnapshot::open(path, true);
    if (!m.ok()) {
      state.SkipWithError(std::string(m.status().message()).c_str());
      return;
    }
    const double verify_ms = ms_since(start);
    auto shard = std::make_unique<Shard>(ProcessorConfig{}, 0, 1, sink);
    const absl::Status s = shard->restore((*m)->bytes());
    state.SetIterationTime(static_cast<double>(now_ns() - start) / 1e9);
    if (!s.ok()) state.SkipWithError(std::string(s.message()).c_str());
    state.counters["map_verify_ms"] = verify_ms;
    state.counters["file_mb"] = static_cast<double>((*m)->bytes().size()) / 1e6;
  }
}

// CPU time of the calling thread (it stops while the thread is preempted; page faults count).
int64_t thread_cpu_ns() {
  timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
}

struct PassTime {
  int64_t wall;
  int64_t cpu;
};

void BM_SnapshotStall(benchmark::State& state) {
  Fixture& f = fixture(static_cast<uint64_t>(state.range(0)));
  IdleWaitStrategy wait(IdleConfig{.kind = IdleKind::kYield});
  ShardStage::InputRing input(1 << 14, wait);
  ShardStage::OutputRing output(1 << 16, wait);
  ShardCounters counters;
  ShardStageOptions options;
  options.max_batch_snapshotting = knob("SNAPSHOT_BATCH", options.max_batch_snapshotting);
  options.snapshot_slice_bytes = static_cast<size_t>(
      knob("SNAPSHOT_SLICE", static_cast<int64_t>(options.snapshot_slice_bytes)));
  ShardStage stage(input, {}, *f.shard, output, f.writer.get(), &counters, options);
  input.add_gating_sequence(stage.sequence());
  Sequence consumed;
  output.add_gating_sequence(consumed);
  constexpr int kPerPass = 256;
  auto pass = [&](bool barrier) {
    for (int i = 0; i < kPerPass; ++i) {
      const int64_t s = input.next();
      InputEvent& e = input[s];
      e.frame_length = static_cast<uint16_t>(f.gen->next(e.frame.data()));
      e.sequence = ++f.seq;
      e.client_id = 1;
      e.flags = barrier && i == 0 ? kInputSnapshotAfter : 0;
      input.publish(s);
    }
    const int64_t start = now_ns();
    const int64_t cpu_start = thread_cpu_ns();
    while (stage.sequence().get() < input.cursor().get()) stage.do_work();
    const PassTime took{now_ns() - start, thread_cpu_ns() - cpu_start};
    consumed.set(output.cursor().get());
    return took;
  };
  auto pct = [](std::vector<int64_t> v, double p) {
    if (v.empty()) return 0.0;
    std::sort(v.begin(), v.end());
    return static_cast<double>(v[static_cast<size_t>(p * static_cast<double>(v.size() - 1))]) / 1e3;
  };
  // Wall and CPU time of passes: the split keeps what the snapshot costs apart from the time
  // the thread spent preempted (which the wall time, and the stage's own TSC-based stall
  // counter, include).
  std::vector<int64_t> before, before_cpu;
  for (int i = 0; i < 500; ++i) {
    const PassTime t = pass(false);
    before.push_back(t.wall);
    before_cpu.push_back(t.cpu);
  }
  for (auto _ : state) {
    const int64_t start = now_ns();
    std::vector<int64_t> during, during_cpu;
    for (bool first = true; first || stage.snapshot_in_progress(); first = false) {
      const PassTime t = pass(first);
      during.push_back(t.wall);
      during_cpu.push_back(t.cpu);
    }
    const double capture_ms = ms_since(start);
    state.SetIterationTime(static_cast<double>(counters.snapshot_stall_ns_last.get()) / 1e9);
    state.counters["stall_max_us"] =
        static_cast<double>(counters.snapshot_stall_ns_last.get()) / 1e3;
    state.counters["capture_ms"] = capture_ms;
    state.counters["passes"] = static_cast<double>(during.size());
    state.counters["pass_p50_us"] = pct(during, 0.5);
    state.counters["pass_p99_us"] = pct(during, 0.99);
    state.counters["pass_max_us"] = pct(during, 1.0);
    state.counters["pass_p50_us_before"] = pct(before, 0.5);
    state.counters["pass_p99_us_before"] = pct(before, 0.99);
    state.counters["pass_max_us_before"] = pct(before, 1.0);
    state.counters["pass_cpu_p50_us"] = pct(during_cpu, 0.5);
    state.counters["pass_cpu_max_us"] = pct(during_cpu, 1.0);
    state.counters["pass_cpu_p50_us_before"] = pct(before_cpu, 0.5);
    state.counters["pass_cpu_max_us_before"] = pct(before_cpu, 1.0);
    if (!f.writer->flush().ok()) state.SkipWithError("snapshot write failed");
  }
  state.counters["cow_chunks_total"] = static_cast<double>(counters.snapshot_cow_chunks.get());
  state.counters["growth_chunks_total"] = static_cast<double>(f.shard->capture().growth_copies());
}

void BM_Recovery(benchmark::State& state) {
  constexpr uint64_t kAccounts = 1'000'000;
  constexpr int64_t kJournal = 10'000'000, kSnapshotAt = 9'000'000;
  const std::string root = scratch() + "/recovery";
  static bool built = false;
  if (!built) {
    std::filesystem::remove_all(root);
    std::filesystem::create_directories(root + "/snapshots");
    auto w = journal::JournalWriter::open(
        journal::WriterOptions{.dir = root + "/journal", .durability = journal::Durability::kNone});
    auto writer = snapshot::SnapshotWriter::start({.dir = root + "/snapshots"});
    if (!w.ok() || !writer.ok()) {
      state.SkipWithError("cannot create the journal or the snapshot directory");
      return;
    }
    NullSink sink;
    Shard shard(ProcessorConfig{}, 0, 1, sink);
    bench::EventGen gen(kAccounts, bench::Mix::kMixed);
    std::array<std::byte, 64> frame;
    for (int64_t seq = 1; seq <= kJournal; ++seq) {
      const size_t n = gen.next(frame.data());
      while ((*w)->append(journal::RecordMeta{seq, seq, 1}, {frame.data(), n}) ==
             journal::AppendResult::kFull) {
        (*w)->poll();
      }
      if (seq <= kSnapshotAt) shard.on_event(seq, 1, 0, {frame.data(), n});
      if (seq == kSnapshotAt && !write_snapshot(shard, **writer).ok()) {
        state.SkipWithError("snapshot failed");
        return;
      }
    }
    if (!(*w)->close().ok()) state.SkipWithError("journal close failed");
    built = true;
  }
  const bench::PlacementProbe placement;
  for (auto _ : state) {
    const int64_t start = now_ns();
    auto r = recover(RecoveryOptions{.snapshot_dir = root + "/snapshots",
                                     .journal_dir = root + "/journal",
                                     .shards = 1,
                                     .read_ahead = state.range(0) != 0});
    state.SetIterationTime(static_cast<double>(now_ns() - start) / 1e9);
    if (!r.ok() || r->snapshot_sequence != kSnapshotAt || r->last_sequence != kJournal) {
      state.SkipWithError("recovery did not use the snapshot or stopped early");
      return;
    }
    state.counters["load_ms"] = r->load_seconds * 1e3;
    state.counters["tail_ms"] = r->replay_seconds * 1e3;
    state.counters["tail_events_per_s"] =
        static_cast<double>(r->replayed_events) / r->replay_seconds;
  }
  placement.record(state);
}

// Grouped by account count (the state is rebuilt when it changes), so no random interleaving.
void register_all() {
  for (int64_t a : {1'000'000, 10'000'000}) {
    benchmark::RegisterBenchmark("SnapshotCapture", BM_SnapshotCapture)
        ->Arg(a)
        ->UseManualTime()
        ->Unit(benchmark::kMillisecond)
        ->Iterations(3);
    benchmark::RegisterBenchmark("SnapshotWrite", BM_SnapshotWrite)
        ->Arg(a)
        ->UseManualTime()
        ->Unit(benchmark::kMillisecond)
        ->Iterations(3);
    benchmark::RegisterBenchmark("SnapshotRestore", BM_SnapshotRestore)
        ->Arg(a)
        ->UseManualTime()
        ->Unit(benchmark::kMillisecond)
        ->Iterations(3);
    // One snapshot per repetition: run with --benchmark_repetitions and read the medians.
    benchmark::RegisterBenchmark("SnapshotStall", BM_SnapshotStall)
        ->Arg(a)
        ->UseManualTime()
        ->Unit(benchmark::kMicrosecond)
        ->Iterations(1);
  }
  benchmark::RegisterBenchmark("Recovery/1M-accounts/10M-journal/1M-tail", BM_Recovery)
      ->Arg(1)
      ->UseManualTime()
      ->Unit(benchmark::kMillisecond)
      ->Iterations(3);
  benchmark::RegisterBenchmark("Recovery/1M-accounts/10M-journal/1M-tail/read_here", BM_Recovery)
      ->Arg(0)
      ->UseManualTime()
      ->Unit(benchmark::kMillisecond)
      ->Iterations(3);
}

}  // namespace
}  // namespace sluice

int main(int argc, char** argv) {
  sluice::register_all();
  benchmark::Initialize(&argc, argv);
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
