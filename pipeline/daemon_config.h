// DaemonConfig: everything sluiced runs with, from built-in defaults, a TOML file and flags
// (in that order of precedence, lowest first). docs/daemon.md lists every key.
//
// The defaults run on a 2-core laptop: the network agent and the journal on one thread, the
// shards on the other, backoff idling, durability batch.
//
// Thread safety: plain values.
#ifndef SLUICE_PIPELINE_DAEMON_CONFIG_H_
#define SLUICE_PIPELINE_DAEMON_CONFIG_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "core/idle_strategy.h"
#include "io/journal_writer.h"
#include "pipeline/processor.h"

namespace sluice {

struct DaemonConfig {
  std::string data_dir = "./sluice-data";

  // [network]
  std::string listen = "127.0.0.1:7700";       // binary TCP, and UDP on the same port
  std::string text_listen = "127.0.0.1:7701";  // text TCP; empty: off
  bool udp = true;
  int64_t max_connections = 1024;
  int64_t max_output_bytes = 4 << 20;      // per connection: past it the reader is dropped
  int64_t max_in_flight = 65536;           // per connection: events published but unanswered

  // [metrics]
  std::string metrics_listen;  // loopback HTTP for Prometheus; empty: off

  // [journal]
  journal::Durability durability = journal::Durability::kBatch;
  int64_t segment_size = 128 << 20;
  int64_t max_batch_bytes = 1 << 20;
  // Durability none: a journal write waits for this much, or for max_write_delay_us
  // (journal::WriterOptions::min_write_bytes). 0: write as soon as the last write finished.
  int64_t min_write_bytes = 64 << 10;
  int64_t max_write_delay_us = 1000;
  // Zero-fill the next segment in idle time (journal::WriterOptions::prepare_segments): lower
  // commit latency for one extra write of each segment. batch and sync only.
  bool prepare_segments = true;

  // [engine]
  uint32_t shards = 1;
  int64_t input_ring_size = 16384;   // slots, a power of two
  int64_t output_ring_size = 16384;  // slots per shard, a power of two
  std::vector<int> cpus;  // pins threads in order: network+journal, then shards; empty: no pins
  IdleKind idle = IdleKind::kBackoff;
  // Threads for the shards: 1 puts every shard on one thread beside the io thread; more spreads
  // them round-robin; 0 runs them on the io thread itself (one thread for everything, for a
  // machine whose other core serves the clients).
  uint32_t shard_threads = 1;
  // Accounts the state is sized for at start, over all shards (0: grow as they come). A table
  // that grows rehashes on the shard's thread, a stall of tens of ms at a million accounts;
  // sizing up front costs the memory (and snapshot bytes) at once.
  int64_t expected_accounts = 0;

  // [snapshots]
  int64_t snapshot_every_events = 1'000'000;  // 0: off
  int64_t snapshot_interval_s = 60;           // 0: off
  int64_t snapshots_keep = 3;

  // [processors]: SPEC 2's thresholds and which processors run.
  ProcessorConfig processors;

  std::string log_level = "info";
};

// Reads `path` over `base`: keys present in the file replace base's values. Unknown keys, wrong
// types and bad values are errors naming the file and the key ("config sluice.toml: key
// journal.durability: expected none, batch or sync, got \"fast\"").
absl::StatusOr<DaemonConfig> load_config_file(const std::string& path, DaemonConfig base);

// Checks ranges and combinations; the error names the key (as in the file).
absl::Status validate(const DaemonConfig& config);

// One line a setting, for the start-up log and `sluiced --print-config`, in TOML.
std::string to_toml(const DaemonConfig& config);

}  // namespace sluice

#endif  // SLUICE_PIPELINE_DAEMON_CONFIG_H_
