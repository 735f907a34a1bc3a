// What every multi-threaded benchmark records about the conditions it ran under, as counters
// (perf/summarize_*.py read them):
//   cl_rtt_before_ns, cl_rtt_after_ns  the cache-line round trip between the two CPUs just
//       before and just after the run: the host moves the two vCPUs between "near" and "far"
//       placements from one moment to the next (shared/MACHINE.md);
//   foreign_cpu_pct  the share of the machine's CPU time over the run that went to anything but
//       this process (other processes, the hypervisor's steal): a benchmark that shares its CPUs
//       measures the scheduler, not the code.
//
// Thread safety: a RunConditions is used by the benchmark's own thread.
#ifndef SLUICE_BENCH_RUN_CONDITIONS_H_
#define SLUICE_BENCH_RUN_CONDITIONS_H_

#include <sched.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstdio>
#include <string>
#include <thread>
#include <vector>

#include "benchmark/benchmark.h"
#include "core/cache_line.h"
#include "core/clock.h"
#include "core/cpu.h"

namespace sluice::bench {

// The median cache-line round trip between the calling thread and a fresh thread pinned to
// `other_cpu` (~1 ms of probing), or -1 if it could not be measured.
inline int64_t cacheline_rtt_ns(int other_cpu) {
  struct alignas(2 * kCacheLineSize) Line {
    std::atomic<int64_t> v{-1};
  };
  constexpr int64_t kStop = -2;
  constexpr int kWarmup = 500;
  constexpr int kSamples = 2000;
  Line ping;
  Line pong;
  std::thread echo([&] {
    (void)pin_current_thread(other_cpu);
    int64_t last = -1;
    for (;;) {
      const int64_t v = ping.v.load(std::memory_order_acquire);
      if (v == last) {
        cpu_relax();
        continue;
      }
      if (v == kStop) return;
      pong.v.store(v, std::memory_order_release);
      last = v;
    }
  });
  const Clock& clock = default_clock();
  std::vector<int64_t> rtt;
  rtt.reserve(kSamples);
  const int64_t deadline = now_ns() + 1'000'000'000;
  for (int64_t i = 0; i < kWarmup + kSamples && now_ns() < deadline; ++i) {
    const int64_t t0 = clock.now_ticks();
    ping.v.store(i, std::memory_order_release);
    bool answered = true;
    while (pong.v.load(std::memory_order_acquire) != i) {
      cpu_relax();
      if (now_ns() > deadline) {
        answered = false;
        break;
      }
    }
    if (!answered) break;
    if (i >= kWarmup) rtt.push_back(clock.ticks_to_ns(clock.now_ticks()) - clock.ticks_to_ns(t0));
  }
  ping.v.store(kStop, std::memory_order_release);
  echo.join();
  if (rtt.size() < kSamples) return -1;
  std::nth_element(rtt.begin(), rtt.begin() + kSamples / 2, rtt.end());
  return rtt[kSamples / 2];
}

// CPU seconds the whole machine has spent busy (all CPUs, including time the hypervisor stole),
// from /proc/stat; -1 if it cannot be read.
inline double machine_busy_seconds() {
  std::FILE* f = std::fopen("/proc/stat", "r");
  if (f == nullptr) return -1;
  unsigned long long v[8] = {};
  const int n = std::fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2],
                            &v[3], &v[4], &v[5], &v[6], &v[7]);
  std::fclose(f);
  if (n != 8) return -1;
  const unsigned long long idle = v[3] + v[4];  // idle + iowait
  unsigned long long total = 0;
  for (const unsigned long long x : v) total += x;
  return static_cast<double>(total - idle) / static_cast<double>(sysconf(_SC_CLK_TCK));
}

// CPU seconds this process has used (all its threads).
inline double process_cpu_seconds() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return static_cast<double>(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
         static_cast<double>(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) * 1e-6;
}

// The placement probe for a benchmark whose threads must stay unpinned (they start threads of
// their own, which inherit the affinity): the round trip between CPUs 0 and 1, measured from
// this thread pinned to CPU 0 for the probe only, its affinity restored after. -1 if it could
// not be measured (one CPU, or pinning refused).
inline int64_t placement_rtt_ns() {
  cpu_set_t saved;
  if (sched_getaffinity(0, sizeof(saved), &saved) != 0) return -1;
  if (!pin_current_thread(0).ok()) return -1;
  const int64_t rtt = cacheline_rtt_ns(1);
  (void)sched_setaffinity(0, sizeof(saved), &saved);
  return rtt;
}

// placement_rtt_ns() before and after a benchmark, as its cl_rtt_before_ns / cl_rtt_after_ns
// counters: construct before the timed loop, record() after it.
class PlacementProbe {
 public:
  PlacementProbe() : before_(placement_rtt_ns()) {}
  void record(benchmark::State& state) const {
    state.counters["cl_rtt_before_ns"] = static_cast<double>(before_);
    state.counters["cl_rtt_after_ns"] = static_cast<double>(placement_rtt_ns());
  }

 private:
  int64_t before_;
};

// Pins the benchmark thread to `self_cpu` and records the run's conditions (above) against
// `other_cpu`.
class RunConditions {
 public:
  RunConditions(int self_cpu, int other_cpu) : self_cpu_(self_cpu), other_cpu_(other_cpu) {}

  // False (and the benchmark skipped) if this thread cannot be pinned.
  bool start(benchmark::State& state) {
    const absl::Status pinned = pin_current_thread(self_cpu_);
    if (!pinned.ok()) {
      state.SkipWithError(("pinning the benchmark thread to CPU " + std::to_string(self_cpu_) +
                           " failed: " + pinned.ToString())
                              .c_str());
      return false;
    }
    rtt_before_ = cacheline_rtt_ns(other_cpu_);
    wall_ = now_ns();
    busy_ = machine_busy_seconds();
    own_ = process_cpu_seconds();
    return true;
  }

  // Call once the benchmark's own threads have stopped.
  void finish(benchmark::State& state) {
    const double busy = machine_busy_seconds() - busy_;
    const double own = process_cpu_seconds() - own_;
    const double capacity = static_cast<double>(now_ns() - wall_) * 1e-9 *
                            static_cast<double>(sysconf(_SC_NPROCESSORS_ONLN));
    state.counters["foreign_cpu_pct"] =
        busy_ < 0 || capacity <= 0 ? -1.0 : std::max(0.0, 100.0 * (busy - own) / capacity);
    state.counters["cl_rtt_before_ns"] = static_cast<double>(rtt_before_);
    state.counters["cl_rtt_after_ns"] = static_cast<double>(cacheline_rtt_ns(other_cpu_));
  }

 private:
  const int self_cpu_;
  const int other_cpu_;
  int64_t rtt_before_ = -1;
  int64_t wall_ = 0;
  double busy_ = -1;
  double own_ = 0;
};

}  // namespace sluice::bench

#endif  // SLUICE_BENCH_RUN_CONDITIONS_H_
