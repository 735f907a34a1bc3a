// Helpers shared by the test suites.
#ifndef SLUICE_TESTS_TEST_UTIL_H_
#define SLUICE_TESTS_TEST_UTIL_H_

#include <stdlib.h>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <functional>
#include <sstream>
#include <string>
#include <thread>

namespace sluice::testing {

// Sanitizers slow code 5-20x: stress tests scale their iteration counts by this.
#if defined(SLUICE_SANITIZED)
inline constexpr int64_t kStressScale = 10;
#else
inline constexpr int64_t kStressScale = 1;
#endif

// The whole of the file at `path` (empty if it cannot be read).
inline std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream contents;
  contents << in.rdbuf();
  return contents.str();
}

// Polls `condition` (sleeping between polls) until it holds or `timeout` passes; returns
// whether it held. A liveness check for tests, never a speed assertion: the timeout is
// generous so a loaded 2-core CI machine never trips it by being slow.
inline bool eventually(const std::function<bool()>& condition,
                       std::chrono::milliseconds timeout = std::chrono::seconds(20)) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!condition()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(std::chrono::microseconds(100));
  }
  return true;
}

// A fresh directory under the system's temp directory, removed with everything in it when the
// object goes. `what` names the suite in the directory's name.
class TempDir {
 public:
  explicit TempDir(const std::string& what = "test") {
    std::string tmpl =
        (std::filesystem::temp_directory_path() / ("sluice-" + what + "-XXXXXX")).string();
    path_ = ::mkdtemp(tmpl.data());
  }
  ~TempDir() { std::filesystem::remove_all(path_); }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

}  // namespace sluice::testing

#endif  // SLUICE_TESTS_TEST_UTIL_H_
