#include "io/alerts_log.h"

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace sluice {
namespace {

struct TempDir {
  TempDir() {
    char tmpl[] = "/tmp/sluice-alerts-XXXXXX";
    path = ::mkdtemp(tmpl);
  }
  ~TempDir() { std::filesystem::remove_all(path); }
  std::string path;
};

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
  const std::string path = dir.path + "/alerts.log";
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
  const std::string path = dir.path + "/alerts.log";
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
  const std::string path = dir.path + "/alerts.log";
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

TEST(AlertsLog, UnwritableLocationIsAnErrorNamingThePath) {
  auto log = AlertsLog::open("/proc/no-such-dir/alerts.log");
  ASSERT_FALSE(log.ok());
  EXPECT_THAT(std::string(log.status().message()), ::testing::HasSubstr("/proc/no-such-dir/alerts.log"));
}

}  // namespace
}  // namespace sluice
