#include "core/errno_status.h"

#include <cerrno>
#include <string>
#include <thread>
#include <vector>

#include "gtest/gtest.h"

namespace sluice {
namespace {

TEST(ErrnoStatus, SaysWhatAndStrerrorWithTheMappedCode) {
  const absl::Status s = errno_status(ENOSPC, "write /data/journal/x.seg at offset 4096");
  EXPECT_TRUE(absl::IsResourceExhausted(s)) << s;
  EXPECT_EQ(s.message(), "write /data/journal/x.seg at offset 4096: No space left on device");
  EXPECT_TRUE(absl::IsNotFound(errno_status(ENOENT, "open x")));
  // The message and code absl::ErrnoToStatus would give, for every errno there is.
  for (int e = 1; e < 134; ++e) {
    const absl::Status ours = errno_status(e, "op");
    const absl::Status theirs = absl::ErrnoToStatus(e, "op");
    ASSERT_EQ(ours.code(), theirs.code()) << e;
    ASSERT_EQ(ours.message(), theirs.message()) << e;
  }
}

TEST(ErrnoStatus, ANegativeErrnoIsTheSameError) {
  EXPECT_EQ(errno_status(-EFBIG, "write f"), errno_status(EFBIG, "write f"));
}

// Several threads formatting errors at once (ThreadSanitizer runs this suite): the journal
// writer and its segment preparation thread both report EFBIG when a file-size limit hits.
TEST(ErrnoStatus, ThreadsReportErrorsAtOnce) {
  std::vector<std::thread> threads;
  std::vector<std::string> messages(4);
  for (size_t t = 0; t < messages.size(); ++t) {
    threads.emplace_back([t, &messages] {
      for (int i = 0; i < 200; ++i) {
        messages[t] = std::string(errno_status(EFBIG + static_cast<int>(t), "w").message());
      }
    });
  }
  for (std::thread& t : threads) t.join();
  EXPECT_EQ(messages[0], "w: File too large");
}

}  // namespace
}  // namespace sluice
