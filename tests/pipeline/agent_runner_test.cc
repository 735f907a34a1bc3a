#include "pipeline/agent_runner.h"

#include <atomic>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "core/cpu.h"
#include "gtest/gtest.h"
#include "pipeline/composite_agent.h"
#include "tests/test_util.h"

namespace sluice {
namespace {

using testing::eventually;

// Records what the runner did to it, from the runner's thread.
class RecordingAgent : public Agent {
 public:
  explicit RecordingAgent(std::string name, std::vector<std::string>* log = nullptr)
      : name_(std::move(name)), log_(log) {}

  std::string_view name() const override { return name_; }
  void on_start() override {
    starts.fetch_add(1, std::memory_order_relaxed);
    thread_name = current_thread_name();
    cpu = current_cpu().value_or(-1);
    if (log_) log_->push_back("start " + name_);
    if (throw_on_start) throw std::runtime_error("cannot start");
  }
  int do_work() override {
    const int64_t n = works.fetch_add(1, std::memory_order_acq_rel) + 1;
    if (throw_at_work > 0 && n == throw_at_work) throw std::runtime_error("disk on fire");
    return work_per_call;
  }
  void on_close() override {
    closes.fetch_add(1, std::memory_order_relaxed);
    if (log_) log_->push_back("close " + name_);
    if (throw_on_close) throw std::runtime_error("cannot close");
  }

  std::atomic<int> starts{0};
  std::atomic<int64_t> works{0};
  std::atomic<int> closes{0};
  int work_per_call = 1;
  int64_t throw_at_work = 0;
  bool throw_on_start = false;
  bool throw_on_close = false;
  std::string thread_name;
  int cpu = -1;

 private:
  std::string name_;
  std::vector<std::string>* log_;
};

RunnerOptions yielding() { return RunnerOptions{.idle = IdleConfig{.kind = IdleKind::kYield}}; }

TEST(AgentRunner, RunsTheAgentOnItsOwnNamedThreadUntilStopped) {
  RecordingAgent agent("counter");
  AgentRunner runner(agent, yielding());
  ASSERT_TRUE(runner.start().ok());
  ASSERT_TRUE(eventually([&] { return agent.works.load() > 100; }));
  EXPECT_TRUE(runner.is_running());
  runner.stop();
  EXPECT_FALSE(runner.is_running());
  const int64_t after_stop = agent.works.load();
  std::this_thread::sleep_for(std::chrono::milliseconds(10));
  EXPECT_EQ(agent.works.load(), after_stop) << "do_work was called after stop() returned";
  EXPECT_EQ(agent.starts.load(), 1);
  EXPECT_EQ(agent.closes.load(), 1);
  EXPECT_EQ(agent.thread_name, "counter");
  EXPECT_TRUE(runner.status().ok());
}

TEST(AgentRunner, StopIsIdempotentAndStartTwiceIsRefused) {
  RecordingAgent agent("twice");
  AgentRunner runner(agent, yielding());
  ASSERT_TRUE(runner.start().ok());
  absl::Status again = runner.start();
  EXPECT_EQ(again.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(again.message().find("twice"), std::string::npos);
  runner.stop();
  runner.stop();
  EXPECT_EQ(agent.closes.load(), 1);
}

TEST(AgentRunner, DestructorStopsARunningAgent) {
  RecordingAgent agent("scoped");
  {
    AgentRunner runner(agent, yielding());
    ASSERT_TRUE(runner.start().ok());
    ASSERT_TRUE(eventually([&] { return agent.works.load() > 0; }));
  }
  EXPECT_EQ(agent.closes.load(), 1);
}

TEST(AgentRunner, AnExceptionInDoWorkIsReportedWithTheAgentNameAndEndsTheLoop) {
  RecordingAgent agent("journal");
  agent.throw_at_work = 50;
  std::atomic<int> reports{0};
  std::string reported_agent;
  absl::Status reported;
  AgentRunner runner(agent, yielding(), [&](std::string_view name, const absl::Status& s) {
    reported_agent = std::string(name);
    reported = s;
    reports.fetch_add(1, std::memory_order_release);
  });
  ASSERT_TRUE(runner.start().ok());
  ASSERT_TRUE(eventually([&] { return !runner.is_running(); }));
  runner.stop();
  EXPECT_EQ(reports.load(std::memory_order_acquire), 1);
  EXPECT_EQ(reported_agent, "journal");
  EXPECT_EQ(agent.works.load(), 50);  // nothing after the failing call
  EXPECT_EQ(agent.closes.load(), 1);  // closed even though it failed
  EXPECT_EQ(runner.status().code(), absl::StatusCode::kInternal);
  EXPECT_NE(runner.status().message().find("journal"), std::string::npos);
  EXPECT_NE(runner.status().message().find("disk on fire"), std::string::npos);
  EXPECT_EQ(runner.status(), reported);
}

TEST(AgentRunner, AFailedStartNeverCallsDoWork) {
  RecordingAgent agent("broken");
  agent.throw_on_start = true;
  AgentRunner runner(agent, yielding(), nullptr);
  ASSERT_TRUE(runner.start().ok());
  ASSERT_TRUE(eventually([&] { return !runner.is_running(); }));
  runner.stop();
  EXPECT_EQ(agent.works.load(), 0);
  EXPECT_NE(runner.status().message().find("on_start"), std::string::npos);
}

TEST(AgentRunner, PinsItsThreadToTheRequestedCpu) {
  RecordingAgent agent("pinned");
  RunnerOptions options = yielding();
  options.cpu = 0;
  AgentRunner runner(agent, options);
  ASSERT_TRUE(runner.start().ok());
  ASSERT_TRUE(eventually([&] { return agent.works.load() > 0; }));
  runner.stop();
  EXPECT_TRUE(runner.status().ok()) << runner.status();
  EXPECT_EQ(agent.cpu, 0);
}

TEST(AgentRunner, APinToAMissingCpuFailsWithoutRunningTheAgent) {
  RecordingAgent agent("nowhere");
  RunnerOptions options = yielding();
  options.cpu = 4000;
  AgentRunner runner(agent, options, nullptr);
  ASSERT_TRUE(runner.start().ok());
  ASSERT_TRUE(eventually([&] { return !runner.is_running(); }));
  runner.stop();
  EXPECT_FALSE(runner.status().ok());
  EXPECT_NE(runner.status().message().find("nowhere"), std::string::npos);
  EXPECT_NE(runner.status().message().find("4000"), std::string::npos);
  EXPECT_EQ(agent.starts.load(), 0);
}

TEST(CompositeAgent, PollsEveryMemberAndSumsTheirWork) {
  RecordingAgent a("a"), b("b"), c("c");
  a.work_per_call = 1;
  b.work_per_call = 0;
  c.work_per_call = 5;
  CompositeAgent composite({&a, &b, &c});
  EXPECT_EQ(composite.name(), "a+b+c");
  EXPECT_EQ(composite.do_work(), 6);
  EXPECT_EQ(composite.do_work(), 6);
  EXPECT_EQ(a.works.load(), 2);
  EXPECT_EQ(b.works.load(), 2);
  EXPECT_EQ(c.works.load(), 2);
}

TEST(CompositeAgent, RunsAllMembersOnOneRunnerThread) {
  std::vector<std::string> log;
  RecordingAgent a("a", &log), b("b", &log);
  CompositeAgent composite({&a, &b}, "both");
  AgentRunner runner(composite, yielding());
  ASSERT_TRUE(runner.start().ok());
  ASSERT_TRUE(eventually([&] { return a.works.load() > 10 && b.works.load() > 10; }));
  runner.stop();
  EXPECT_EQ(a.thread_name, "both");
  EXPECT_EQ(b.thread_name, "both");
  EXPECT_EQ(log, (std::vector<std::string>{"start a", "start b", "close b", "close a"}));
}

TEST(CompositeAgent, AMemberThatFailsToStartClosesTheOnesAlreadyStarted) {
  std::vector<std::string> log;
  RecordingAgent a("a", &log), b("b", &log), c("c", &log);
  b.throw_on_start = true;
  CompositeAgent composite({&a, &b, &c});
  EXPECT_THROW(composite.on_start(), std::runtime_error);
  EXPECT_EQ(log, (std::vector<std::string>{"start a", "start b", "close a"}));
  composite.on_close();  // nothing left to close
  EXPECT_EQ(log.size(), 3u);
}

TEST(CompositeAgent, EveryMemberIsClosedEvenIfOneThrows) {
  std::vector<std::string> log;
  RecordingAgent a("a", &log), b("b", &log), c("c", &log);
  b.throw_on_close = true;
  CompositeAgent composite({&a, &b, &c});
  composite.on_start();
  EXPECT_THROW(composite.on_close(), std::runtime_error);
  EXPECT_EQ(log, (std::vector<std::string>{"start a", "start b", "start c", "close c", "close b",
                                           "close a"}));
}

}  // namespace
}  // namespace sluice
