// `sluice stat` against a stats file this test writes the way the daemon does.
#include <unistd.h>

#include <filesystem>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "io/stats_file.h"
#include "tests/tools/tool_run.h"

namespace sluice {
namespace {

using ::testing::HasSubstr;

class SluiceStatCli : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/sluice-stat-XXXXXX";
    root_ = ::mkdtemp(tmpl);
    StatsLayout layout;
    layout.add_counters("net", {"events_total", "connections_open"});
    layout.add_histogram("ingest_to_decision");
    auto file = StatsFile::create(root_ + "/stats", layout);
    ASSERT_TRUE(file.ok()) << file.status();
    file_ = std::move(*file);
    file_->counters(0)[0].add(1234);
    file_->counters(0)[1].set(3);
    for (int i = 1; i <= 100; ++i) file_->histogram(0).record(i * 1000);
    file_->set_state(DaemonState::kRunning);
  }
  void TearDown() override { std::filesystem::remove_all(root_); }
  testing::ToolRun run(const std::vector<std::string>& args) {
    return testing::run_tool(SLUICE_TOOL_PATH, args, root_);
  }

  std::string root_;
  std::unique_ptr<StatsFile> file_;
};

TEST_F(SluiceStatCli, OnceJsonPrintsCountersAndPercentiles) {
  const testing::ToolRun r = run({"stat", root_, "--once", "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr(absl::StrCat("{\"pid\":", ::getpid(), ",\"state\":\"running\"")));
  EXPECT_THAT(r.out, HasSubstr("\"net\":{\"events_total\":1234,\"connections_open\":3}"));
  EXPECT_THAT(r.out, HasSubstr("\"ingest_to_decision\":{\"count\":100,\"p50\":50015"));
  EXPECT_EQ(std::count(r.out.begin(), r.out.end(), '\n'), 1);
}

TEST_F(SluiceStatCli, LiveViewReportsRates) {
  // Two readings 0.2 s apart while the counter moves: the second has a rate.
  std::thread bump([&] {
    for (int i = 0; i < 40; ++i) {
      file_->counters(0)[0].add(100);
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
  });
  const testing::ToolRun r = run({"stat", root_, "--json", "--interval", "0.2", "--count", "2"});
  bump.join();
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("\"rates_per_s\":{\"net.events_total\":"));
}

TEST_F(SluiceStatCli, SummaryShowsConnectionsAndLatenciesAndAllShowsEveryCounter) {
  const testing::ToolRun r = run({"stat", root_ + "/stats", "--once"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("running"));
  EXPECT_THAT(r.out, HasSubstr("connections   open 3"));
  EXPECT_THAT(r.out, HasSubstr("ingest_to_decision"));
  EXPECT_THAT(r.out, ::testing::Not(HasSubstr("[net]")));
  const testing::ToolRun all = run({"stat", root_, "--once", "--all"});
  ASSERT_EQ(all.exit_code, 0) << all.err;
  EXPECT_THAT(all.out, HasSubstr("[net]"));
  EXPECT_THAT(all.out, HasSubstr("events_total"));
}

TEST_F(SluiceStatCli, NoDaemonIsExit1NamingTheFile) {
  const testing::ToolRun r = run({"stat", root_ + "/elsewhere", "--once"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, HasSubstr(root_ + "/elsewhere"));
}

}  // namespace
}  // namespace sluice
