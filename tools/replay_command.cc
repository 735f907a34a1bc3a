#include "tools/replay_command.h"

#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "core/wire_format.h"
#include "pipeline/replay.h"
#include "tools/data_dir_args.h"

namespace sluice::tools {
namespace {

struct ReplayArgs {
  std::string dir;
  int64_t from = 1;
  int64_t to = std::numeric_limits<int64_t>::max();
  uint32_t shards = 0;  // 0: not given
  std::string decisions_out;
  bool no_snapshots = false;
  std::string config;
};

int run(const ReplayArgs& args) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (!fs::is_directory(args.dir, ec)) {
    print_error(absl::StrCat("replay: ", args.dir, ": no such directory"));
    return kExitUsage;
  }
  if (args.from > args.to) {
    print_error(absl::StrCat("replay: --from ", args.from, " is after --to ", args.to));
    return kExitUsage;
  }
  std::string config_source;
  auto processors = processor_config_of(args.dir, args.config, &config_source);
  if (!processors.ok()) {
    print_error(absl::StrCat("replay: ", processors.status().message()));
    return kExitUsage;
  }
  ReplayOptions options{.journal_dir = journal_dir_of(args.dir),
                        .snapshot_dir = args.no_snapshots ? "" : snapshot_dir_of(args.dir),
                        .from = args.from,
                        .to = args.to,
                        .shards = args.shards,
                        .config = *processors,
                        .decisions_out = args.decisions_out};
  const bool tty = isatty(STDERR_FILENO) != 0;
  if (tty) {
    options.progress = [](int64_t events, int64_t seq) {
      std::fprintf(stderr, "\rreplaying: %lld events, at sequence %lld",
                   static_cast<long long>(events), static_cast<long long>(seq));
      std::fflush(stderr);
    };
  }
  absl::StatusOr<ReplayResult> result = run_replay(options);
  if (tty) std::fprintf(stderr, "\r\033[K");
  if (!result.ok()) {
    print_error(absl::StrCat("replay: ", result.status().message()));
    return kExitFailed;
  }
  const ReplayResult& r = *result;
  std::printf("processor thresholds from %s\n", config_source.c_str());
  for (const std::string& w : r.warnings) std::printf("snapshot not used: %s\n", w.c_str());
  if (r.snapshot_sequence > 0) {
    std::printf("started from the snapshot set at sequence %lld (%u shard%s, loaded in %.3f s)\n",
                static_cast<long long>(r.snapshot_sequence), r.shards, r.shards == 1 ? "" : "s",
                r.snapshot_load_seconds);
  } else if (!options.snapshot_dir.empty()) {
    std::printf("no usable snapshot at or before sequence %lld: replaying from the start\n",
                static_cast<long long>(args.from - 1));
  }
  std::printf(
      "replayed %lld events (sequences %lld..%lld) with %u shard%s in %.3f s: %.0f events/s\n",
      static_cast<long long>(r.events), static_cast<long long>(r.first_sequence),
      static_cast<long long>(r.last_sequence), r.shards, r.shards == 1 ? "" : "s", r.seconds,
      r.events_per_second());
  std::string verdicts;
  for (int v = 0; v < 6; ++v) {
    if (r.verdicts[v] == 0) continue;
    absl::StrAppend(&verdicts, verdicts.empty() ? "" : " ",
                    wire::verdict_name(static_cast<wire::Verdict>(v)).data(), "=", r.verdicts[v]);
  }
  std::string alerts;
  for (int rule = 1; rule < 7; ++rule) {
    if (r.alerts_by_rule[rule] == 0) continue;
    absl::StrAppend(&alerts, alerts.empty() ? "" : " ",
                    wire::rule_name(static_cast<wire::Rule>(rule)).data(), "=",
                    r.alerts_by_rule[rule]);
  }
  std::printf("decisions %lld (%s); alerts %lld (%s)\n", static_cast<long long>(r.decisions),
              verdicts.empty() ? "none" : verdicts.c_str(), static_cast<long long>(r.alerts),
              alerts.empty() ? "none" : alerts.c_str());
  if (r.torn_tail)
    std::printf("note: the journal ends in a torn tail (a crash cut its last record)\n");
  std::printf("digest %s\n", r.digest.hex().c_str());
  return kExitOk;
}

}  // namespace

void add_replay_command(CLI::App& app, CommandAction* action) {
  auto args = std::make_shared<ReplayArgs>();
  CLI::App* replay = app.add_subcommand(
      "replay", "run the processors over a journal and print events/s and a decisions digest");
  replay->add_option("DIR", args->dir, "journal directory (or a data directory holding journal/)")
      ->required();
  replay
      ->add_option("--from", args->from,
                   "first sequence to report (state comes from the newest snapshot set before "
                   "it, or from the start)")
      ->check(CLI::PositiveNumber);
  replay->add_option("--to", args->to, "last sequence to replay")->check(CLI::PositiveNumber);
  replay->add_option("--decisions-out", args->decisions_out,
                     "write the decisions as CSV (" + std::string(kDecisionsCsvHeader) + ")");
  replay
      ->add_option("--shards", args->shards,
                   "shards to run (decisions do not depend on it; default: the snapshot set's, "
                   "else 1); without --decisions-out they replay in parallel, a thread per CPU")
      ->check(CLI::Range(1, 1024));
  replay->add_option("--config", args->config,
                     "take the processor thresholds from this sluiced config (default: the ones "
                     "the daemon recorded in DIR/config.toml, else the built-in defaults)");
  replay->add_flag("--no-snapshots", args->no_snapshots,
                   "replay from the journal's start even when DIR/snapshots has a usable set");
  replay->callback([action, args] { *action = [args] { return run(*args); }; });
}

}  // namespace sluice::tools
