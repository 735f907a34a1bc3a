#include "pipeline/pipeline_demo.h"

#include <algorithm>
#include <memory>
#include <ostream>
#include <string>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "core/clock.h"
#include "core/ring_buffer.h"
#include "core/wait_strategy.h"
#include "pipeline/agent_runner.h"
#include "pipeline/batch_event_processor.h"
#include "pipeline/composite_agent.h"

namespace sluice {
namespace {

struct DemoEvent {
  int64_t id = 0;
  int64_t publish_ns = 0;
  int64_t a = 0;  // written by stage A
  int64_t b = 0;  // written by stage B
};

// Stage A and B each derive a value from the event; C checks both, so a stage that ran out of
// order (B before A in the pipeline, C before either) is caught.
struct StageA {
  void on_event(DemoEvent& e, int64_t, bool) { e.a = e.id * 3; }
};

struct StageB {
  bool after_a;  // pipeline: B reads A's output; diamond: B runs beside A
  void on_event(DemoEvent& e, int64_t, bool) { e.b = (after_a ? e.a : e.id) + 7; }
};

struct StageC {
  bool pipeline;
  int64_t expected_id = 0;
  int64_t errors = 0;
  Histogram* latency = nullptr;
  std::atomic<int64_t> seen{0};  // read by the main thread to know when a phase drained

  void on_event(DemoEvent& e, int64_t, bool end_of_batch) {
    const int64_t want_b = (pipeline ? e.id * 3 : e.id) + 7;
    if (e.id != expected_id || e.a != e.id * 3 || e.b != want_b) ++errors;
    ++expected_id;
    latency->record(now_ns() - e.publish_ns);
    // Single writer: relaxed load + release store, once per batch.
    if (end_of_batch) seen.store(expected_id, std::memory_order_release);
  }
};

// Publishes events: unpaced (whole batches as fast as the ring takes them) or at a fixed rate.
class SourceAgent final : public Agent {
 public:
  explicit SourceAgent(RingBuffer<DemoEvent>& ring) : ring_(ring) {}

  std::string_view name() const override { return "source"; }

  void start_phase(int64_t rate, int64_t stop_after_ns) {
    rate_ = rate;
    phase_start_ns_ = now_ns();
    stop_ns_ = phase_start_ns_ + stop_after_ns;
    phase_published_ = 0;
  }

  int do_work() override {
    const int64_t now = now_ns();
    if (now >= stop_ns_) return 0;
    int64_t want = kBatch;
    if (rate_ > 0) {
      const int64_t due = (now - phase_start_ns_) * rate_ / 1'000'000'000 + 1;
      want = std::min<int64_t>(due - phase_published_, kBatch);
      if (want <= 0) return 0;
    }
    int64_t hi;
    if (ring_.try_next(want, &hi) != ClaimResult::kOk) return 0;
    const int64_t lo = hi - want + 1;
    const int64_t stamp = now_ns();
    for (int64_t s = lo; s <= hi; ++s) {
      DemoEvent& e = ring_[s];
      e.id = s;
      e.publish_ns = stamp;
    }
    ring_.publish(lo, hi);
    phase_published_ += want;
    published_.store(hi + 1, std::memory_order_release);
    return static_cast<int>(want);
  }

  bool phase_over() const { return now_ns() >= stop_ns_; }
  int64_t published() const { return published_.load(std::memory_order_acquire); }

 private:
  static constexpr int64_t kBatch = 64;
  RingBuffer<DemoEvent>& ring_;
  int64_t rate_ = 0;
  // Phase parameters are set by the main thread before the source's runner starts or while
  // it is stopped between phases (AgentRunner start/join order the accesses).
  int64_t phase_start_ns_ = 0;
  int64_t stop_ns_ = 0;
  int64_t phase_published_ = 0;
  std::atomic<int64_t> published_{0};
};

std::string cpu_name(const std::vector<int>& cpus, size_t i) {
  return i < cpus.size() ? absl::StrCat("cpu ", cpus[i]) : std::string("unpinned");
}

}  // namespace

absl::StatusOr<DemoReport> run_pipeline_demo(const DemoOptions& options) {
  const bool pipeline = options.topology == DemoTopology::kPipeline;
  auto wait = std::make_unique<IdleWaitStrategy>(options.idle);
  RingBuffer<DemoEvent> ring(options.ring_size, *wait);

  StageA stage_a;
  StageB stage_b{.after_a = pipeline};
  StageC stage_c{.pipeline = pipeline};
  // Bounded batches so the three stages sharing a thread take turns and latency stays low.
  constexpr int64_t kMaxBatch = 256;
  BatchEventProcessor<DemoEvent, StageA> a("stage-a", ring, stage_a, {}, kMaxBatch);
  BatchEventProcessor<DemoEvent, StageB> b(
      "stage-b", ring, stage_b,
      pipeline ? std::vector<const Sequence*>{&a.sequence()} : std::vector<const Sequence*>{},
      kMaxBatch);
  BatchEventProcessor<DemoEvent, StageC> c(
      "stage-c", ring, stage_c,
      pipeline ? std::vector<const Sequence*>{&b.sequence()}
               : std::vector<const Sequence*>{&a.sequence(), &b.sequence()},
      kMaxBatch);
  ring.add_gating_sequence(c.sequence());

  SourceAgent source(ring);
  CompositeAgent stages({&a, &b, &c});

  DemoReport report;
  report.mapping = absl::StrFormat(
      "thread 'source' (%s): source agent; thread 'stages' (%s): %s as %s; idle %s",
      cpu_name(options.cpus, 0), cpu_name(options.cpus, 1), stages.name(),
      pipeline ? "pipeline A->B->C" : "diamond A,B->C", idle_kind_name(options.idle.kind));

  absl::Status failure;
  auto on_error = [&failure](std::string_view, const absl::Status& s) {
    if (failure.ok()) failure = s;
  };
  RunnerOptions stage_options{.idle = options.idle, .thread_name = "stages"};
  if (options.cpus.size() > 1) stage_options.cpu = options.cpus[1];
  AgentRunner stage_runner(stages, stage_options, on_error);
  if (absl::Status s = stage_runner.start(); !s.ok()) return s;

  auto run_phase = [&](DemoPhase& phase, int64_t rate, double seconds) -> absl::Status {
    stage_c.latency = &phase.latency_ns;
    const int64_t first = source.published();
    source.start_phase(rate, static_cast<int64_t>(seconds * 1e9));
    RunnerOptions source_options{.idle = options.idle, .thread_name = "source"};
    if (!options.cpus.empty()) source_options.cpu = options.cpus[0];
    const int64_t start = now_ns();
    {
      AgentRunner source_runner(source, source_options, on_error);
      if (absl::Status s = source_runner.start(); !s.ok()) return s;
      while (!source.phase_over() && source_runner.is_running()) {
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
      }
      source_runner.stop();
    }
    // Drain: the phase ends when stage C has seen everything the source published.
    const int64_t last = source.published();
    while (stage_c.seen.load(std::memory_order_acquire) < last && stage_runner.is_running()) {
      std::this_thread::sleep_for(std::chrono::microseconds(200));
    }
    phase.seconds = static_cast<double>(now_ns() - start) / 1e9;
    phase.events = last - first;
    return failure;
  };

  report.throughput.name = "throughput (unpaced)";
  report.paced.name = absl::StrCat("paced at ", options.paced_rate, " events/s");
  absl::Status status = run_phase(report.throughput, 0, options.throughput_seconds);
  if (status.ok()) status = run_phase(report.paced, options.paced_rate, options.paced_seconds);
  stage_runner.stop();
  if (!status.ok()) return status;
  if (!stage_runner.status().ok()) return stage_runner.status();
  if (stage_c.errors != 0) {
    return absl::DataLossError(absl::StrCat("stage C saw ", stage_c.errors,
                                            " events out of order or with wrong stage outputs"));
  }
  if (stage_c.expected_id != source.published()) {
    return absl::DataLossError(absl::StrCat("source published ", source.published(),
                                            " events, stage C saw ", stage_c.expected_id));
  }
  return report;
}

void print_demo_report(const DemoOptions& options, const DemoReport& report, std::ostream& out) {
  out << "sluice pipeline demo: ring of " << options.ring_size << " slots\n"
      << "  mapping: " << report.mapping << "\n";
  for (const DemoPhase* phase : {&report.throughput, &report.paced}) {
    const Histogram& h = phase->latency_ns;
    out << absl::StrFormat(
        "  %-28s %12d events in %.2f s = %7.2f M events/s; latency publish->C (ns): p50 %d "
        "p90 %d p99 %d p99.9 %d p99.99 %d max %d\n",
        phase->name, phase->events, phase->seconds, phase->events_per_second() / 1e6,
        h.value_at_percentile(50), h.value_at_percentile(90), h.value_at_percentile(99),
        h.value_at_percentile(99.9), h.value_at_percentile(99.99), h.max());
  }
}

}  // namespace sluice
