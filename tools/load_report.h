// How `sluice load` and `sluice floor` report: the one JSON object of SPEC section 3 (for
// scripts) and a short human summary. Both tools share the latency part, so a perf script
// reads the floor and the load with the same code.
//
// JSON (one object, one line): "rate_target", "rate_achieved" (numbers), "sent", "decided",
// "errors" (integers), "latency_ns": {"p50", "p90", "p99", "p999", "p9999", "max"} (integers,
// nanoseconds), then extra fields that scripts may use or ignore.
//
// Thread safety: pure functions.
#ifndef SLUICE_TOOLS_LOAD_REPORT_H_
#define SLUICE_TOOLS_LOAD_REPORT_H_

#include <cstdint>
#include <string>
#include <string_view>

#include "core/histogram.h"
#include "tools/load_generator.h"

namespace sluice::tools {

struct LatencySummary {
  int64_t p50 = 0;
  int64_t p90 = 0;
  int64_t p99 = 0;
  int64_t p999 = 0;
  int64_t p9999 = 0;
  int64_t max = 0;
};

LatencySummary summarize_latency(const Histogram& h);

// {"p50":..,"p90":..,"p99":..,"p999":..,"p9999":..,"max":..}
std::string latency_json(const Histogram& h);

// A rate as a JSON number: integral values without a fraction ("1000000"), others with one
// decimal ("9999.8").
std::string format_rate(double r);

// "850 ns", "25.1 us", "12.3 ms", "1.23 s".
std::string format_duration_ns(int64_t ns);

// "p50 25.1 us  p90 ...  max ...".
std::string latency_line(const Histogram& h);

// A JSON string literal (quotes included) with the escapes JSON requires.
std::string json_string(std::string_view s);

// The `--json` object of `sluice load`, without a trailing newline.
std::string format_load_json(const LoadOptions& options, const LoadResult& result);

// The human summary of `sluice load`, several lines, each ending in a newline.
std::string format_load_text(const LoadOptions& options, const LoadResult& result);

}  // namespace sluice::tools

#endif  // SLUICE_TOOLS_LOAD_REPORT_H_
