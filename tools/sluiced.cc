// sluiced: the daemon (SPEC section 3; docs/daemon.md).
//
// Built-in defaults, then --config FILE (TOML), then flags. Recovers, listens, runs until
// SIGINT or SIGTERM, then stops ingest, drains, flushes, snapshots and exits 0; exit 1 when the
// run failed (a journal write error, a stage that died), 2 on a bad command line or config.
#include <signal.h>
#include <time.h>

#include <csignal>
#include <cstdio>
#include <optional>
#include <string>

#include "CLI/CLI.hpp"
#include "core/cpu.h"
#include "core/log.h"
#include "pipeline/daemon_config.h"
#include "pipeline/engine.h"

namespace {

constexpr int kExitOk = 0;
constexpr int kExitFailed = 1;
constexpr int kExitUsage = 2;

// One line on stderr, like every sluice error.
void fail_line(const std::string& what) { std::fprintf(stderr, "sluiced: %s\n", what.c_str()); }

struct Flags {
  std::string config;
  std::optional<std::string> data_dir, listen, text_listen, metrics_listen, durability, cpus,
      idle, log_level;
  std::optional<uint32_t> shards, shard_threads;
  std::optional<int64_t> expected_accounts;
  bool no_udp = false;
  bool print_config = false;
};

// Flags over the file over the defaults. Errors name the flag or the key.
absl::StatusOr<sluice::DaemonConfig> resolve(const Flags& f) {
  sluice::DaemonConfig c;
  if (!f.config.empty()) {
    auto loaded = sluice::load_config_file(f.config, c);
    if (!loaded.ok()) return loaded.status();
    c = *loaded;
  }
  if (f.data_dir) c.data_dir = *f.data_dir;
  if (f.listen) c.listen = *f.listen;
  if (f.text_listen) c.text_listen = *f.text_listen;
  if (f.metrics_listen) c.metrics_listen = *f.metrics_listen;
  if (f.shards) c.shards = *f.shards;
  if (f.shard_threads) c.shard_threads = *f.shard_threads;
  if (f.expected_accounts) c.expected_accounts = *f.expected_accounts;
  if (f.no_udp) c.udp = false;
  if (f.log_level) c.log_level = *f.log_level;
  if (f.durability) {
    auto d = sluice::journal::parse_durability(*f.durability);
    if (!d.ok()) return absl::InvalidArgumentError(absl::StrCat("--durability: ", d.status().message()));
    c.durability = *d;
  }
  if (f.idle) {
    auto k = sluice::parse_idle_kind(*f.idle);
    if (!k.ok()) return absl::InvalidArgumentError(absl::StrCat("--idle: ", k.status().message()));
    c.idle = *k;
  }
  if (f.cpus) {
    auto cpus = sluice::parse_cpu_list(*f.cpus);
    if (!cpus.ok()) return absl::InvalidArgumentError(absl::StrCat("--cpus: ", cpus.status().message()));
    c.cpus = *cpus;
  }
  if (absl::Status s = sluice::validate(c); !s.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat(f.config.empty() ? "" : absl::StrCat("config ", f.config, ": "), s.message()));
  }
  return c;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"sluiced: the sluice event processor daemon"};
  app.name("sluiced");
  Flags f;
  app.add_option("--config", f.config, "TOML configuration file (keys: docs/daemon.md)");
  app.add_option("--data-dir", f.data_dir, "journal, snapshots, alerts log and stats (./sluice-data)");
  app.add_option("--listen", f.listen, "binary TCP and UDP address HOST:PORT (127.0.0.1:7700)");
  app.add_option("--text-listen", f.text_listen, "text TCP address (127.0.0.1:7701; empty: off)");
  app.add_option("--metrics-listen", f.metrics_listen, "Prometheus endpoint HOST:PORT (off)");
  app.add_option("--shards", f.shards, "processing shards (1)");
  app.add_option("--shard-threads", f.shard_threads,
                 "threads for the shards (1); 0 runs them on the io thread");
  app.add_option("--expected-accounts", f.expected_accounts,
                 "size the state for this many accounts at start (0: grow as they come)")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--durability", f.durability, "none | batch | sync (batch)");
  app.add_option("--cpus", f.cpus, "pin threads in order io, shards...: e.g. 0,1");
  app.add_option("--idle", f.idle, "busy | yield | backoff (backoff)");
  app.add_option("--log-level", f.log_level, "debug | info | warn | error (info)");
  app.add_flag("--no-udp", f.no_udp, "do not listen for UDP");
  app.add_flag("--print-config", f.print_config, "print the resolved configuration as TOML and exit");
  try {
    app.parse(argc, argv);
  } catch (const CLI::Success& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    fail_line(absl::StrCat(e.what(), " (see 'sluiced --help')"));
    return kExitUsage;
  }
  auto config = resolve(f);
  if (!config.ok()) {
    fail_line(std::string(config.status().message()));
    return kExitUsage;
  }
  if (f.print_config) {
    std::fputs(sluice::to_toml(*config).c_str(), stdout);
    return kExitOk;
  }

  // Every thread inherits this mask, so the signals reach only the sigtimedwait below. A
  // client's closed socket is an error code, not SIGPIPE; a file over RLIMIT_FSIZE is EFBIG
  // (the journal reports it), not SIGXFSZ.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
  std::signal(SIGPIPE, SIG_IGN);
  std::signal(SIGXFSZ, SIG_IGN);

  auto engine = sluice::Engine::start(*config);
  if (!engine.ok()) {
    fail_line(std::string(engine.status().message()));
    return kExitFailed;
  }
  absl::Status failure;
  for (;;) {
    const timespec tick{0, 100'000'000};
    const int sig = sigtimedwait(&stop_signals, nullptr, &tick);
    if (sig == SIGINT || sig == SIGTERM) {
      sluice::log_info("received ", sig == SIGINT ? "SIGINT" : "SIGTERM");
      break;
    }
    failure = (*engine)->tick();
    if (!failure.ok()) break;
  }
  const absl::Status stopped = (*engine)->shutdown();
  if (!stopped.ok()) {
    fail_line(std::string(stopped.message()));
    return kExitFailed;
  }
  return kExitOk;
}
