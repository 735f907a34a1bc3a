#include "core/log.h"

#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <ctime>
#include <mutex>
#include <string>

#include "absl/strings/str_format.h"
#include "core/clock.h"

namespace sluice {
namespace {

std::atomic<int> g_level{static_cast<int>(LogLevel::kInfo)};
std::mutex g_mu;

std::string_view level_name(LogLevel level) {
  switch (level) {
    case LogLevel::kDebug: return "DEBUG";
    case LogLevel::kInfo: return "INFO ";
    case LogLevel::kWarn: return "WARN ";
    case LogLevel::kError: return "ERROR";
  }
  return "?    ";
}

}  // namespace

// Relaxed: the level is a filter; a thread that sees the old one for a moment logs one line
// more or less.
void set_log_level(LogLevel level) { g_level.store(static_cast<int>(level), std::memory_order_relaxed); }
LogLevel log_level() { return static_cast<LogLevel>(g_level.load(std::memory_order_relaxed)); }

bool parse_log_level(std::string_view name, LogLevel* level) {
  if (name == "debug") *level = LogLevel::kDebug;
  else if (name == "info") *level = LogLevel::kInfo;
  else if (name == "warn") *level = LogLevel::kWarn;
  else if (name == "error") *level = LogLevel::kError;
  else return false;
  return true;
}

void log_line(LogLevel level, std::string_view message) {
  const int64_t now = realtime_ns();
  const time_t secs = static_cast<time_t>(now / 1'000'000'000);
  std::tm tm{};
  gmtime_r(&secs, &tm);
  std::string line = absl::StrFormat("%04d-%02d-%02dT%02d:%02d:%02d.%06dZ %s ", tm.tm_year + 1900,
                                     tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                                     static_cast<int>(now % 1'000'000'000 / 1000),
                                     level_name(level));
  line.append(message.data(), message.size());
  line.push_back('\n');
  const int saved_errno = errno;  // callers often log right before reading errno
  std::lock_guard<std::mutex> lock(g_mu);
  const char* p = line.data();
  size_t left = line.size();
  while (left > 0) {
    const ssize_t n = ::write(STDERR_FILENO, p, left);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;  // stderr is gone: nothing better to do with a log line
    p += n;
    left -= static_cast<size_t>(n);
  }
  errno = saved_errno;
}

}  // namespace sluice
