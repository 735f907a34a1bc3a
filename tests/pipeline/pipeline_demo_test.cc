#include "pipeline/pipeline_demo.h"

#include <sstream>

#include "gtest/gtest.h"

namespace sluice {
namespace {

class PipelineDemoTest : public ::testing::TestWithParam<DemoTopology> {};

TEST_P(PipelineDemoTest, RunsBothPhasesAndAccountsForEveryEvent) {
  DemoOptions options;
  options.topology = GetParam();
  options.ring_size = 1024;
  options.throughput_seconds = 0.2;
  options.paced_seconds = 0.2;
  options.paced_rate = 50'000;
  options.idle = IdleConfig{.kind = IdleKind::kYield};

  auto report = run_pipeline_demo(options);
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_GT(report->throughput.events, 0);
  // The paced phase publishes what is due at 50k/s: roughly 10k events over 0.2 s, never more
  // than the schedule allows.
  EXPECT_GT(report->paced.events, 0);
  EXPECT_LE(report->paced.events, 50'000 * 0.2 + 64);
  // Stage C timed every event it checked.
  EXPECT_EQ(report->throughput.latency_ns.total_count(), report->throughput.events);
  EXPECT_EQ(report->paced.latency_ns.total_count(), report->paced.events);

  std::ostringstream out;
  print_demo_report(options, *report, out);
  EXPECT_NE(out.str().find("p99.9"), std::string::npos);
  EXPECT_NE(out.str().find("stage-a+stage-b+stage-c"), std::string::npos);
}

INSTANTIATE_TEST_SUITE_P(Topologies, PipelineDemoTest,
                         ::testing::Values(DemoTopology::kPipeline, DemoTopology::kDiamond),
                         [](const auto& info) {
                           return info.param == DemoTopology::kPipeline ? "Pipeline" : "Diamond";
                         });

}  // namespace
}  // namespace sluice
