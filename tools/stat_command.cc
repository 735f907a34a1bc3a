#include "tools/stat_command.h"

#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "core/clock.h"
#include "core/absl_compat.h"
#include "core/histogram.h"
#include "core/wire_format.h"
#include "io/data_dir.h"
#include "io/stats_file.h"

namespace sluice::tools {
namespace {

struct StatArgs {
  std::string dir = "./sluice-data";
  bool once = false;
  bool json = false;
  bool all = false;
  double interval_s = 1.0;
  int64_t count = 0;  // refreshes before exiting; 0: until interrupted
};

// One reading of every counter, for rates between two readings.
struct Sample {
  int64_t at_ns = 0;
  std::map<std::string, int64_t> values;  // "block.field"
};

Sample take(const StatsView& view) {
  Sample s;
  s.at_ns = monotonic_ns();
  for (const auto& b : view.blocks()) {
    if (b.kind != StatsBlockKind::kCounters) continue;
    for (size_t i = 0; i < b.fields.size(); ++i) {
      s.values[absl::StrCat(b.name, ".", b.fields[i])] = b.values[i].get();
    }
  }
  return s;
}

struct Percentiles {
  int64_t count = 0;
  int64_t p50 = 0, p90 = 0, p99 = 0, p999 = 0, p9999 = 0, max = 0;
};

Percentiles percentiles(const SharedHistogram& shared) {
  Histogram h(SharedHistogram::kHighest);
  shared.copy_to(&h);
  return Percentiles{h.total_count(),          h.value_at_percentile(50),
                     h.value_at_percentile(90), h.value_at_percentile(99),
                     h.value_at_percentile(99.9), h.value_at_percentile(99.99), h.max()};
}

std::string human_ns(int64_t ns) {
  if (ns < 10'000) return absl::StrCat(ns, "ns");
  if (ns < 10'000'000) return absl::StrFormat("%.1fus", static_cast<double>(ns) / 1e3);
  if (ns < 10'000'000'000) return absl::StrFormat("%.1fms", static_cast<double>(ns) / 1e6);
  return absl::StrFormat("%.1fs", static_cast<double>(ns) / 1e9);
}

std::string json(const StatsView& view, const Sample& now, const Sample* before) {
  std::string out = absl::StrCat(
      "{\"pid\":", view.pid(), ",\"state\":\"", daemon_state_name(view.state()).data(),
      "\",\"alive\":", view.writer_alive() ? "true" : "false",
      ",\"uptime_s\":", absl::StrFormat("%.3f", static_cast<double>(realtime_ns() - view.start_time_ns()) / 1e9),
      ",\"counters\":{");
  bool first_block = true;
  for (const auto& b : view.blocks()) {
    if (b.kind != StatsBlockKind::kCounters) continue;
    absl::StrAppend(&out, first_block ? "" : ",", "\"", b.name, "\":{");
    first_block = false;
    for (size_t i = 0; i < b.fields.size(); ++i) {
      absl::StrAppend(&out, i == 0 ? "" : ",", "\"", b.fields[i], "\":", b.values[i].get());
    }
    out += "}";
  }
  out += "}";
  if (before != nullptr) {
    const double secs = static_cast<double>(now.at_ns - before->at_ns) / 1e9;
    out += ",\"rates_per_s\":{";
    bool first = true;
    for (const auto& [name, v] : now.values) {
      if (!absl::EndsWith(name, "_total")) continue;
      auto it = before->values.find(name);
      if (it == before->values.end() || secs <= 0) continue;
      absl::StrAppend(&out, first ? "" : ",", "\"", name, "\":",
                      absl::StrFormat("%.1f", static_cast<double>(v - it->second) / secs));
      first = false;
    }
    out += "}";
  }
  out += ",\"latency_ns\":{";
  bool first = true;
  for (const auto& b : view.blocks()) {
    if (b.kind != StatsBlockKind::kHistogram) continue;
    const Percentiles p = percentiles(*b.histogram);
    absl::StrAppend(&out, first ? "" : ",", "\"", b.name, "\":{\"count\":", p.count,
                    ",\"p50\":", p.p50, ",\"p90\":", p.p90, ",\"p99\":", p.p99,
                    ",\"p999\":", p.p999, ",\"p9999\":", p.p9999, ",\"max\":", p.max, "}");
    first = false;
  }
  out += "}}\n";
  return out;
}

// Every counter of every block, with rates for the "_total" ones (--all).
std::string all_counters(const StatsView& view, const Sample& now, const Sample* before) {
  const double secs = before == nullptr ? 0 : static_cast<double>(now.at_ns - before->at_ns) / 1e9;
  std::string out;
  for (const auto& b : view.blocks()) {
    if (b.kind != StatsBlockKind::kCounters) continue;
    absl::StrAppend(&out, "\n[", b.name, "]\n");
    for (size_t i = 0; i < b.fields.size(); ++i) {
      const int64_t v = b.values[i].get();
      const std::string name = absl::StrCat(b.name, ".", b.fields[i]);
      std::string rate;
      if (secs > 0 && absl::EndsWith(b.fields[i], "_total")) {
        auto it = before->values.find(name);
        if (it != before->values.end()) {
          rate = absl::StrFormat("%12.0f/s", static_cast<double>(v - it->second) / secs);
        }
      }
      absl::StrAppend(&out, absl::StrFormat("  %-36s %16d %s\n", b.fields[i], v, rate));
    }
  }
  return out;
}

// The operator's view: throughput, verdicts and alerts (summed over the shards), lags per
// consumer, connections, backpressure, snapshots and latency.
std::string summary(const StatsView& view, const Sample& now, const Sample* before) {
  const double secs = before == nullptr ? 0 : static_cast<double>(now.at_ns - before->at_ns) / 1e9;
  auto value = [&](const std::string& name) {
    auto it = now.values.find(name);
    return it == now.values.end() ? int64_t{0} : it->second;
  };
  // The sum of a field over every block whose name starts with `prefix`.
  auto sum = [&](const std::string& prefix, const std::string& field) {
    int64_t total = 0;
    for (const auto& [name, v] : now.values) {
      const size_t dot = name.find('.');
      if (name.compare(0, prefix.size(), prefix) == 0 && name.compare(dot + 1, std::string::npos, field) == 0) {
        total += v;
      }
    }
    return total;
  };
  auto rate = [&](const std::string& name) -> std::string {
    if (secs <= 0) return "";
    auto a = now.values.find(name);
    auto b = before->values.find(name);
    if (a == now.values.end() || b == before->values.end()) return "";
    return absl::StrFormat(" (%.0f/s)", static_cast<double>(a->second - b->second) / secs);
  };
  const double up = static_cast<double>(realtime_ns() - view.start_time_ns()) / 1e9;
  std::string out = absl::StrFormat("sluiced pid %d  %s%s  up %.1f s  (%s)\n", view.pid(),
                                    daemon_state_name(view.state()).data(),
                                    view.writer_alive() ? "" : ", process gone", up, view.path());
  absl::StrAppend(&out, "events        journaled ", value("net.events_journaled_total"),
                  rate("net.events_journaled_total"), "   decisions sent ",
                  value("net.decisions_sent_total"), rate("net.decisions_sent_total"),
                  "   alerts sent ", value("net.alerts_sent_total"), rate("net.alerts_sent_total"),
                  "\n");
  absl::StrAppend(&out, "verdicts     ");
  for (const char* v : {"accept", "flag", "reject", "late"}) {
    absl::StrAppend(&out, " ", absl::AsciiStrToUpper(v), " ",
                    sum("shard", absl::StrCat("decisions_", v, "_total")));
  }
  absl::StrAppend(&out, " DUPLICATE ", value("net.duplicate_total"), " INVALID ",
                  value("net.invalid_total"), "\n");
  absl::StrAppend(&out, "alerts       ");
  for (int r = 1; r <= 6; ++r) {
    const std::string rule(to_absl(wire::rule_name(static_cast<wire::Rule>(r))));
    absl::StrAppend(&out, " ", rule, " ",
                    sum("shard", absl::StrCat("alerts_", absl::AsciiStrToLower(rule), "_total")));
  }
  absl::StrAppend(&out, "\n");
  // Per consumer: the journal (copied, durable), each shard, egress (the slowest output ring).
  std::string shard_lags;
  const int64_t published = value("engine.published_sequence");
  for (int k = 0;; ++k) {
    auto it = now.values.find(absl::StrCat("shard", k, ".last_sequence"));
    if (it == now.values.end()) break;
    absl::StrAppend(&shard_lags, k == 0 ? "" : " ", std::max<int64_t>(0, published - it->second));
  }
  absl::StrAppend(&out, "lag (events)  journal ", value("engine.journal_lag"), "  durable ",
                  value("engine.durable_lag"), "  shards [", shard_lags, "]  egress ",
                  value("engine.output_lag_max"), "\n");
  absl::StrAppend(&out, "connections   open ", value("net.connections_open"), "  accepted ",
                  value("net.connections_accepted_total"), "  refused ",
                  value("net.connections_refused_total"), "  dropped slow ",
                  value("net.connections_dropped_slow_total"), "  protocol errors ",
                  value("net.protocol_errors_total"), "\n");
  absl::StrAppend(&out, "backpressure  input ring full ", value("net.ring_full_episodes_total"),
                  " times, ",
                  absl::StrFormat("%.1f ms", static_cast<double>(value("net.ring_full_ns_total")) / 1e6),
                  "; output ring full ", sum("shard", "output_full_stalls_total"), " passes\n");
  int64_t stall = 0;
  for (const auto& [name, v] : now.values) {
    if (absl::EndsWith(name, ".snapshot_stall_ns_max")) stall = std::max(stall, v);
  }
  absl::StrAppend(&out, "snapshots     ", sum("shard", "snapshots_total"), " shard snapshots, ",
                  "longest stall ", human_ns(stall), ", unprepared image buffers ",
                  sum("shard", "snapshot_unprepared_buffers_total"), ", barriers deferred ",
                  value("net.snapshot_barriers_deferred_total"), "\n");
  bool header = false;
  for (const auto& b : view.blocks()) {
    if (b.kind != StatsBlockKind::kHistogram) continue;
    if (!header) {
      absl::StrAppend(&out, absl::StrFormat("\n%-24s %12s %9s %9s %9s %9s %9s %9s\n", "latency",
                                            "count", "p50", "p90", "p99", "p99.9", "p99.99",
                                            "max"));
      header = true;
    }
    const Percentiles p = percentiles(*b.histogram);
    absl::StrAppend(&out, absl::StrFormat("%-24s %12d %9s %9s %9s %9s %9s %9s\n", b.name, p.count,
                                          human_ns(p.p50), human_ns(p.p90), human_ns(p.p99),
                                          human_ns(p.p999), human_ns(p.p9999),
                                          human_ns(p.max)));
  }
  return out;
}

std::string table(const StatsView& view, const Sample& now, const Sample* before, bool all) {
  std::string out = summary(view, now, before);
  if (all) out += all_counters(view, now, before);
  return out;
}

int run(const StatArgs& args) {
  namespace fs = std::filesystem;
  std::error_code ec;
  const std::string path =
      fs::is_directory(args.dir, ec) ? data_dir_paths(args.dir).stats : args.dir;
  auto view = StatsView::open(path);
  if (!view.ok()) {
    if (absl::IsNotFound(view.status())) {
      print_error(absl::StrCat("stat: no stats file at ", path,
                               " (is sluiced running with --data-dir ", args.dir, "?)"));
    } else {
      print_error(absl::StrCat("stat: ", view.status().message()));
    }
    return kExitFailed;
  }
  if (args.once) {
    const Sample now = take(**view);
    std::fputs(args.json ? json(**view, now, nullptr).c_str() : table(**view, now, nullptr, args.all).c_str(),
               stdout);
    return kExitOk;
  }
  const bool tty = isatty(STDOUT_FILENO) != 0;
  Sample before = take(**view);
  for (int64_t n = 0; args.count == 0 || n < args.count; ++n) {
    std::this_thread::sleep_for(std::chrono::duration<double>(args.interval_s));
    // A restarted daemon replaces the file: follow it.
    auto fresh = StatsView::open(path);
    if (fresh.ok() && (*fresh)->start_time_ns() != (*view)->start_time_ns()) {
      view = std::move(fresh);
      before = take(**view);
      continue;
    }
    const Sample now = take(**view);
    const std::string text = args.json ? json(**view, now, &before) : table(**view, now, &before, args.all);
    if (tty && !args.json) std::fputs("\033[H\033[2J", stdout);  // clear the screen
    std::fputs(text.c_str(), stdout);
    std::fflush(stdout);
    before = now;
  }
  return kExitOk;
}

}  // namespace

void add_stat_command(CLI::App& app, CommandAction* action) {
  auto args = std::make_shared<StatArgs>();
  CLI::App* stat = app.add_subcommand(
      "stat", "live counters and latency percentiles of a running sluiced (refreshes each second)");
  stat->add_option("DIR", args->dir, "the daemon's data directory (or its stats file)")
      ->capture_default_str();
  stat->add_flag("--once", args->once, "print one reading and exit");
  stat->add_flag("--json", args->json, "one JSON object a reading (every counter)");
  stat->add_flag("--all", args->all, "every counter of every block after the summary");
  stat->add_option("--interval", args->interval_s, "seconds between readings")
      ->check(CLI::Range(0.05, 3600.0));
  stat->add_option("--count", args->count, "exit after this many readings (0: never)")
      ->check(CLI::NonNegativeNumber);
  stat->callback([action, args] { *action = [args] { return run(*args); }; });
}

}  // namespace sluice::tools
