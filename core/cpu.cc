#include "core/cpu.h"

#include <pthread.h>
#include <sys/prctl.h>
#include <sched.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <mutex>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "core/errno_status.h"

namespace sluice {
namespace {

// Linux's TASK_COMM_LEN is 16 including the terminating NUL.
constexpr size_t kMaxThreadNameBytes = 15;

// Strict decimal: digits only, so "+1", " 1", "0x1" and "-1" are all rejected (SimpleAtoi would
// accept some of them).
std::optional<int> parse_cpu_id(absl::string_view text) {
  if (text.empty()) return std::nullopt;
  int value = 0;
  for (const char c : text) {
    if (c < '0' || c > '9') return std::nullopt;
    value = value * 10 + (c - '0');
    if (value > kMaxCpuId) return kMaxCpuId + 1;  // out of range, reported by the caller
  }
  return value;
}

absl::Status bad_item(absl::string_view item, absl::string_view list, absl::string_view why) {
  return absl::InvalidArgumentError(
      absl::StrCat("invalid CPU list item \"", item, "\" in \"", list, "\": ", why));
}

// An affinity mask sized for the largest requested id rather than the fixed 1024-bit cpu_set_t,
// so large ids reach the kernel and get its verdict instead of being silently dropped.
class CpuMask {
 public:
  explicit CpuMask(int max_cpu)
      : cpus_(static_cast<size_t>(max_cpu) + 1),
        set_(CPU_ALLOC(cpus_)),
        bytes_(CPU_ALLOC_SIZE(cpus_)) {
    if (set_ != nullptr) CPU_ZERO_S(bytes_, set_);
  }
  ~CpuMask() {
    if (set_ != nullptr) CPU_FREE(set_);
  }
  CpuMask(const CpuMask&) = delete;
  CpuMask& operator=(const CpuMask&) = delete;

  bool ok() const { return set_ != nullptr; }
  void add(int cpu) { CPU_SET_S(static_cast<size_t>(cpu), bytes_, set_); }
  size_t bytes() const { return bytes_; }
  const cpu_set_t* set() const { return set_; }
  cpu_set_t* mutable_set() { return set_; }

 private:
  size_t cpus_;
  cpu_set_t* set_;
  size_t bytes_;
};

}  // namespace

absl::StatusOr<std::vector<int>> parse_cpu_list(std::string_view list_view) {
  // This absl build has its own string_view type; its string utilities need that one.
  const absl::string_view list(list_view.data(), list_view.size());
  if (absl::StripAsciiWhitespace(list).empty()) {
    return absl::InvalidArgumentError("empty CPU list");
  }
  std::vector<int> cpus;
  std::vector<bool> seen;
  for (const absl::string_view raw_item : absl::StrSplit(list, ',')) {
    const absl::string_view item = absl::StripAsciiWhitespace(raw_item);
    if (item.empty()) return bad_item(item, list, "empty item");
    if (item.front() == '-') return bad_item(item, list, "CPU ids cannot be negative");

    const size_t dash = item.find('-');
    const absl::string_view first_text = item.substr(0, dash);
    const absl::string_view last_text =
        dash == absl::string_view::npos ? first_text : item.substr(dash + 1);
    const std::optional<int> first = parse_cpu_id(first_text);
    const std::optional<int> last = parse_cpu_id(last_text);
    if (!first.has_value() || !last.has_value()) {
      return bad_item(item, list, "expected a CPU id or a range like 2-5");
    }
    if (*first > kMaxCpuId || *last > kMaxCpuId) {
      return bad_item(item, list, absl::StrCat("CPU ids above ", kMaxCpuId, " are not supported"));
    }
    if (*first > *last) return bad_item(item, list, "range end is below its start");

    if (seen.size() <= static_cast<size_t>(*last)) seen.resize(static_cast<size_t>(*last) + 1);
    for (int cpu = *first; cpu <= *last; ++cpu) {
      if (seen[static_cast<size_t>(cpu)]) {
        return bad_item(item, list, absl::StrCat("CPU ", cpu, " is listed more than once"));
      }
      seen[static_cast<size_t>(cpu)] = true;
      cpus.push_back(cpu);
    }
  }
  return cpus;
}

absl::Status pin_current_thread(int cpu) {
  return pin_current_thread(std::span<const int>(&cpu, 1));
}

absl::Status pin_current_thread(std::span<const int> cpus) {
  if (cpus.empty()) return absl::InvalidArgumentError("cannot pin to an empty CPU set");
  const std::string described = cpus.size() == 1
                                    ? absl::StrCat("CPU ", cpus[0])
                                    : absl::StrCat("CPUs {", absl::StrJoin(cpus, ","), "}");
  int max_cpu = 0;
  for (const int cpu : cpus) {
    if (cpu < 0 || cpu > kMaxCpuId) {
      return absl::InvalidArgumentError(
          absl::StrCat("cannot pin to ", described, ": CPU ", cpu, " is outside 0..", kMaxCpuId));
    }
    if (cpu > max_cpu) max_cpu = cpu;
  }
  CpuMask mask(max_cpu);
  if (!mask.ok()) {
    return absl::ResourceExhaustedError(
        absl::StrCat("cannot pin to ", described, ": allocating the CPU mask failed"));
  }
  for (const int cpu : cpus) mask.add(cpu);
  const int rc = pthread_setaffinity_np(pthread_self(), mask.bytes(), mask.set());
  if (rc != 0) return errno_status(rc, absl::StrCat("cannot pin to ", described));
  return absl::OkStatus();
}

absl::StatusOr<std::vector<int>> allowed_cpus() {
  CpuMask mask(kMaxCpuId);
  if (!mask.ok()) return absl::ResourceExhaustedError("allocating a CPU mask failed");
  const int rc = pthread_getaffinity_np(pthread_self(), mask.bytes(), mask.mutable_set());
  if (rc != 0) return errno_status(rc, "cannot read this thread's CPU affinity");
  std::vector<int> cpus;
  for (int cpu = 0; cpu <= kMaxCpuId; ++cpu) {
    if (CPU_ISSET_S(static_cast<size_t>(cpu), mask.bytes(), mask.set())) cpus.push_back(cpu);
  }
  return cpus;
}

namespace {

std::mutex housekeeping_mu;
std::vector<int>& housekeeping() {
  // Never destroyed: helper threads may still ask while static destructors run.
  static std::vector<int>* cpus = new std::vector<int>();
  return *cpus;
}

}  // namespace

void set_housekeeping_cpus(std::vector<int> cpus) {
  std::lock_guard<std::mutex> lock(housekeeping_mu);
  housekeeping() = std::move(cpus);
}

std::vector<int> housekeeping_cpus() {
  std::lock_guard<std::mutex> lock(housekeeping_mu);
  return housekeeping();
}

absl::Status move_current_thread_to_housekeeping() {
  const std::vector<int> cpus = housekeeping_cpus();
  if (cpus.empty()) return absl::OkStatus();
  return pin_current_thread(cpus);
}

std::optional<int> current_cpu() {
  const int cpu = sched_getcpu();
  if (cpu < 0) return std::nullopt;
  return cpu;
}

int online_cpus() {
  const long n = sysconf(_SC_NPROCESSORS_ONLN);
  return n > 0 ? static_cast<int>(n) : 1;
}

absl::Status set_current_thread_name(std::string_view name) {
  size_t length = std::min(name.size(), kMaxThreadNameBytes);
  if (length < name.size()) {
    // Back off over UTF-8 continuation bytes so the cut leaves whole characters.
    while (length > 0 && (static_cast<unsigned char>(name[length]) & 0xC0) == 0x80) --length;
  }
  const std::string truncated(name.substr(0, length));
  const int rc = pthread_setname_np(pthread_self(), truncated.c_str());
  if (rc != 0) {
    return errno_status(rc, absl::StrCat("cannot name thread \"", truncated, "\""));
  }
  return absl::OkStatus();
}

std::string current_thread_name() {
  char buffer[kMaxThreadNameBytes + 1] = {};
  if (pthread_getname_np(pthread_self(), buffer, sizeof(buffer)) != 0) return std::string();
  return std::string(buffer);
}

absl::Status set_current_thread_timer_slack_ns(int64_t slack_ns) {
  if (slack_ns < 1) slack_ns = 1;  // 0 would mean "back to the default"
  if (prctl(PR_SET_TIMERSLACK, static_cast<unsigned long>(slack_ns), 0, 0, 0) != 0) {
    return errno_status(errno, "prctl(PR_SET_TIMERSLACK)");
  }
  return absl::OkStatus();
}

}  // namespace sluice
