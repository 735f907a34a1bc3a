#include "core/cpu.h"

#include <sched.h>
#include <sys/prctl.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <optional>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "gtest/gtest.h"

namespace sluice {
namespace {

// CPUs this process may run on. Pinning tests use these rather than assuming CPU 0 is allowed,
// so they also pass under taskset or a restrictive container cpuset.
std::vector<int> process_cpus() {
  cpu_set_t set;
  CPU_ZERO(&set);
  std::vector<int> cpus;
  if (sched_getaffinity(0, sizeof(set), &set) != 0) return cpus;
  for (int cpu = 0; cpu < CPU_SETSIZE; ++cpu) {
    if (CPU_ISSET(cpu, &set)) cpus.push_back(cpu);
  }
  return cpus;
}

TEST(ParseCpuList, AcceptsSinglesListsAndRangesInWrittenOrder) {
  EXPECT_EQ(parse_cpu_list("0").value(), std::vector<int>({0}));
  EXPECT_EQ(parse_cpu_list("0,1").value(), std::vector<int>({0, 1}));
  EXPECT_EQ(parse_cpu_list("0-3,6").value(), std::vector<int>({0, 1, 2, 3, 6}));
  EXPECT_EQ(parse_cpu_list("6,0-2").value(), std::vector<int>({6, 0, 1, 2}));
  EXPECT_EQ(parse_cpu_list("5-5").value(), std::vector<int>({5}));
  EXPECT_EQ(parse_cpu_list(" 2 , 4-5 ").value(), std::vector<int>({2, 4, 5}));
  EXPECT_EQ(parse_cpu_list("65535").value(), std::vector<int>({65535}));
}

void expect_rejected(std::string_view list, std::string_view named_item) {
  const absl::StatusOr<std::vector<int>> result = parse_cpu_list(list);
  ASSERT_FALSE(result.ok()) << "accepted \"" << list << "\"";
  EXPECT_EQ(result.status().code(), absl::StatusCode::kInvalidArgument) << list;
  EXPECT_NE(std::string(result.status().message()).find(named_item), std::string::npos)
      << "message for \"" << list << "\" does not name " << named_item << ": " << result.status();
}

TEST(ParseCpuList, RejectsMalformedListsNamingTheBadItem) {
  expect_rejected("", "empty");
  expect_rejected("   ", "empty");
  expect_rejected("0,,1", "\"\"");
  expect_rejected("0,", "\"\"");
  expect_rejected(",1", "\"\"");
  expect_rejected("3-1", "\"3-1\"");
  expect_rejected("0,a", "\"a\"");
  expect_rejected("0x1", "\"0x1\"");
  expect_rejected("1.5", "\"1.5\"");
  expect_rejected("+1", "\"+1\"");
  expect_rejected("-1", "\"-1\"");
  expect_rejected("0,-2", "negative");
  expect_rejected("1-", "\"1-\"");
  expect_rejected("1-2-3", "\"1-2-3\"");
  expect_rejected("0,0", "CPU 0 is listed more than once");
  expect_rejected("0-3,2", "\"2\"");
  expect_rejected("4,1-5", "\"1-5\"");
  expect_rejected("0-100000000", "\"0-100000000\"");
  expect_rejected("99999999999999999999", "above");
}

TEST(Cpu, PinningToAnAllowedCpuRunsTheThreadThere) {
  const std::vector<int> cpus = process_cpus();
  ASSERT_FALSE(cpus.empty());
  // Normally CPU 0; a thread of our own so the test runner's affinity is left alone.
  for (const int cpu : {cpus.front(), cpus.back()}) {
    std::thread([cpu] {
      ASSERT_TRUE(pin_current_thread(cpu).ok()) << "cpu " << cpu;
      for (int i = 0; i < 100; ++i) {
        const std::optional<int> now = current_cpu();
        ASSERT_TRUE(now.has_value());
        ASSERT_EQ(*now, cpu);
        std::this_thread::yield();
      }
    }).join();
  }
}

TEST(Cpu, PinningToASetKeepsTheThreadInsideIt) {
  const std::vector<int> cpus = process_cpus();
  ASSERT_FALSE(cpus.empty());
  std::thread([&cpus] {
    ASSERT_TRUE(pin_current_thread(std::span<const int>(cpus)).ok());
    for (int i = 0; i < 100; ++i) {
      const std::optional<int> now = current_cpu();
      ASSERT_TRUE(now.has_value());
      EXPECT_NE(std::find(cpus.begin(), cpus.end(), *now), cpus.end()) << *now;
      std::this_thread::yield();
    }
  }).join();
}

TEST(Cpu, AllowedCpusAreTheAffinityOfTheCallingThread) {
  const std::vector<int> cpus = process_cpus();
  ASSERT_FALSE(cpus.empty());
  const absl::StatusOr<std::vector<int>> all = allowed_cpus();
  ASSERT_TRUE(all.ok()) << all.status();
  EXPECT_EQ(*all, cpus);
  std::thread([&cpus] {
    ASSERT_TRUE(pin_current_thread(cpus.back()).ok());
    const absl::StatusOr<std::vector<int>> one = allowed_cpus();
    ASSERT_TRUE(one.ok()) << one.status();
    EXPECT_EQ(*one, std::vector<int>{cpus.back()});
  }).join();
}

// A helper thread started from a pinned thread inherits its pin; moving it to the housekeeping
// CPUs undoes that. With none set, the move leaves the thread where it is.
TEST(Cpu, AHelperThreadMovesFromItsCreatorsCpuToTheHousekeepingCpus) {
  const std::vector<int> cpus = process_cpus();
  if (cpus.size() < 2) GTEST_SKIP() << "needs two CPUs to tell the sets apart";
  const int agent = cpus.back();
  const std::vector<int> rest(cpus.begin(), cpus.end() - 1);
  std::thread([&] {
    ASSERT_TRUE(pin_current_thread(agent).ok());
    std::thread([&] {  // started from the pinned thread
      EXPECT_EQ(*allowed_cpus(), std::vector<int>{agent});
      ASSERT_TRUE(move_current_thread_to_housekeeping().ok());  // none set: stays
      EXPECT_EQ(*allowed_cpus(), std::vector<int>{agent});
      set_housekeeping_cpus(rest);
      EXPECT_EQ(housekeeping_cpus(), rest);
      ASSERT_TRUE(move_current_thread_to_housekeeping().ok());
      EXPECT_EQ(*allowed_cpus(), rest);
      set_housekeeping_cpus({});
    }).join();
  }).join();
  EXPECT_TRUE(housekeeping_cpus().empty());
}

TEST(Cpu, PinningToANonexistentCpuFailsNamingIt) {
  std::thread([] {
    const absl::Status status = pin_current_thread(4096);
    ASSERT_FALSE(status.ok());
    EXPECT_NE(status.message().find("CPU 4096"), std::string_view::npos) << status;
    EXPECT_NE(status.message().find(std::strerror(EINVAL)), std::string_view::npos) << status;
  }).join();
}

TEST(Cpu, PinningRejectsNegativeHugeAndEmptyInput) {
  EXPECT_EQ(pin_current_thread(-1).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(pin_current_thread(kMaxCpuId + 1).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(pin_current_thread(std::span<const int>()).code(), absl::StatusCode::kInvalidArgument);
  const std::vector<int> bad = {0, -3};
  const absl::Status status = pin_current_thread(std::span<const int>(bad));
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(status.message().find("CPU -3"), std::string_view::npos) << status;
}

TEST(Cpu, OnlineCpusIsPositiveAndCoversTheCurrentCpu) {
  const int online = online_cpus();
  EXPECT_GE(online, 1);
  const std::optional<int> now = current_cpu();
  ASSERT_TRUE(now.has_value());
  EXPECT_GE(*now, 0);
  EXPECT_LE(static_cast<size_t>(online), static_cast<size_t>(CPU_SETSIZE));
}

TEST(Cpu, ThreadNameRoundTrips) {
  std::thread([] {
    ASSERT_TRUE(set_current_thread_name("sluice-io").ok());
    EXPECT_EQ(current_thread_name(), "sluice-io");
    ASSERT_TRUE(set_current_thread_name("").ok());
    EXPECT_EQ(current_thread_name(), "");
  }).join();
}

TEST(Cpu, LongThreadNamesAreTruncatedToFifteenBytes) {
  std::thread([] {
    ASSERT_TRUE(set_current_thread_name("sluice-consumer-stage-7").ok());
    EXPECT_EQ(current_thread_name(), "sluice-consumer");
    ASSERT_TRUE(set_current_thread_name("exactly15chars!").ok());
    EXPECT_EQ(current_thread_name(), "exactly15chars!");
    // "é" is two bytes; a cut at 15 would split the one at bytes 14-15, so it is dropped.
    ASSERT_TRUE(set_current_thread_name("abcdefghijklmn\xC3\xA9z").ok());
    EXPECT_EQ(current_thread_name(), "abcdefghijklmn");
  }).join();
}

TEST(Cpu, ThreadNameIsPerThread) {
  std::thread([] {
    ASSERT_TRUE(set_current_thread_name("outer").ok());
    std::thread([] {
      ASSERT_TRUE(set_current_thread_name("inner").ok());
      EXPECT_EQ(current_thread_name(), "inner");
    }).join();
    EXPECT_EQ(current_thread_name(), "outer");
  }).join();
}

}  // namespace
}  // namespace sluice

namespace sluice {
namespace {

TEST(Cpu, TimerSlackIsSetForTheCallingThreadOnly) {
  int64_t inside = -1;
  std::thread t([&] {
    ASSERT_TRUE(set_current_thread_timer_slack_ns(1'000).ok());
    inside = prctl(PR_GET_TIMERSLACK, 0, 0, 0, 0);
  });
  t.join();
  EXPECT_EQ(inside, 1'000);
  EXPECT_NE(prctl(PR_GET_TIMERSLACK, 0, 0, 0, 0), 1'000);  // this thread kept its own
}

}  // namespace
}  // namespace sluice
