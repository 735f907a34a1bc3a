// Recovery: rebuild the shards from the newest complete set of valid snapshots plus the journal
// tail, or from the journal alone.
//
// A snapshot set is the N files "shard-k-of-N-S.snap", k = 0..N-1, of one sequence S. recover()
// takes the newest S for which every file of the set is valid: right magic, version, header and
// body CRC, shard index and count, the fingerprint of this config, and S present in the journal
// (a journal shorter than a snapshot, e.g. durability none and a power cut, makes it unusable).
// Each invalid file is reported in `warnings` with its path and why, and an older set, or in the
// end a replay from the journal's start, is used instead; snapshots taken with another shard
// count or another config are never restored (they are reported and ignored). Then every event
// of the journal after S goes through all shards (the tail's decisions and alerts go to
// tail_sink). A torn tail ends the journal (the writer truncates it when it opens); corruption is
// an error naming the segment file and offset.
//
// The recovered shards carry the state as of the journal's last sequence, including shard 0's
// client table (client_id -> last client_seq) for ingest's dedupe.
//
// Thread safety: recover() is reentrant and runs on the calling thread, except for the tail with
// RecoveryOptions::shard_sink: up to one thread per CPU, joined before it returns.
#ifndef SLUICE_PIPELINE_RECOVERY_H_
#define SLUICE_PIPELINE_RECOVERY_H_

#include <cstdint>
#include <functional>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "pipeline/keyed_processors.h"
#include "pipeline/processor.h"
#include "pipeline/state_store.h"

namespace sluice {

struct RecoveryOptions {
  std::string snapshot_dir;  // <data>/snapshots (missing: no snapshots)
  std::string journal_dir;   // <data>/journal
  // Shards to build. 0: as many as the newest usable snapshot set has (1 without one); results
  // never depend on it (replay uses this).
  uint32_t shards = 1;
  ProcessorConfig config;
  bool use_snapshots = true;
  // Only snapshots with S <= this are considered (replay --from F passes F - 1).
  int64_t max_snapshot_sequence = std::numeric_limits<int64_t>::max();
  // The tail replay stops after this sequence (replay --to).
  int64_t stop_after = std::numeric_limits<int64_t>::max();
  // Receives the tail's decisions and alerts; null: discarded.
  DecisionSink* tail_sink = nullptr;
  // Set, and with two or more shards: the tail runs on up to one thread per CPU, the calling
  // one included (each with its own journal reader and a contiguous group of the shards), shard
  // k's decisions and alerts going, in sequence order, to shard_sink(k, n) (called on the
  // calling thread, once per shard in order, before any tail thread starts; tail_sink is then
  // unused). Unset: the calling thread runs every shard, into tail_sink in sequence order.
  std::function<DecisionSink*(uint32_t shard, uint32_t shards)> shard_sink;
  StateStore::Options store;
  // When the calling thread runs every shard: its journal reader reads and checks the next
  // window on a second thread (journal::JournalReader::set_read_ahead).
  bool read_ahead = true;
  // Called about every 2^20 tail events with (events so far, last sequence).
  std::function<void(int64_t, int64_t)> progress;
};

struct Recovered {
  // Their sink is tail_sink (or a discarding one), or shard_sink's when the tail ran in parallel.
  std::vector<std::unique_ptr<Shard>> shards;
  int64_t snapshot_sequence = 0;            // S of the set loaded; 0: none
  std::vector<std::string> snapshot_files;  // the set loaded, shard 0 first
  int64_t first_sequence = 0;               // the first journal sequence replayed (0: none)
  int64_t last_sequence = 0;                // of the journal (the state is as of it)
  int64_t replayed_events = 0;
  bool torn_tail = false;
  double load_seconds = 0;            // choosing, checking and restoring snapshots
  double replay_seconds = 0;          // the journal tail
  std::vector<std::string> warnings;  // snapshots not used, and why

  ClientTable client_table() const { return shards.front()->client_table(); }
};

// Errors: bad options, the journal cannot be opened or is corrupt (DataLoss naming file and
// offset). Bad snapshots are warnings, not errors.
absl::StatusOr<Recovered> recover(const RecoveryOptions& options);

// A sink that drops everything (the default tail sink; shared, stateless).
DecisionSink& discard_sink();

}  // namespace sluice

#endif  // SLUICE_PIPELINE_RECOVERY_H_
