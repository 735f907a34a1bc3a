#include "io/alerts_log.h"

#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/test_util.h"

namespace sluice {
namespace {

using testing::TempDir;

OutputEvent alert(int64_t seq, uint16_t rule, int64_t value = 6) {
  OutputEvent a;
  a.kind = OutputEvent::Kind::kAlert;
  a.seq = seq;
  a.event_time_ns = 1000 + seq;
  a.account_id = 42;
  a.rule = rule;
  a.value = value;
  a.threshold = 5;
  return a;
}

std::string read(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

TEST(AlertsLog, WritesOneLineAnAlert) {
  TempDir dir;
  const std::string path = dir.path() + "/alerts.log";
  auto log = AlertsLog::open(path);
  ASSERT_TRUE(log.ok()) << log.status();
  (*log)->add(alert(7, 1));
  (*log)->add(alert(7, 2, 900));
  (*log)->add(alert(9, 5, -100001));
  ASSERT_TRUE((*log)->flush().ok());
  EXPECT_EQ(read(path),
            "7,1007,42,VELOCITY_EXCEEDED,6,5\n"
            "7,1007,42,AMOUNT_ANOMALY,900,5\n"
            "9,1009,42,POSITION_LIMIT,-100001,5\n");
  EXPECT_EQ((*log)->last_sequence(), 9);
}

// Recovery re-runs the journal tail and offers its alerts again: only missing ones are added.
TEST(AlertsLog, ReopenedLogSkipsAlertsItAlreadyHolds) {
  TempDir dir;
  const std::string path = dir.path() + "/alerts.log";
  {
    auto log = AlertsLog::open(path);
    ASSERT_TRUE(log.ok());
    (*log)->add(alert(3, 1));
    (*log)->add(alert(7, 1));  // 7 fired two rules; only the first reached the log
    ASSERT_TRUE((*log)->flush().ok());
  }
  auto log = AlertsLog::open(path);
  ASSERT_TRUE(log.ok());
  EXPECT_EQ((*log)->last_sequence(), 7);
  for (auto a : {alert(3, 1), alert(7, 1), alert(7, 2), alert(8, 6)}) (*log)->add(a);
  ASSERT_TRUE((*log)->flush().ok());
  EXPECT_EQ(read(path),
            "3,1003,42,VELOCITY_EXCEEDED,6,5\n"
            "7,1007,42,VELOCITY_EXCEEDED,6,5\n"
            "7,1007,42,AMOUNT_ANOMALY,6,5\n"
            "8,1008,42,ORDER_RATE,6,5\n");
}

TEST(AlertsLog, ATornLastLineIsCutOnOpen) {
  TempDir dir;
  const std::string path = dir.path() + "/alerts.log";
  {
    std::ofstream out(path);
    out << "3,1003,42,VELOCITY_EXCEEDED,6,5\n5,1005,42,AMOU";  // a crash mid-write
  }
  auto log = AlertsLog::open(path);
  ASSERT_TRUE(log.ok());
  EXPECT_EQ((*log)->last_sequence(), 3);
  (*log)->add(alert(5, 2));
  ASSERT_TRUE((*log)->flush().ok());
  EXPECT_EQ(read(path), "3,1003,42,VELOCITY_EXCEEDED,6,5\n5,1005,42,AMOUNT_ANOMALY,6,5\n");
}

// Alerts of events the journal lost (answered, then a crash before the journal had them) are
// cut: their sequence numbers will be reused.
TEST(AlertsLog, LinesAfterTheJournalsLastSequenceAreCut) {
  TempDir dir;
  const std::string path = dir.path() + "/alerts.log";
  {
    auto log = AlertsLog::open(path);
    ASSERT_TRUE(log.ok());
    for (auto [seq, rule] : {std::pair<int64_t, uint16_t>{3, 1}, {5, 1}, {5, 2}, {8, 1}, {9, 1}}) {
      (*log)->add(alert(seq, rule));
    }
    ASSERT_TRUE((*log)->flush().ok());
  }
  auto log = AlertsLog::open(path, /*max_sequence=*/7);
  ASSERT_TRUE(log.ok()) << log.status();
  EXPECT_EQ((*log)->last_sequence(), 5);
  EXPECT_EQ((*log)->lines_dropped(), 2);
  // The new event 8 is another event than the lost one: its alert is logged.
  (*log)->add(alert(8, 6));
  ASSERT_TRUE((*log)->flush().ok());
  EXPECT_EQ(read(path),
            "3,1003,42,VELOCITY_EXCEEDED,6,5\n"
            "5,1005,42,VELOCITY_EXCEEDED,6,5\n"
            "5,1005,42,AMOUNT_ANOMALY,6,5\n"
            "8,1008,42,ORDER_RATE,6,5\n");
  // Both of sequence 5's alerts are known to be there: offering them again adds nothing.
  (*log)->add(alert(5, 1));
  (*log)->add(alert(5, 2));
  EXPECT_FALSE((*log)->has_buffered());
}

// Logs larger than the read window: the cut suffix and the kept sequence's run may both reach
// past the first window.
TEST(AlertsLog, CutsAndRecognisesAcrossReadWindows) {
  TempDir dir;
  const std::string path = dir.path() + "/alerts.log";
  {
    auto log = AlertsLog::open(path);
    ASSERT_TRUE(log.ok());
    for (int64_t seq = 1; seq <= 3000; ++seq) (*log)->add(alert(seq, 1));
    ASSERT_TRUE((*log)->flush().ok());
  }
  // ~100 KB of lines after sequence 1000 go.
  auto log = AlertsLog::open(path, 1000);
  ASSERT_TRUE(log.ok());
  EXPECT_EQ((*log)->last_sequence(), 1000);
  EXPECT_EQ((*log)->lines_dropped(), 2000);
  (*log)->add(alert(1000, 1));  // already there
  (*log)->add(alert(1001, 1));
  ASSERT_TRUE((*log)->flush().ok());
  const std::string text = read(path);
  EXPECT_EQ(std::count(text.begin(), text.end(), '\n'), 1001);
  EXPECT_TRUE(text.ends_with("1000,2000,42,VELOCITY_EXCEEDED,6,5\n1001,2001,42,VELOCITY_EXCEEDED,6,5\n"));

  // Nothing kept at all: every line was of a lost event.
  auto empty = AlertsLog::open(path, 0);
  ASSERT_TRUE(empty.ok());
  EXPECT_EQ((*empty)->last_sequence(), 0);
  EXPECT_EQ(read(path), "");
}

TEST(AlertsLog, UnwritableLocationIsAnErrorNamingThePath) {
  auto log = AlertsLog::open("/proc/no-such-dir/alerts.log");
  ASSERT_FALSE(log.ok());
  EXPECT_THAT(std::string(log.status().message()), ::testing::HasSubstr("/proc/no-such-dir/alerts.log"));
}

}  // namespace
}  // namespace sluice
