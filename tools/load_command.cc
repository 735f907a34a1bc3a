#include "tools/load_command.h"

#include <unistd.h>

#include <atomic>
#include <csignal>
#include <cstdio>
#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "core/absl_compat.h"
#include "tools/load_generator.h"
#include "tools/load_report.h"
#include "tools/loopback_floor.h"

namespace sluice::tools {
namespace {

// Set by SIGINT/SIGTERM: the run stops scheduling and drains. A signal handler can only reach
// a static; nothing else is configured through it.
std::atomic<bool> g_stop_requested{false};

extern "C" void on_stop_signal(int signal) {
  // Release: the workers' acquire load sees it; lock-free atomics are signal-safe.
  g_stop_requested.store(true, std::memory_order_release);
  std::signal(signal, SIG_DFL);  // a second Ctrl-C ends the process at once
}

void install_stop_handlers() {
  g_stop_requested.store(false, std::memory_order_relaxed);
  std::signal(SIGINT, on_stop_signal);
  std::signal(SIGTERM, on_stop_signal);
}

struct HgrmArgs {
  std::string path;
  std::string unit = "us";
};

void add_hgrm_options(CLI::App* command, HgrmArgs* args) {
  command->add_option("--hgrm", args->path,
                      "write the latency histogram as an HdrHistogram percentile distribution");
  command->add_option("--hgrm-unit", args->unit, "unit of the .hgrm values")
      ->check(CLI::IsMember({"ns", "us", "ms"}))
      ->capture_default_str();
}

double unit_ratio(const std::string& unit) {
  if (unit == "ns") return 1.0;
  if (unit == "ms") return 1e6;
  return 1e3;
}

// Writes the .hgrm if asked; false (after printing why) if that failed.
bool write_hgrm(const HgrmArgs& args, const Histogram& h, std::string_view command) {
  if (args.path.empty()) return true;
  const absl::Status s = h.write_percentile_distribution(args.path, 5, unit_ratio(args.unit));
  if (!s.ok()) {
    print_error(absl::StrCat(to_absl(command), ": ", s.message()));
    return false;
  }
  return true;
}

// "\r  3 s  sent 30000  decided 29998  errors 0  10000/s" on stderr, redrawn each second.
std::function<void(const LoadProgress&)> progress_printer(std::string_view decided_word) {
  if (isatty(STDERR_FILENO) == 0) return nullptr;
  auto last = std::make_shared<LoadProgress>();
  return [last, word = std::string(decided_word)](const LoadProgress& p) {
    const double dt = p.elapsed_s - last->elapsed_s;
    const double rate = dt > 0 ? static_cast<double>(p.sent - last->sent) / dt : 0.0;
    std::fprintf(stderr, "\r\033[K%5.0f s  sent %lld  %s %lld  errors %lld  %.0f/s", p.elapsed_s,
                 static_cast<long long>(p.sent), word.c_str(), static_cast<long long>(p.decided),
                 static_cast<long long>(p.errors), rate);
    std::fflush(stderr);
    *last = p;
  };
}

void clear_progress(bool shown) {
  if (shown) std::fprintf(stderr, "\r\033[K");
}

bool print_stdout(const std::string& text) {
  return std::fwrite(text.data(), 1, text.size(), stdout) == text.size() &&
         std::fflush(stdout) == 0;
}

// ---- sluice load -----------------------------------------------------------------------------

struct LoadArgs {
  std::string target;
  std::string mix = "fraud";
  LoadOptions options;
  bool json = false;
  HgrmArgs hgrm;
};

int run_load_command(LoadArgs& args) {
  LoadOptions& options = args.options;
  if (absl::Status s = parse_target(args.target, &options.host, &options.port); !s.ok()) {
    print_error(absl::StrCat("load: ", s.message()));
    return kExitUsage;
  }
  absl::StatusOr<LoadMix> mix = parse_load_mix(args.mix);
  if (!mix.ok()) {
    print_error(absl::StrCat("load: --mix: ", mix.status().message()));
    return kExitUsage;
  }
  options.workload.mix = *mix;
  options.progress = progress_printer("decided");
  options.stop = &g_stop_requested;
  install_stop_handlers();
  absl::StatusOr<LoadResult> result = run_load(options);
  clear_progress(options.progress != nullptr);
  if (!result.ok()) {
    print_error(absl::StrCat("load: ", result.status().message()));
    return absl::IsInvalidArgument(result.status()) ? kExitUsage : kExitFailed;
  }
  for (const std::string& line : result->error_messages) print_error(absl::StrCat("load: ", line));
  bool ok = result->ok();
  if (!write_hgrm(args.hgrm, result->latency, "load")) ok = false;
  const std::string text =
      args.json ? format_load_json(options, *result) + "\n" : format_load_text(options, *result);
  if (!print_stdout(text)) ok = false;
  if (g_stop_requested.load(std::memory_order_acquire)) {
    print_error("load: interrupted: the schedule was cut short");
  }
  return ok ? kExitOk : kExitFailed;
}

// ---- sluice floor ----------------------------------------------------------------------------

struct FloorArgs {
  FloorOptions options;
  bool json = false;
  HgrmArgs hgrm;
};

int run_floor_command(FloorArgs& args) {
  FloorOptions& options = args.options;
  options.progress = progress_printer("echoed");
  options.stop = &g_stop_requested;
  install_stop_handlers();
  absl::StatusOr<FloorResult> result = run_loopback_floor(options);
  clear_progress(options.progress != nullptr);
  if (!result.ok()) {
    print_error(absl::StrCat("floor: ", result.status().message()));
    return absl::IsInvalidArgument(result.status()) ? kExitUsage : kExitFailed;
  }
  for (const std::string& line : result->error_messages) print_error(absl::StrCat("floor: ", line));
  bool ok = result->ok();
  if (!write_hgrm(args.hgrm, result->rtt, "floor")) ok = false;
  const std::string text =
      args.json ? format_floor_json(options, *result) + "\n" : format_floor_text(options, *result);
  if (!print_stdout(text)) ok = false;
  return ok ? kExitOk : kExitFailed;
}

}  // namespace

void add_load_command(CLI::App& app, CommandAction* action) {
  auto args = std::make_shared<LoadArgs>();
  LoadOptions& o = args->options;
  CLI::App* load = app.add_subcommand(
      "load", "open-loop load at a constant rate; latency from intended send time to DECISION");
  load->add_option("--target", args->target, "the daemon's binary TCP address, HOST:PORT")
      ->required();
  load->add_option("--rate", o.rate, "events per second over all connections")
      ->capture_default_str();
  load->add_option("--duration", o.duration_s, "seconds of measured load")->capture_default_str();
  load->add_option("--connections", o.connections, "TCP connections")->capture_default_str();
  load->add_option("--mix", args->mix, "fraud (TRANSACTION), risk (ORDER) or both")
      ->capture_default_str();
  load->add_option("--accounts", o.workload.accounts, "account ids 1..N")->capture_default_str();
  load->add_option("--skew", o.workload.skew,
                   "Zipf exponent of account popularity (0 uniform, 1 classic Zipf)")
      ->capture_default_str();
  load->add_option("--rule-rate", o.workload.rule_rate,
                   "share of events whose values fire a rule (AMOUNT_ANOMALY, MAX_ORDER_QTY, "
                   "MAX_ORDER_NOTIONAL)")
      ->capture_default_str();
  load->add_option("--client-id", o.client_id_base,
                   "connection i says HELLO{BASE + i}; 0 sends no HELLO")
      ->capture_default_str();
  load->add_option("--seed", o.workload.seed, "seed of the event values")->capture_default_str();
  load->add_option("--warmup", o.warmup_s, "seconds of load before the measured period")
      ->capture_default_str();
  load->add_option("--time-scale", o.time_scale,
                   "event time runs this many times as fast as the wall clock (at most 1000)")
      ->capture_default_str();
  load->add_option("--drain-timeout", o.drain_timeout_s,
                   "seconds to wait for outstanding decisions after the last event is due")
      ->capture_default_str();
  load->add_option("--threads", o.threads, "sending threads (1..connections)")
      ->capture_default_str();
  load->add_option("--sndbuf", o.send_buffer_bytes, "SO_SNDBUF per connection (0: kernel default)")
      ->capture_default_str();
  load->add_flag("--subscribe", o.subscribe, "connection 0 subscribes to alerts and counts them");
  load->add_flag("--spin", o.spin, "poll instead of sleeping when early (uses a CPU per thread)");
  load->add_flag("--json", args->json, "print one JSON object on stdout");
  add_hgrm_options(load, &args->hgrm);
  load->callback([action, args] { *action = [args] { return run_load_command(*args); }; });
}

void add_floor_command(CLI::App& app, CommandAction* action) {
  auto args = std::make_shared<FloorArgs>();
  FloorOptions& o = args->options;
  CLI::App* floor = app.add_subcommand(
      "floor", "the kernel's loopback floor: an in-process TCP echo ping-pong, timed");
  floor->add_option("--rate", o.rate, "round trips per second (0: back to back)")
      ->capture_default_str();
  floor->add_option("--duration", o.duration_s, "seconds of measured round trips")
      ->capture_default_str();
  floor->add_option("--warmup", o.warmup_s, "seconds of round trips before the measured period")
      ->capture_default_str();
  floor->add_option("--size", o.size, "bytes per frame (44: a TRANSACTION frame)")
      ->capture_default_str();
  floor->add_flag("--spin", o.spin, "both ends poll non-blocking sockets instead of sleeping");
  floor->add_option("--fdatasync", o.fdatasync_dir,
                    "measure the disk instead: --size-byte pwrite + fdatasync round trips in a "
                    "preallocated file in this directory (the journal's floor)");
  floor->add_flag("--json", args->json, "print one JSON object on stdout");
  add_hgrm_options(floor, &args->hgrm);
  floor->callback([action, args] { *action = [args] { return run_floor_command(*args); }; });
}

}  // namespace sluice::tools
