// CPU placement and thread naming for the threads that run sluice agents.
//
// Contract:
//   - CPU numbers are the kernel's logical CPU ids (as in /proc/cpuinfo, taskset, --cpus).
//   - pin_current_thread() affects only the calling thread. The kernel may still refuse a CPU
//     that exists (offline, or outside this process's cpuset/cgroup); that is reported as an
//     error, never silently ignored.
//   - Everything here is a cold-path call: it may allocate and makes system calls.
//
// Thread safety: all functions are safe to call from any thread; each acts on the calling thread.
#ifndef SLUICE_CORE_CPU_H_
#define SLUICE_CORE_CPU_H_

#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace sluice {

// CPU numbers above this are rejected by the parser and pinning as certainly wrong, which keeps
// a typo like "0-100000000" from allocating a huge mask.
inline constexpr int kMaxCpuId = 65535;

// Parses a kernel-style CPU list: comma-separated CPU ids and inclusive ranges, e.g. "0",
// "0,1", "0-3,6". Whitespace around items is ignored. Returns the CPUs in the order written.
// InvalidArgument, naming the offending item, for: an empty list or item, a non-number, a
// negative id, an id above kMaxCpuId, a reversed range ("3-1"), or a CPU listed twice.
absl::StatusOr<std::vector<int>> parse_cpu_list(std::string_view list);

// Restricts the calling thread to `cpu` / to the set `cpus`. InvalidArgument for ids outside
// 0..kMaxCpuId or an empty set; otherwise an error naming the CPUs and strerror (EINVAL when
// none of them is usable).
absl::Status pin_current_thread(int cpu);
absl::Status pin_current_thread(std::span<const int> cpus);

// The CPU the calling thread ran on at the time of the call (it can move right after unless
// pinned); nullopt if the kernel cannot say.
std::optional<int> current_cpu();

// Number of online CPUs (at least 1).
int online_cpus();

// The CPUs the calling thread may run on (sched_getaffinity), ascending.
absl::StatusOr<std::vector<int>> allowed_cpus();

// Housekeeping CPUs: where helper threads run (the snapshot writer, the state prefaulter, the
// journal's segment preparation, the metrics server, and io_uring's kernel workers), so that
// they do not take time from agents pinned elsewhere. A thread inherits its creator's
// affinity, so without this a helper started from a pinned agent's thread would be pinned to
// that agent's CPU too. Process-wide; empty (the default) means no preference: helpers stay
// where they were started.
void set_housekeeping_cpus(std::vector<int> cpus);
std::vector<int> housekeeping_cpus();
// Moves the calling thread to the housekeeping CPUs; a no-op when none are set.
absl::Status move_current_thread_to_housekeeping();

// Names the calling thread (visible in top -H, perf, gdb). Linux allows 15 bytes; longer names
// are cut to 15 bytes (not inside a UTF-8 sequence) instead of failing.
absl::Status set_current_thread_name(std::string_view name);
// The calling thread's name; empty if it cannot be read.
std::string current_thread_name();

// Sets this thread's timer slack (how late the kernel may fire its sleeps, 50 us by default) so
// a backoff strategy's microsecond parks are not stretched to 50 us. Cosmetic on failure.
absl::Status set_current_thread_timer_slack_ns(int64_t slack_ns);

}  // namespace sluice

#endif  // SLUICE_CORE_CPU_H_
