#include "io/data_dir.h"

#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/test_util.h"

namespace sluice {
namespace {

using testing::TempDir;

TEST(DataDirLock, ASecondHolderIsRefusedNamingTheDirectoryAndPid) {
  TempDir dir;
  const std::string root = dir.path() + "/data";  // created on demand
  auto first = DataDirLock::acquire(root);
  ASSERT_TRUE(first.ok()) << first.status();
  auto second = DataDirLock::acquire(root);
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(second.status().message()),
              ::testing::AllOf(::testing::HasSubstr(root),
                               ::testing::HasSubstr("pid " + std::to_string(::getpid()))));
  first->reset();
  auto third = DataDirLock::acquire(root);
  EXPECT_TRUE(third.ok()) << third.status();
}

// The lock dies with its process: a killed daemon never leaves the directory locked.
TEST(DataDirLock, ALockHeldByAKilledProcessIsFree) {
  TempDir dir;
  int ready[2];
  ASSERT_EQ(::pipe(ready), 0);
  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    auto lock = DataDirLock::acquire(dir.path());
    char c = lock.ok() ? 'y' : 'n';
    (void)!::write(ready[1], &c, 1);
    ::pause();
    ::_exit(0);
  }
  char c = 0;
  ASSERT_EQ(::read(ready[0], &c, 1), 1);
  ASSERT_EQ(c, 'y');
  EXPECT_FALSE(DataDirLock::acquire(dir.path()).ok());
  ::kill(child, SIGKILL);
  int status = 0;
  ::waitpid(child, &status, 0);
  EXPECT_TRUE(DataDirLock::acquire(dir.path()).ok());
  ::close(ready[0]);
  ::close(ready[1]);
}

TEST(DataDirPaths, LayoutIsUnderTheRoot) {
  const DataDirPaths p = data_dir_paths("/var/lib/sluice");
  EXPECT_EQ(p.journal, "/var/lib/sluice/journal");
  EXPECT_EQ(p.snapshots, "/var/lib/sluice/snapshots");
  EXPECT_EQ(p.alerts_log, "/var/lib/sluice/alerts.log");
  EXPECT_EQ(p.stats, "/var/lib/sluice/stats");
  EXPECT_EQ(p.lock, "/var/lib/sluice/LOCK");
}

}  // namespace
}  // namespace sluice
