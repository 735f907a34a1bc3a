// Log: one line an event on stderr, with a UTC timestamp and a level, for cold paths only
// (start-up, shutdown, faults, periodic summaries). Never call it on a hot path: it formats,
// takes a lock and writes.
//
//   2026-12-01T10:00:00.123456Z INFO  journal: recovered 1200 records from 00000000000000000001.seg
//
// Thread safety: any thread; lines from different threads never interleave (one write(2) a
// line, under a mutex so the level filter and the buffer are shared safely).
#ifndef SLUICE_CORE_LOG_H_
#define SLUICE_CORE_LOG_H_

#include <string>
#include <string_view>

#include "absl/strings/str_cat.h"
#include "core/absl_compat.h"

namespace sluice {

enum class LogLevel : int { kDebug = 0, kInfo = 1, kWarn = 2, kError = 3 };

// Lines below `level` are dropped (default kInfo).
void set_log_level(LogLevel level);
LogLevel log_level();
// "debug" | "info" | "warn" | "error"; false if the name is none of them.
bool parse_log_level(std::string_view name, LogLevel* level);

// Writes one line (a trailing newline is added).
void log_line(LogLevel level, std::string_view message);

namespace log_internal {
// StrCat takes absl::string_view, which Debian's Abseil keeps apart from std::string_view.
template <typename T>
const T& arg(const T& v) {
  return v;
}
inline absl::string_view arg(std::string_view v) { return to_absl(v); }
template <typename... Args>
std::string cat(const Args&... args) {
  return absl::StrCat(arg(args)...);
}
}  // namespace log_internal

template <typename... Args>
void log_debug(const Args&... args) {
  if (log_level() <= LogLevel::kDebug) log_line(LogLevel::kDebug, log_internal::cat(args...));
}
template <typename... Args>
void log_info(const Args&... args) {
  if (log_level() <= LogLevel::kInfo) log_line(LogLevel::kInfo, log_internal::cat(args...));
}
template <typename... Args>
void log_warn(const Args&... args) {
  if (log_level() <= LogLevel::kWarn) log_line(LogLevel::kWarn, log_internal::cat(args...));
}
template <typename... Args>
void log_error(const Args&... args) {
  log_line(LogLevel::kError, log_internal::cat(args...));
}

}  // namespace sluice

#endif  // SLUICE_CORE_LOG_H_
