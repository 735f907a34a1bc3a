// Replay: runs the processors over a journal at full speed, with no network (Kappa-style
// reprocessing), and fingerprints the decisions so a replay can be checked against the live run
// or another replay.
//
// Every event from the journal's first sequence is folded into the shards' state, so decisions
// are exactly the live ones; only decisions with from <= seq <= to are reported (written to the
// decisions file and counted in the digest). When a snapshot directory is given, the replay
// starts from the newest complete, valid snapshot set taken at a sequence S < from (state as of
// S, pipeline/recovery.h) and reads the journal from S + 1: the same decisions, sooner.
//
// Thread safety: run_replay is reentrant. It runs on the calling thread, but with several shards
// and no decisions file the shards replay on up to one thread per CPU (joined before it
// returns).
#ifndef SLUICE_PIPELINE_REPLAY_H_
#define SLUICE_PIPELINE_REPLAY_H_

#include <cstdint>
#include <functional>
#include <limits>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "pipeline/decision_digest.h"
#include "pipeline/processor.h"

namespace sluice {

struct ReplayOptions {
  std::string journal_dir;
  std::string snapshot_dir;  // empty: replay from the journal's start
  int64_t from = 1;
  int64_t to = std::numeric_limits<int64_t>::max();
  // 0: as many as the snapshot set used has (1 without one).
  uint32_t shards = 1;
  ProcessorConfig config;
  std::string decisions_out;  // CSV file (SPEC 3 columns); empty: none
  bool read_ahead = true;     // RecoveryOptions::read_ahead
  // Called about every 2^20 events with (events read, last sequence read), for a progress line.
  std::function<void(int64_t, int64_t)> progress;
};

struct ReplayResult {
  int64_t events = 0;           // journal records read (after the snapshot, if one was used)
  int64_t reported_events = 0;  // of those, within [from, to]
  int64_t first_sequence = 0;
  int64_t last_sequence = 0;
  int64_t decisions = 0;           // reported
  int64_t alerts = 0;              // reported
  int64_t verdicts[6] = {};        // reported decisions by verdict code
  int64_t alerts_by_rule[7] = {};  // reported alerts by rule code
  DecisionDigest digest;           // of the reported decisions
  double seconds = 0;
  bool torn_tail = false;
  uint32_t shards = 0;            // shards run
  int64_t snapshot_sequence = 0;  // the snapshot set started from (0: none)
  std::vector<std::string> snapshot_files;
  double snapshot_load_seconds = 0;   // included in seconds
  std::vector<std::string> warnings;  // snapshots not used, and why
  double events_per_second() const { return seconds > 0 ? events / seconds : 0; }
};

// Errors: the journal cannot be opened, is corrupt (DataLoss naming file and offset), or the
// decisions file cannot be written.
absl::StatusOr<ReplayResult> run_replay(const ReplayOptions& options);

// The decisions file's header line, without the newline.
inline constexpr const char* kDecisionsCsvHeader =
    "seq,type,account_id,client_id,client_seq,verdict,reason,flags";

}  // namespace sluice

#endif  // SLUICE_PIPELINE_REPLAY_H_
