// The in-process pipeline demo: a synthetic source publishes timestamped events into a ring,
// three consumers process them as a pipeline (A -> B -> C) or a diamond (A, B -> C), and the
// last stage measures the latency of a full pass.
//
// It runs two phases: as fast as the source can publish (throughput), then paced at a fixed
// rate (latency at a load the stages sustain). Every event is checked at stage C, so a lost,
// duplicated or reordered event fails the run instead of skewing its numbers.
#ifndef SLUICE_PIPELINE_PIPELINE_DEMO_H_
#define SLUICE_PIPELINE_PIPELINE_DEMO_H_

#include <cstdint>
#include <iosfwd>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "core/histogram.h"
#include "core/idle_strategy.h"

namespace sluice {

enum class DemoTopology { kPipeline, kDiamond };

struct DemoOptions {
  DemoTopology topology = DemoTopology::kPipeline;
  int64_t ring_size = 1 << 16;
  double throughput_seconds = 2.0;
  double paced_seconds = 2.0;
  int64_t paced_rate = 1'000'000;  // events/s in the latency phase
  IdleConfig idle;                 // for both threads
  std::vector<int> cpus;           // {source CPU, stages CPU}; empty: not pinned
};

struct DemoPhase {
  std::string name;
  int64_t events = 0;
  double seconds = 0;
  Histogram latency_ns;  // publish to stage C
  double events_per_second() const { return seconds > 0 ? events / seconds : 0; }
};

struct DemoReport {
  std::string mapping;  // which agent ran on which thread and CPU
  DemoPhase throughput;
  DemoPhase paced;
};

// Runs both phases; an error if the stages saw a wrong event or a thread failed.
absl::StatusOr<DemoReport> run_pipeline_demo(const DemoOptions& options);

// The human-readable summary the demo prints.
void print_demo_report(const DemoOptions& options, const DemoReport& report, std::ostream& out);

}  // namespace sluice

#endif  // SLUICE_PIPELINE_PIPELINE_DEMO_H_
