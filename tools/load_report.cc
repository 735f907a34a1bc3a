#include "tools/load_report.h"

#include <cmath>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "core/absl_compat.h"
#include "core/wire_format.h"

namespace sluice::tools {
namespace {

std::string verdict_list(const LoadResult& r, bool json) {
  std::string out;
  for (size_t v = 0; v < r.verdicts.size(); ++v) {
    const std::string_view name = wire::verdict_name(static_cast<wire::Verdict>(v));
    if (json) {
      absl::StrAppend(&out, v == 0 ? "" : ",", json_string(name), ":", r.verdicts[v]);
    } else if (r.verdicts[v] != 0) {
      absl::StrAppend(&out, out.empty() ? "" : " ", to_absl(name), "=", r.verdicts[v]);
    }
  }
  return out;
}

}  // namespace

std::string format_rate(double r) {
  if (std::abs(r) < 9e15 && r == static_cast<double>(static_cast<int64_t>(r))) {
    return absl::StrCat(static_cast<int64_t>(r));
  }
  return absl::StrFormat("%.1f", r);
}

LatencySummary summarize_latency(const Histogram& h) {
  return LatencySummary{.p50 = h.value_at_percentile(50.0),
                        .p90 = h.value_at_percentile(90.0),
                        .p99 = h.value_at_percentile(99.0),
                        .p999 = h.value_at_percentile(99.9),
                        .p9999 = h.value_at_percentile(99.99),
                        .max = h.max()};
}

std::string latency_json(const Histogram& h) {
  const LatencySummary s = summarize_latency(h);
  return absl::StrFormat(R"({"p50":%d,"p90":%d,"p99":%d,"p999":%d,"p9999":%d,"max":%d})", s.p50,
                         s.p90, s.p99, s.p999, s.p9999, s.max);
}

std::string format_duration_ns(int64_t ns) {
  if (ns < 1'000) return absl::StrFormat("%d ns", ns);
  if (ns < 1'000'000) return absl::StrFormat("%.1f us", static_cast<double>(ns) / 1e3);
  if (ns < 1'000'000'000) return absl::StrFormat("%.1f ms", static_cast<double>(ns) / 1e6);
  return absl::StrFormat("%.2f s", static_cast<double>(ns) / 1e9);
}

std::string latency_line(const Histogram& h) {
  const LatencySummary s = summarize_latency(h);
  return absl::StrCat("p50 ", format_duration_ns(s.p50), "  p90 ", format_duration_ns(s.p90),
                      "  p99 ", format_duration_ns(s.p99), "  p99.9 ", format_duration_ns(s.p999),
                      "  p99.99 ", format_duration_ns(s.p9999), "  max ",
                      format_duration_ns(s.max));
}

std::string json_string(std::string_view s) {
  std::string out = "\"";
  for (const char ch : s) {
    const auto c = static_cast<unsigned char>(ch);
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      default:
        if (c < 0x20) {
          absl::StrAppendFormat(&out, "\\u%04x", c);
        } else {
          out.push_back(ch);
        }
    }
  }
  out.push_back('"');
  return out;
}

std::string format_load_json(const LoadOptions& options, const LoadResult& r) {
  std::string out =
      absl::StrCat("{\"rate_target\":", format_rate(r.rate_target),
                   ",\"rate_achieved\":", format_rate(r.rate_achieved), ",\"sent\":", r.sent,
                   ",\"decided\":", r.decided, ",\"errors\":", r.errors,
                   ",\"latency_ns\":", latency_json(r.latency));
  absl::StrAppend(&out, ",\"missing\":", r.missing(), ",\"scheduled\":", r.scheduled,
                  ",\"measured\":", r.measured, ",\"decided_rate\":", format_rate(r.decided_rate),
                  ",\"send_lag_ns\":", latency_json(r.send_lag), ",\"verdicts\":{",
                  verdict_list(r, /*json=*/true), "},\"duplicates\":", r.verdicts[3],
                  ",\"alerts\":", r.alerts);
  absl::StrAppendFormat(&out, ",\"duration_s\":%g,\"warmup_s\":%g,\"elapsed_s\":%.3f",
                        options.duration_s, options.warmup_s, r.elapsed_s);
  absl::StrAppend(&out, ",\"connections\":", options.connections, ",\"threads\":", options.threads,
                  ",\"mix\":", json_string(load_mix_name(options.workload.mix)),
                  ",\"accounts\":", options.workload.accounts);
  absl::StrAppendFormat(&out, ",\"skew\":%g", options.workload.skew);
  absl::StrAppend(&out, ",\"error_messages\":[");
  for (size_t i = 0; i < r.error_messages.size(); ++i) {
    absl::StrAppend(&out, i == 0 ? "" : ",", json_string(r.error_messages[i]));
  }
  out += "]}";
  return out;
}

std::string format_load_text(const LoadOptions& options, const LoadResult& r) {
  std::string out;
  const bool ipv6 = options.host.find(':') != std::string::npos;
  absl::StrAppendFormat(&out, "load %s%s%s:%d at %s events/s for %g s", ipv6 ? "[" : "",
                        options.host, ipv6 ? "]" : "", options.port, format_rate(options.rate),
                        options.duration_s);
  if (options.warmup_s > 0) absl::StrAppendFormat(&out, " after %g s of warm-up", options.warmup_s);
  absl::StrAppendFormat(&out, " over %d connection%s (%d thread%s), mix %s, %d accounts, skew %g\n",
                        options.connections, options.connections == 1 ? "" : "s", options.threads,
                        options.threads == 1 ? "" : "s", load_mix_name(options.workload.mix).data(),
                        options.workload.accounts, options.workload.skew);
  absl::StrAppendFormat(&out,
                        "sent %d of %d, decided %d, missing %d, errors %d; achieved %.1f events/s, "
                        "decisions %.1f/s\n",
                        r.sent, r.scheduled, r.decided, r.missing(), r.errors, r.rate_achieved,
                        r.decided_rate);
  absl::StrAppendFormat(&out, "latency, intended send time to decision (%d events):\n  %s\n",
                        r.measured, latency_line(r.latency));
  absl::StrAppendFormat(&out, "send lag, intended send time to send():\n  %s\n",
                        latency_line(r.send_lag));
  const std::string verdicts = verdict_list(r, /*json=*/false);
  absl::StrAppendFormat(&out, "verdicts: %s; alerts %d\n", verdicts.empty() ? "none" : verdicts,
                        r.alerts);
  return out;
}

}  // namespace sluice::tools
