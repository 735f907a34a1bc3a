#include "pipeline/engine.h"

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <deque>
#include <filesystem>
#include <fstream>
#include <limits>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "core/absl_compat.h"
#include "core/clock.h"
#include "core/counter.h"
#include "core/cpu.h"
#include "core/doorbell.h"
#include "core/input_event.h"
#include "core/log.h"
#include "core/output_event.h"
#include "core/ring_buffer.h"
#include "core/wait_strategy.h"
#include "io/alerts_log.h"
#include "io/data_dir.h"
#include "io/journal_writer.h"
#include "io/metrics_server.h"
#include "io/network_server.h"
#include "io/snapshot_writer.h"
#include "io/socket_address.h"
#include "io/stats_file.h"
#include "pipeline/agent_runner.h"
#include "pipeline/decision_digest.h"
#include "pipeline/journal_stage.h"
#include "pipeline/recovery.h"
#include "pipeline/shard_stage.h"

namespace sluice {
namespace {

using InputRing = RingBuffer<InputEvent, SingleProducerSequencer>;
using OutputRing = RingBuffer<OutputEvent, SingleProducerSequencer>;

// What the supervisor publishes: gauges it samples from the sequences, and this run's digest.
struct EngineGauges {
  static constexpr std::array<std::string_view, 10> kFieldNames = {
      "input_cursor",         // ring sequences published by ingest
      "published_sequence",   // the journal sequence of the last event published
      "journal_lag",          // published, not yet copied to the journal
      "durable_lag",          // published, not yet durable (journal sequence space)
      "shard_lag_max",        // published, not yet handled by the slowest shard
      "output_lag_max",       // answers published by a shard, not yet taken by egress
      "first_sequence",       // the first journal sequence of this run's digest
      "last_sequence",        // the last one handled
      "decisions_digest",     // DecisionDigest of the decisions since first_sequence
      "decisions_digest_count"};
  Counter input_cursor;
  Counter published_sequence;
  Counter journal_lag;
  Counter durable_lag;
  Counter shard_lag_max;
  Counter output_lag_max;
  Counter first_sequence;
  Counter last_sequence;
  Counter decisions_digest;
  Counter decisions_digest_count;
};

// Writes `text` to a temp file and renames it over `path`: readers see the old or the new
// file, never a part.
absl::Status write_file_replacing(const std::string& path, const std::string& text) {
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << text;
    if (!out.flush()) return absl::InternalError(absl::StrCat("write ", tmp, " failed"));
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    return absl::InternalError(absl::StrCat("rename ", tmp, " to ", path, ": ", std::strerror(errno)));
  }
  return absl::OkStatus();
}

// A journal failure must not take the network agent down with it (they share a thread): the
// guard keeps the stage's exception as a status and stops calling it, so ingest can refuse
// input while egress keeps answering.
class JournalGuard final : public Agent {
 public:
  explicit JournalGuard(JournalStage<>& stage) : stage_(stage) {}
  std::string_view name() const override { return "journal"; }
  int do_work() override {
    if (failed_.load(std::memory_order_relaxed)) return 0;
    try {
      return stage_.do_work();
    } catch (const std::exception& e) {
      fail(e.what());
      return 0;
    }
  }
  void on_close() override {
    if (failed_.load(std::memory_order_relaxed)) return;
    try {
      stage_.on_close();
    } catch (const std::exception& e) {
      fail(e.what());
    }
  }
  bool failed() const noexcept { return failed_.load(std::memory_order_acquire); }
  std::string failure() const {
    std::lock_guard<std::mutex> lock(mu_);
    return failure_;
  }

 private:
  void fail(std::string what) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      failure_ = std::move(what);
    }
    failed_.store(true, std::memory_order_release);  // after the text: readers see both
  }
  JournalStage<>& stage_;
  std::atomic<bool> failed_{false};
  mutable std::mutex mu_;
  std::string failure_;
};

}  // namespace

class Engine::Impl {
 public:
  explicit Impl(const DaemonConfig& config)
      : config_(config), paths_(data_dir_paths(config.data_dir)) {}
  ~Impl() {
    (void)shutdown();
    if (housekeeping_set_) set_housekeeping_cpus({});
  }

  absl::Status start();
  absl::Status tick();
  absl::Status shutdown();
  const EngineEndpoints& endpoints() const { return endpoints_; }

 private:
  // The network server and the journal on the io thread; alerts log flushes after each pass.
  class IoAgent final : public Agent {
   public:
    explicit IoAgent(Impl& e) : e_(e) {}
    std::string_view name() const override { return "io"; }
    void on_start() override {
      if (absl::Status s = e_.server_->start(); !s.ok()) throw std::runtime_error(std::string(s.message()));
      // The server's start submitted, so this thread's io-wq exists: its kernel workers (the
      // journal's buffered writes and fdatasyncs) leave the io thread's pinned CPU. Not with
      // sync, where every decision waits for the worker's fdatasync: there the io thread has
      // little else to do meanwhile, while another CPU may be busy (a client on a 2-CPU
      // machine): moved there, the daemon's p50 at 10k events/s went from 0.36-0.39 ms to
      // 1.9-2.2 ms (perf/RESULTS.md, "End to end").
      const std::vector<int> cpus = housekeeping_cpus();
      if (!cpus.empty() && e_.config_.durability != journal::Durability::kSync) {
        if (absl::Status s = e_.server_->restrict_kernel_workers(cpus); !s.ok()) {
          log_warn("io_uring workers stay on the io thread's CPU: ", s.message());
        }
      }
    }
    int do_work() override {
      int work = e_.server_->poll();
      if (shards_before_journal) {
        // Durability none: the shards decide what was just received, and the answers are
        // sent, before the journal's write enters the kernel, which takes that write (~10 us
        // a pass) off the decisions' path (perf/RESULTS.md, "End to end").
        int decided = 0;
        for (ShardStage* s : inline_shards) decided += s->do_work();
        if (decided > 0) work += decided + e_.server_->send_outputs();
      }
      work += e_.journal_guard_->do_work();
      if (!shards_before_journal) {
        // With sync the shards decide what the journal's completions just made durable. With
        // batch a write is rarely submitted in a pass (one is in flight with its fdatasync),
        // and shards first measured no better there, with worse tails at 300k events/s.
        for (ShardStage* s : inline_shards) work += s->do_work();
      }
      e_.flush_alerts();
      // Input published or made durable: the shards may have work.
      if (work > 0 && inline_shards.empty()) e_.shard_bell_.ring();
      return work;
    }
    void on_close() override {
      e_.journal_guard_->on_close();
      for (ShardStage* s : inline_shards) s->on_close();
    }

    // engine.shard_threads = 0: the shards run here, on the io thread.
    std::vector<ShardStage*> inline_shards;
    bool shards_before_journal = false;  // durability none

   private:
    Impl& e_;
  };

  // Parks the io thread in the network server's io_uring: network activity, a shard's wake()
  // or a journal completion (its ring signals the server's wake eventfd) ends the park.
  class IoParker final : public Parker {
   public:
    explicit IoParker(Impl& e) : e_(e) {}
    void park(int64_t max_ns) noexcept override { e_.server_->wait(max_ns); }

   private:
    Impl& e_;
  };

  // Some shard stages on one thread. The generation (a sum of every sequence that can give a
  // shard work) is taken before each pass, so the parker can tell whether anything moved since.
  class ShardGroup final : public Agent {
   public:
    ShardGroup(Impl& e, std::vector<ShardStage*> stages, std::string name)
        : e_(e), stages_(std::move(stages)), name_(std::move(name)) {}
    std::string_view name() const override { return name_; }
    int do_work() override {
      seen_ = generation();
      int work = 0;
      for (ShardStage* s : stages_) work += s->do_work();
      // Answers to send, or input-ring space for held input: tell the io thread.
      if (work > 0) e_.server_->wake();
      return work;
    }
    void on_close() override {
      for (ShardStage* s : stages_) s->on_close();
    }
    int64_t generation() const noexcept {
      int64_t g = e_.input_ring_->cursor().get();
      if (e_.config_.durability == journal::Durability::kSync) g += e_.journal_stage_->durable().get();
      for (size_t k = 0; k < e_.outputs_.size(); ++k) g += e_.server_->output_sequence(k).get();
      return g;
    }
    int64_t seen() const noexcept { return seen_; }

   private:
    Impl& e_;
    std::vector<ShardStage*> stages_;
    std::string name_;
    int64_t seen_ = 0;
  };

  class ShardParker final : public Parker {
   public:
    ShardParker(Impl& e, const ShardGroup& group) : e_(e), group_(group) {}
    void park(int64_t max_ns) noexcept override {
      const uint32_t ticket = e_.shard_bell_.prepare();
      if (group_.generation() != group_.seen()) {
        e_.shard_bell_.cancel();
        return;
      }
      e_.shard_bell_.wait(ticket, max_ns);
    }

   private:
    Impl& e_;
    const ShardGroup& group_;
  };

  // The recovery tail's answers: decisions into this run's digest, alerts into the alerts log
  // (which appends only those it lacks).
  class RecoverySink final : public DecisionSink {
   public:
    explicit RecoverySink(Impl& e) : e_(e) {}
    void on_decision(const DecisionRecord& d) override { e_.tail_digest_.add(d); }
    void on_alert(const AlertRecord& a) override {
      e_.alerts_log_->add(to_output_event(a, 0));
    }

   private:
    Impl& e_;
  };

  absl::Status open_stats();
  absl::Status recover_state();
  absl::Status build_pipeline();
  absl::Status start_threads();
  void choose_housekeeping_cpus();
  absl::Status write_listening_file();
  void flush_alerts();
  absl::Status alerts_fence(const snapshot::Header& header);
  void update_gauges();
  DecisionDigest digest() const;
  bool pipeline_idle() const;
  bool wait_until(const std::function<bool()>& done, std::chrono::milliseconds timeout) const;
  absl::Status write_digest_file();

  const DaemonConfig config_;
  const DataDirPaths paths_;
  EngineEndpoints endpoints_;
  bool started_ = false;
  bool housekeeping_set_ = false;  // this engine set core/cpu.h's housekeeping CPUs
  bool shut_down_ = false;
  absl::Status failure_;  // what ended the run, if anything did

  std::unique_ptr<DataDirLock> lock_;
  std::unique_ptr<StatsFile> stats_;
  std::unique_ptr<StatsView> own_view_;  // for the metrics endpoint
  EngineGauges* gauges_ = nullptr;
  NetworkCounters* net_counters_ = nullptr;
  JournalCounters* journal_counters_ = nullptr;
  std::vector<ShardCounters*> shard_counters_;
  SharedHistogram* decision_latency_ = nullptr;
  SharedHistogram* durable_latency_ = nullptr;
  std::vector<SharedHistogram*> shard_latency_;  // receipt to each shard

  std::unique_ptr<journal::JournalWriter> writer_;
  std::unique_ptr<AlertsLog> alerts_log_;
  Counter alerts_log_errors_;
  std::unique_ptr<snapshot::SnapshotWriter> snapshot_writer_;
  std::vector<std::unique_ptr<Shard>> shards_;
  DecisionDigest tail_digest_;
  int64_t first_sequence_ = 0;  // of this run's digest (the recovery tail's first, or the next)
  int64_t recovered_last_ = 0;  // the journal's last sequence at start

  std::unique_ptr<WaitStrategy> wait_;
  std::unique_ptr<InputRing> input_ring_;
  std::vector<std::unique_ptr<OutputRing>> outputs_;
  // Alerts taken by egress, per shard, waiting for their turn in the alerts log.
  std::vector<std::deque<OutputEvent>> pending_alerts_;
  struct ShardProgress {
    int64_t done = 0;     // every answer of the shard up to this journal sequence was taken
    int64_t pending = 0;  // progress sampled, complete once egress takes `cursor`
    int64_t cursor = -1;
  };
  std::vector<ShardProgress> progress_;
  int64_t ring_base_ = 0;  // the journal sequence of input ring slot 0
  // Every alert up to this journal sequence is in the alerts log (the snapshot fence waits on
  // it). Written by the io thread.
  Sequence alerts_through_;
  std::unique_ptr<JournalStage<>> journal_stage_;
  std::unique_ptr<JournalGuard> journal_guard_;
  std::vector<std::unique_ptr<ShardStage>> shard_stages_;
  std::unique_ptr<NetworkServer> server_;
  Doorbell shard_bell_;

  std::unique_ptr<IoAgent> io_agent_;
  std::unique_ptr<IoParker> io_parker_;
  std::vector<std::unique_ptr<ShardGroup>> shard_groups_;
  std::vector<std::unique_ptr<ShardParker>> shard_parkers_;
  std::unique_ptr<AgentRunner> io_runner_;
  std::vector<std::unique_ptr<AgentRunner>> shard_runners_;
  std::unique_ptr<MetricsServer> metrics_;
  bool refused_ = false;
};

absl::Status Engine::Impl::start() {
  LogLevel level = LogLevel::kInfo;
  parse_log_level(config_.log_level, &level);
  set_log_level(level);
  choose_housekeeping_cpus();

  auto lock = DataDirLock::acquire(config_.data_dir);
  if (!lock.ok()) return lock.status();
  lock_ = std::move(*lock);
  // What this run's decisions are made under: `sluice replay DIR` reads the thresholds back.
  if (absl::Status s = write_file_replacing(paths_.config, to_toml(config_)); !s.ok()) return s;
  if (absl::Status s = open_stats(); !s.ok()) return s;
  stats_->set_state(DaemonState::kRecovering);
  if (absl::Status s = recover_state(); !s.ok()) return s;
  if (absl::Status s = build_pipeline(); !s.ok()) return s;
  if (absl::Status s = start_threads(); !s.ok()) return s;
  started_ = true;
  if (!config_.metrics_listen.empty()) {
    auto view = StatsView::open(paths_.stats);
    if (!view.ok()) return view.status();
    own_view_ = std::move(*view);
    auto metrics = MetricsServer::start(config_.metrics_listen,
                                        [this] { return prometheus_text(*own_view_); });
    if (!metrics.ok()) return metrics.status();
    metrics_ = std::move(*metrics);
    auto a = parse_socket_address(config_.metrics_listen);
    a->set_port(metrics_->port());
    endpoints_.metrics = a->to_string();
  }
  if (absl::Status s = write_listening_file(); !s.ok()) return s;
  stats_->set_state(DaemonState::kRunning);
  log_info("sluiced ready: binary ", endpoints_.binary,
           endpoints_.text.empty() ? "" : absl::StrCat(", text ", endpoints_.text),
           endpoints_.udp.empty() ? "" : absl::StrCat(", udp ", endpoints_.udp),
           endpoints_.metrics.empty() ? "" : absl::StrCat(", metrics http://", endpoints_.metrics, "/metrics"),
           "; data ", config_.data_dir, "; durability ", journal::durability_name(config_.durability),
           "; ", config_.shards, " shard", config_.shards == 1 ? "" : "s");
  return absl::OkStatus();
}

absl::Status Engine::Impl::open_stats() {
  StatsLayout layout;
  const size_t engine_block = layout.add_counters<EngineGauges>("engine");
  const size_t net_block = layout.add_counters<NetworkCounters>("net");
  const size_t journal_block = layout.add_counters<JournalCounters>("journal");
  std::vector<size_t> shard_blocks;
  for (uint32_t k = 0; k < config_.shards; ++k) {
    shard_blocks.push_back(layout.add_counters<ShardCounters>(absl::StrCat("shard", k)));
  }
  const size_t decision_hist = layout.add_histogram("ingest_to_decision");
  const size_t durable_hist = layout.add_histogram("ingest_to_durable");
  std::vector<size_t> shard_hists;
  for (uint32_t k = 0; k < config_.shards; ++k) {
    shard_hists.push_back(layout.add_histogram(absl::StrCat("ingest_to_shard", k)));
  }
  auto stats = StatsFile::create(paths_.stats, layout);
  if (!stats.ok()) return stats.status();
  stats_ = std::move(*stats);
  gauges_ = stats_->place<EngineGauges>(engine_block);
  net_counters_ = stats_->place<NetworkCounters>(net_block);
  journal_counters_ = stats_->place<JournalCounters>(journal_block);
  for (size_t b : shard_blocks) shard_counters_.push_back(stats_->place<ShardCounters>(b));
  decision_latency_ = &stats_->histogram(decision_hist);
  durable_latency_ = &stats_->histogram(durable_hist);
  for (size_t h : shard_hists) shard_latency_.push_back(&stats_->histogram(h));
  return absl::OkStatus();
}

absl::Status Engine::Impl::recover_state() {
  // The writer first: it cuts a torn tail, so recovery reads exactly what appending continues.
  auto writer = journal::JournalWriter::open(journal::WriterOptions{
      .dir = paths_.journal,
      .segment_size = static_cast<uint64_t>(config_.segment_size),
      .durability = config_.durability,
      .max_batch_bytes = static_cast<size_t>(config_.max_batch_bytes),
      .min_write_bytes = static_cast<size_t>(config_.min_write_bytes),
      .max_write_delay_ns = config_.max_write_delay_us * 1000,
      .prepare_segments = config_.prepare_segments});
  if (!writer.ok()) return writer.status();
  writer_ = std::move(*writer);
  if (!writer_->recovery_note().empty()) log_warn("journal: ", writer_->recovery_note());
  if (!writer_->using_io_uring()) log_warn("journal: ", writer_->fallback_reason());

  auto alerts = AlertsLog::open(paths_.alerts_log, writer_->last_sequence());
  if (!alerts.ok()) return alerts.status();
  alerts_log_ = std::move(*alerts);
  if (alerts_log_->lines_dropped() > 0) {
    log_warn("alerts log: removed ", alerts_log_->lines_dropped(),
             " alerts of events after journal sequence ", writer_->last_sequence(),
             " (answered before a crash, never journaled)");
  }

  RecoverySink sink(*this);
  RecoveryOptions options{.snapshot_dir = paths_.snapshots,
                          .journal_dir = paths_.journal,
                          .shards = config_.shards,
                          .config = config_.processors,
                          .tail_sink = &sink};
  auto recovered = recover(options);
  if (!recovered.ok()) return recovered.status();
  for (const std::string& w : recovered->warnings) log_warn("recovery: ", w);
  if (recovered->last_sequence != writer_->last_sequence()) {
    return absl::InternalError(absl::StrCat(
        "recovery read the journal to sequence ", recovered->last_sequence,
        " but the journal writer continues after ", writer_->last_sequence(), " (", paths_.journal, ")"));
  }
  log_info("recovered ", config_.shards, " shard", config_.shards == 1 ? "" : "s", " to sequence ",
           recovered->last_sequence, ": ",
           recovered->snapshot_sequence > 0
               ? absl::StrCat("snapshot at ", recovered->snapshot_sequence, " (", recovered->load_seconds, " s)")
               : std::string("no snapshot"),
           ", then ", recovered->replayed_events, " journal events (", recovered->replay_seconds, " s)");
  first_sequence_ = recovered->first_sequence > 0 ? recovered->first_sequence : writer_->next_sequence();
  recovered_last_ = recovered->last_sequence;
  shards_ = std::move(recovered->shards);
  if (config_.expected_accounts > 0) {
    // Each shard owns about 1/N of the accounts; a tenth more for the hash's unevenness.
    const auto per_shard = static_cast<size_t>(config_.expected_accounts / config_.shards * 11 / 10 + 1);
    for (auto& shard : shards_) shard->reserve(per_shard);
  }
  if (absl::Status s = alerts_log_->flush(); !s.ok()) return s;
  return absl::OkStatus();
}

absl::Status Engine::Impl::build_pipeline() {
  auto snapshots = snapshot::SnapshotWriter::start(snapshot::WriterOptions{
      .dir = paths_.snapshots,
      .keep = static_cast<int>(config_.snapshots_keep),
      .before_commit = [this](const snapshot::Header& h) { return alerts_fence(h); }});
  if (!snapshots.ok()) return snapshots.status();
  snapshot_writer_ = std::move(*snapshots);

  // Agents poll; nobody waits through the ring's wait strategy except a producer's next(),
  // which ingest never calls (it uses try_next).
  wait_ = make_yielding_wait_strategy();
  input_ring_ = std::make_unique<InputRing>(config_.input_ring_size, *wait_);
  for (uint32_t k = 0; k < config_.shards; ++k) {
    outputs_.push_back(std::make_unique<OutputRing>(config_.output_ring_size, *wait_));
  }

  ring_base_ = writer_->next_sequence();
  pending_alerts_.resize(config_.shards);
  progress_.assign(config_.shards, ShardProgress{.done = ring_base_ - 1, .pending = ring_base_ - 1});
  alerts_through_.set(ring_base_ - 1);
  journal_stage_ = std::make_unique<JournalStage<>>(*input_ring_, *writer_, std::vector<const Sequence*>{},
                                                    journal_counters_, durable_latency_);
  journal_guard_ = std::make_unique<JournalGuard>(*journal_stage_);
  input_ring_->add_gating_sequence(journal_stage_->sequence());
  std::vector<const Sequence*> shard_deps;
  if (config_.durability == journal::Durability::kSync) shard_deps.push_back(&journal_stage_->durable());
  for (uint32_t k = 0; k < config_.shards; ++k) {
    shard_stages_.push_back(std::make_unique<ShardStage>(
        *input_ring_, shard_deps, *shards_[k], *outputs_[k], snapshot_writer_.get(),
        shard_counters_[k], ShardStageOptions{.latency = shard_latency_[k]}));
    input_ring_->add_gating_sequence(shard_stages_.back()->sequence());
  }

  ClientSeqTable clients;
  for (auto [client_id, last_seq] : shards_.front()->client_table()) clients[client_id] = last_seq;
  NetworkOptions net;
  net.listen = config_.listen;
  net.text_listen = config_.text_listen;
  net.udp = config_.udp;
  net.max_connections = static_cast<uint32_t>(config_.max_connections);
  net.max_output_bytes = static_cast<size_t>(config_.max_output_bytes);
  net.max_in_flight = static_cast<uint32_t>(config_.max_in_flight);
  net.snapshot_every_events = config_.snapshot_every_events;
  net.snapshot_interval_ns = config_.snapshot_interval_s * 1'000'000'000;
  net.snapshot_gate = &snapshot_writer_->ready();
  net.alert_sink = [this](const OutputEvent& a) {
    pending_alerts_[shard_of(a.account_id, config_.shards)].push_back(a);
  };
  net.decision_latency = decision_latency_;
  std::vector<OutputRing*> outputs;
  for (auto& o : outputs_) outputs.push_back(o.get());
  auto server = NetworkServer::create(std::move(net), writer_->next_sequence(), std::move(clients),
                                      *input_ring_, outputs, net_counters_);
  if (!server.ok()) return server.status();
  server_ = std::move(*server);
  for (size_t k = 0; k < outputs_.size(); ++k) outputs_[k]->add_gating_sequence(server_->output_sequence(k));
  log_info("network: ", server_->describe());

  // Journal completions wake the io thread out of its park in the network ring.
  if (absl::Status s = writer_->signal_completions_to(server_->wake_fd()); !s.ok()) {
    log_warn("journal: completions cannot wake the io thread (", s.message(),
             "); it will poll while a write is in flight");
  }

  auto with_port = [&](const std::string& listen, uint16_t port) {
    auto a = parse_socket_address(listen);
    a->set_port(port);
    return a->to_string();
  };
  endpoints_.binary = with_port(config_.listen, server_->port());
  if (!config_.text_listen.empty()) endpoints_.text = with_port(config_.text_listen, server_->text_port());
  if (config_.udp && server_->udp_port() != 0) endpoints_.udp = with_port(config_.listen, server_->udp_port());
  return absl::OkStatus();
}

// With engine.cpus, the helper threads (snapshot writer, state prefaulter, journal segment
// preparation, metrics) and the io thread's io_uring workers run on the allowed CPUs that no
// agent is pinned to, when there are any: a helper started from a pinned thread would otherwise
// inherit its CPU and preempt it (at 300k events/s the prefaulter and the journal's kernel
// worker took ~2 s of CPU in a 10 s run, perf/RESULTS.md "End to end").
void Engine::Impl::choose_housekeeping_cpus() {
  if (config_.cpus.empty()) return;
  const absl::StatusOr<std::vector<int>> allowed = allowed_cpus();
  if (!allowed.ok()) {
    log_warn("helper threads stay unpinned: ", allowed.status().message());
    return;
  }
  const size_t threads = 1 + std::min(config_.shard_threads, config_.shards);
  std::vector<int> agents;
  for (size_t t = 0; t < threads; ++t) agents.push_back(config_.cpus[t % config_.cpus.size()]);
  std::vector<int> rest;
  for (int cpu : *allowed) {
    if (std::find(agents.begin(), agents.end(), cpu) == agents.end()) rest.push_back(cpu);
  }
  if (rest.empty()) {
    log_info("helper threads share the agents' CPUs: no other CPU is allowed");
    return;
  }
  log_info("helper threads and io_uring workers on cpu ", absl::StrJoin(rest, ","));
  set_housekeeping_cpus(std::move(rest));
  housekeeping_set_ = true;
}

absl::Status Engine::Impl::start_threads() {
  const IdleConfig base{.kind = config_.idle};
  auto cpu_for = [&](size_t thread) -> std::optional<int> {
    if (config_.cpus.empty()) return std::nullopt;
    return config_.cpus[thread % config_.cpus.size()];
  };

  // Shards: engine.shard_threads groups, round-robin; 0: on the io thread.
  const uint32_t groups = std::min(config_.shard_threads, config_.shards);
  std::vector<std::vector<ShardStage*>> members(groups);
  for (uint32_t k = 0; groups > 0 && k < config_.shards; ++k) {
    members[k % groups].push_back(shard_stages_[k].get());
  }
  for (uint32_t g = 0; g < groups; ++g) {
    shard_groups_.push_back(std::make_unique<ShardGroup>(
        *this, members[g], groups == 1 ? std::string("shards") : absl::StrCat("shards", g)));
    shard_parkers_.push_back(std::make_unique<ShardParker>(*this, *shard_groups_.back()));
    IdleConfig idle = base;
    idle.parker = shard_parkers_.back().get();
    shard_runners_.push_back(std::make_unique<AgentRunner>(
        *shard_groups_.back(), RunnerOptions{.idle = idle, .cpu = cpu_for(1 + g)}));
  }
  io_agent_ = std::make_unique<IoAgent>(*this);
  if (groups == 0) {
    for (auto& stage : shard_stages_) io_agent_->inline_shards.push_back(stage.get());
    io_agent_->shards_before_journal = config_.durability == journal::Durability::kNone;
  }
  io_parker_ = std::make_unique<IoParker>(*this);
  IdleConfig idle = base;
  idle.parker = io_parker_.get();
  io_runner_ = std::make_unique<AgentRunner>(*io_agent_, RunnerOptions{.idle = idle, .cpu = cpu_for(0)});

  for (auto& r : shard_runners_) {
    if (absl::Status s = r->start(); !s.ok()) return s;
  }
  if (absl::Status s = io_runner_->start(); !s.ok()) return s;
  std::string mapping = absl::StrCat(
      "threads: io (network + journal",
      groups == 0 ? absl::StrCat(" + ", config_.shards, " shard", config_.shards == 1 ? "" : "s") : "",
      ")", config_.cpus.empty() ? "" : absl::StrCat(" on cpu ", *cpu_for(0)));
  for (uint32_t g = 0; g < groups; ++g) {
    absl::StrAppend(&mapping, "; ", shard_groups_[g]->name().data(), " (", members[g].size(), " shard",
                    members[g].size() == 1 ? "" : "s", ")",
                    config_.cpus.empty() ? "" : absl::StrCat(" on cpu ", *cpu_for(1 + g)));
  }
  absl::StrAppend(&mapping, "; idle ", idle_kind_name(config_.idle).data());
  log_info(mapping);
  return absl::OkStatus();
}

absl::Status Engine::Impl::write_listening_file() {
  std::string text = absl::StrCat("binary ", endpoints_.binary, "\n");
  if (!endpoints_.text.empty()) absl::StrAppend(&text, "text ", endpoints_.text, "\n");
  if (!endpoints_.udp.empty()) absl::StrAppend(&text, "udp ", endpoints_.udp, "\n");
  if (!endpoints_.metrics.empty()) absl::StrAppend(&text, "metrics ", endpoints_.metrics, "\n");
  return write_file_replacing(paths_.root + "/listening", text);
}

// Egress takes answers from N output rings, so alerts reach it out of sequence order across
// shards. The log gets them in (sequence, rule) order: an alert is released once every shard is
// known to have published all its answers up to that sequence (its progress, read before its
// output cursor, once egress has taken that cursor), then merged from the per-shard queues.
// That order is what lets a restarted daemon tell exactly which alerts the log already holds.
void Engine::Impl::flush_alerts() {
  int64_t watermark = std::numeric_limits<int64_t>::max();
  for (size_t k = 0; k < outputs_.size(); ++k) {
    ShardProgress& p = progress_[k];
    if (server_->output_sequence(k).get() >= p.cursor) {
      p.done = p.pending;
      // Progress first, then the cursor: the shard publishes its answers before its progress,
      // so every answer up to `pending` is at or below `cursor`.
      p.pending = ring_base_ + shard_stages_[k]->sequence().get();
      p.cursor = outputs_[k]->cursor().get();
    }
    watermark = std::min(watermark, p.done);
  }
  for (;;) {
    std::deque<OutputEvent>* next = nullptr;
    for (auto& q : pending_alerts_) {
      if (q.empty() || q.front().seq > watermark) continue;
      if (next == nullptr || q.front().seq < next->front().seq) next = &q;
    }
    if (next == nullptr) break;
    alerts_log_->add(next->front());
    next->pop_front();
  }
  if (alerts_log_->has_buffered()) {
    if (absl::Status s = alerts_log_->flush(); !s.ok()) {
      if (alerts_log_errors_.get() == 0) log_error("alerts log: ", s.message());
      alerts_log_errors_.add();
      return;
    }
  }
  if (watermark != std::numeric_limits<int64_t>::max() && watermark > alerts_through_.get()) {
    alerts_through_.set(watermark);
  }
}

// On the snapshot writer's thread, before a snapshot is written: every alert of the events it
// covers must be in the alerts log, on disk, so a restart from it never lacks one.
absl::Status Engine::Impl::alerts_fence(const snapshot::Header& header) {
  const int64_t target = header.sequence;
  if (!wait_until([&] { return alerts_through_.get() >= target; }, std::chrono::seconds(10))) {
    return absl::DeadlineExceededError(absl::StrCat(
        "snapshot at sequence ", target, ": the alerts log did not reach it within 10 s"));
  }
  return alerts_log_->sync();
}

bool Engine::Impl::wait_until(const std::function<bool()>& done,
                              std::chrono::milliseconds timeout) const {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!done()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(std::chrono::microseconds(200));
  }
  return true;
}

DecisionDigest Engine::Impl::digest() const {
  DecisionDigest d = tail_digest_;
  for (const ShardCounters* c : shard_counters_) {
    d.combine(DecisionDigest::from_parts(static_cast<uint64_t>(c->digest_sum.get()),
                                         static_cast<uint64_t>(c->digest_count.get())));
  }
  return d;
}

void Engine::Impl::update_gauges() {
  const int64_t cursor = input_ring_->cursor().get();
  gauges_->input_cursor.set(cursor + 1);
  gauges_->published_sequence.set(ring_base_ + cursor);
  gauges_->journal_lag.set(cursor - journal_stage_->sequence().get());
  gauges_->durable_lag.set(cursor - journal_stage_->durable().get());
  int64_t shard_lag = 0;
  int64_t last = 0;
  for (const auto& s : shard_stages_) shard_lag = std::max(shard_lag, cursor - s->sequence().get());
  for (const ShardCounters* c : shard_counters_) last = std::max(last, c->last_sequence.get());
  gauges_->shard_lag_max.set(shard_lag);
  int64_t out_lag = 0;
  for (size_t k = 0; k < outputs_.size(); ++k) {
    out_lag = std::max(out_lag, outputs_[k]->cursor().get() - server_->output_sequence(k).get());
  }
  gauges_->output_lag_max.set(out_lag);
  const DecisionDigest d = digest();
  gauges_->first_sequence.set(first_sequence_);
  // Recovery replayed the journal up to recovered_last_ before any shard stage ran.
  gauges_->last_sequence.set(std::max({last, recovered_last_, first_sequence_ - 1}));
  gauges_->decisions_digest.set(static_cast<int64_t>(d.value()));
  gauges_->decisions_digest_count.set(static_cast<int64_t>(d.count()));
}

absl::Status Engine::Impl::tick() {
  stats_->heartbeat();
  update_gauges();
  if (!failure_.ok()) return failure_;
  if (journal_guard_->failed() && !refused_) {
    refused_ = true;
    const std::string why = journal_guard_->failure();
    log_error("journal failed: ", why, "; refusing input");
    // With sync durability the shards only ever see durable events: nothing after the last
    // durable one will be answered.
    const int64_t answered_through = config_.durability == journal::Durability::kSync
                                         ? writer_->durable().get()
                                         : std::numeric_limits<int64_t>::max();
    server_->refuse_input(absl::StrCat("journal failed: ", why), answered_through);
    failure_ = absl::DataLossError(absl::StrCat("journal failed: ", why));
    return failure_;
  }
  if (absl::Status s = server_->status(); !s.ok()) {
    failure_ = s;
    return failure_;
  }
  for (const auto& r : shard_runners_) {
    if (!r->is_running()) {
      failure_ = r->status().ok() ? absl::InternalError("a shard thread stopped") : r->status();
      return failure_;
    }
  }
  if (!io_runner_->is_running()) {
    failure_ = io_runner_->status().ok() ? absl::InternalError("the io thread stopped") : io_runner_->status();
    return failure_;
  }
  return absl::OkStatus();
}

bool Engine::Impl::pipeline_idle() const {
  const int64_t cursor = input_ring_->cursor().get();
  const bool failed = journal_guard_->failed();
  if (!failed && journal_stage_->sequence().get() != cursor) return false;
  // The shards answer every published event; with sync durability and a failed journal, every
  // event it made durable (they never see the rest).
  const int64_t target = failed && config_.durability == journal::Durability::kSync
                             ? journal_stage_->durable().get()
                             : cursor;
  for (const auto& stage : shard_stages_) {
    if (stage->sequence().get() < target) return false;
  }
  return true;
}

absl::Status Engine::Impl::shutdown() {
  if (shut_down_) return failure_;
  shut_down_ = true;
  if (!started_) {
    // A failed start: stop whatever runs, keep the data as it is.
    if (io_runner_ != nullptr) io_runner_->stop();
    for (auto& r : shard_runners_) r->stop();
    if (stats_ != nullptr) stats_->set_state(DaemonState::kFailed);
    return failure_;
  }
  absl::Status result = failure_;
  auto note = [&](const absl::Status& s) {
    if (!s.ok()) {
      log_error("shutdown: ", s.message());
      if (result.ok()) result = s;
    }
  };
  stats_->set_state(DaemonState::kStopping);
  std::filesystem::remove(paths_.root + "/listening");
  log_info("stopping: no new input; answering what was taken");
  server_->stop_accepting();
  const bool threads_ok = io_runner_->is_running() &&
                          std::all_of(shard_runners_.begin(), shard_runners_.end(),
                                      [](const auto& r) { return r->is_running(); });
  if (threads_ok && !wait_until([&] { return pipeline_idle(); }, std::chrono::seconds(30))) {
    note(absl::DeadlineExceededError("the pipeline did not drain within 30 s"));
  }
  for (auto& r : shard_runners_) r->stop();
  // Egress takes every answer the shards made (alerts too), and the network says goodbye.
  if (io_runner_->is_running() &&
      !wait_until(
          [&] {
            for (size_t k = 0; k < outputs_.size(); ++k) {
              if (server_->output_sequence(k).get() != outputs_[k]->cursor().get()) return false;
            }
            return server_->drained();
          },
          std::chrono::seconds(30))) {
    note(absl::DeadlineExceededError("egress did not drain within 30 s"));
  }
  io_runner_->stop();
  for (auto& r : shard_runners_) {
    if (!r->status().ok()) note(r->status());
  }
  if (!io_runner_->status().ok()) note(io_runner_->status());
  if (journal_guard_->failed()) note(absl::DataLossError(journal_guard_->failure()));
  if (metrics_ != nullptr) metrics_->stop();

  // The journal: flush and fsync what was taken (whatever the durability mode).
  if (!journal_guard_->failed()) note(writer_->close());
  // The alerts log, then the snapshots (whose fence wants the alerts on disk). Two rounds: the
  // first completes the progress samples taken while running, the second the final ones.
  flush_alerts();
  flush_alerts();
  note(alerts_log_->sync());
  if (!journal_guard_->failed()) {
    for (auto& s : shard_stages_) note(s->snapshot_now());
  }
  note(snapshot_writer_->flush());
  update_gauges();
  note(write_digest_file());
  const DecisionDigest d = digest();
  log_info("stopped at sequence ", gauges_->last_sequence.get(), "; decisions ", d.count(),
           " since sequence ", first_sequence_, ", digest ", d.hex());
  stats_->set_state(result.ok() ? DaemonState::kStopped : DaemonState::kFailed);
  return result;
}

absl::Status Engine::Impl::write_digest_file() {
  const DecisionDigest d = digest();
  return write_file_replacing(
      paths_.root + "/decisions.digest",
      absl::StrCat("sequences ", first_sequence_, "..", gauges_->last_sequence.get(), " decisions ",
                   d.count(), " digest ", d.hex(), "\n"));
}

absl::StatusOr<std::unique_ptr<Engine>> Engine::start(const DaemonConfig& config) {
  if (absl::Status s = validate(config); !s.ok()) return s;
  auto impl = std::make_unique<Impl>(config);
  if (absl::Status s = impl->start(); !s.ok()) return s;
  return std::unique_ptr<Engine>(new Engine(std::move(impl)));
}

Engine::Engine(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Engine::~Engine() = default;
absl::Status Engine::tick() { return impl_->tick(); }
absl::Status Engine::shutdown() { return impl_->shutdown(); }
const EngineEndpoints& Engine::endpoints() const { return impl_->endpoints(); }

}  // namespace sluice
