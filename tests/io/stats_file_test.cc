#include "io/stats_file.h"

#include <unistd.h>

#include <array>
#include <filesystem>
#include <string>
#include <string_view>
#include <thread>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/test_util.h"

namespace sluice {
namespace {

using testing::TempDir;

struct DemoCounters {
  static constexpr std::array<std::string_view, 3> kFieldNames = {"events_total", "lag",
                                                                  "errors_total"};
  Counter events;
  Counter lag;
  Counter errors;
};

TEST(StatsFile, AViewSeesTheCountersAndHistogramsTheOwnerWrites) {
  TempDir dir;
  const std::string path = dir.path() + "/stats";
  StatsLayout layout;
  const size_t net = layout.add_counters<DemoCounters>("net");
  const size_t shard = layout.add_counters("shard0", {"seen_total"});
  const size_t lat = layout.add_histogram("ingest_to_decision");
  auto file = StatsFile::create(path, layout);
  ASSERT_TRUE(file.ok()) << file.status();
  DemoCounters* c = (*file)->place<DemoCounters>(net);
  c->events.add(41);
  c->events.add();
  c->lag.set(7);
  (*file)->counters(shard)[0].add(5);
  for (int i = 1; i <= 1000; ++i) (*file)->histogram(lat).record(i * 1000);
  (*file)->set_state(DaemonState::kRunning);

  auto view = StatsView::open(path);
  ASSERT_TRUE(view.ok()) << view.status();
  EXPECT_EQ((*view)->pid(), ::getpid());
  EXPECT_TRUE((*view)->writer_alive());
  EXPECT_EQ((*view)->state(), DaemonState::kRunning);
  EXPECT_EQ((*view)->value("net", "events_total"), 42);
  EXPECT_EQ((*view)->value("net", "lag"), 7);
  EXPECT_EQ((*view)->value("shard0", "seen_total"), 5);
  EXPECT_EQ((*view)->value("net", "no_such"), -1);
  EXPECT_EQ((*view)->value("nope", "lag"), -1);
  const StatsView::Block* h = (*view)->find("ingest_to_decision");
  ASSERT_NE(h, nullptr);
  ASSERT_EQ(h->kind, StatsBlockKind::kHistogram);
  Histogram copy(SharedHistogram::kHighest);
  h->histogram->copy_to(&copy);
  EXPECT_EQ(copy.total_count(), 1000);
  // 3 significant digits: the median of 1..1000 us is 500 us, within 0.1%.
  EXPECT_NEAR(copy.value_at_percentile(50), 500'000, 500);
  EXPECT_NEAR(copy.value_at_percentile(99), 990'000, 990);

  // Live updates show through the same mapping.
  c->events.add(8);
  EXPECT_EQ((*view)->value("net", "events_total"), 50);
}

TEST(StatsFile, PrometheusTextHasCountersGaugesAndSummaries) {
  TempDir dir;
  StatsLayout layout;
  const size_t net = layout.add_counters<DemoCounters>("net");
  const size_t lat = layout.add_histogram("ingest_to_decision");
  auto file = StatsFile::create(dir.path() + "/stats", layout);
  ASSERT_TRUE(file.ok());
  (*file)->place<DemoCounters>(net)->events.add(3);
  (*file)->histogram(lat).record(2'000'000);  // 2 ms
  auto view = StatsView::open(dir.path() + "/stats");
  ASSERT_TRUE(view.ok());
  const std::string text = prometheus_text(**view);
  EXPECT_THAT(text, ::testing::HasSubstr("# TYPE sluice_net_events_total counter\nsluice_net_events_total 3\n"));
  EXPECT_THAT(text, ::testing::HasSubstr("# TYPE sluice_net_lag gauge\nsluice_net_lag 0\n"));
  EXPECT_THAT(text, ::testing::HasSubstr("# TYPE sluice_ingest_to_decision_seconds summary\n"));
  EXPECT_THAT(text, ::testing::HasSubstr("sluice_ingest_to_decision_seconds{quantile=\"0.5\"} 0.002"));
  EXPECT_THAT(text, ::testing::HasSubstr("sluice_ingest_to_decision_seconds_count 1\n"));
  EXPECT_THAT(text, ::testing::HasSubstr("sluice_up 0\n"));  // still starting
}

// 256 shards' blocks fit (5 + 2 a shard); past kStatsMaxBlocks creation is refused.
TEST(StatsFile, ManyBlocksFitAndTooManyAreRefused) {
  TempDir dir;
  StatsLayout layout;
  for (int k = 0; k < 256; ++k) {
    layout.add_counters("shard" + std::to_string(k), {"events_total"});
    layout.add_histogram("ingest_to_shard" + std::to_string(k));
  }
  auto file = StatsFile::create(dir.path() + "/stats", layout);
  ASSERT_TRUE(file.ok()) << file.status();
  (*file)->counters(255)[0].add(9);
  auto view = StatsView::open(dir.path() + "/stats");
  ASSERT_TRUE(view.ok()) << view.status();
  EXPECT_EQ((*view)->value("shard255", "events_total"), 9);
  EXPECT_NE((*view)->find("ingest_to_shard255"), nullptr);

  for (size_t k = layout.counter_blocks.size() + layout.histograms.size(); k <= kStatsMaxBlocks; ++k) {
    layout.add_counters("more" + std::to_string(k), {"x"});
  }
  auto too_many = StatsFile::create(dir.path() + "/stats2", layout);
  ASSERT_FALSE(too_many.ok());
  EXPECT_THAT(std::string(too_many.status().message()), ::testing::HasSubstr("blocks"));
}

TEST(StatsFile, OpeningSomethingElseIsDataLossNamingTheFile) {
  TempDir dir;
  const std::string path = dir.path() + "/stats";
  {
    FILE* f = std::fopen(path.c_str(), "w");
    std::string junk(8192, 'x');
    std::fwrite(junk.data(), 1, junk.size(), f);
    std::fclose(f);
  }
  auto view = StatsView::open(path);
  ASSERT_FALSE(view.ok());
  EXPECT_EQ(view.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(std::string(view.status().message()), ::testing::HasSubstr(path));

  auto missing = StatsView::open(dir.path() + "/nothing");
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
}

TEST(StatsFile, RecreatingReplacesTheFileWithoutBreakingAnOpenView) {
  TempDir dir;
  const std::string path = dir.path() + "/stats";
  StatsLayout layout;
  layout.add_counters("a", {"x_total"});
  auto first = StatsFile::create(path, layout);
  ASSERT_TRUE(first.ok());
  (*first)->counters(0)[0].add(1);
  auto old_view = StatsView::open(path);
  ASSERT_TRUE(old_view.ok());
  auto second = StatsFile::create(path, layout);  // a restart
  ASSERT_TRUE(second.ok());
  (*second)->counters(0)[0].add(5);
  // The old view still reads the old (now unlinked) mapping; a new view reads the new file.
  EXPECT_EQ((*old_view)->value("a", "x_total"), 1);
  auto new_view = StatsView::open(path);
  ASSERT_TRUE(new_view.ok());
  EXPECT_EQ((*new_view)->value("a", "x_total"), 5);
}

// One writer thread, one reader thread: readers never see a counter go backwards.
TEST(StatsFile, ConcurrentReaderSeesMonotonicCounters) {
  TempDir dir;
  StatsLayout layout;
  layout.add_counters("a", {"x_total"});
  const size_t lat = layout.add_histogram("h");
  auto file = StatsFile::create(dir.path() + "/stats", layout);
  ASSERT_TRUE(file.ok());
  auto view = StatsView::open(dir.path() + "/stats");
  ASSERT_TRUE(view.ok());
  constexpr int64_t kN = 200'000;
  std::thread writer([&] {
    for (int64_t i = 0; i < kN; ++i) {
      (*file)->counters(0)[0].add();
      (*file)->histogram(lat).record(i);
    }
  });
  int64_t last = 0;
  while (last < kN) {
    const int64_t v = (*view)->value("a", "x_total");
    ASSERT_GE(v, last);
    last = v;
    std::this_thread::yield();
  }
  writer.join();
  EXPECT_EQ((*view)->find("h")->histogram->total_count(), kN);
}

}  // namespace
}  // namespace sluice
