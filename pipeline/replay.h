// Replay: runs the processors over a journal at full speed, with no network (Kappa-style
// reprocessing), and fingerprints the decisions so a replay can be checked against the live run
// or another replay.
//
// Every event from the journal's first sequence is folded into the shards' state, so decisions
// are exactly the live ones; only decisions with from <= seq <= to are reported (written to the
// decisions file and counted in the digest). Snapshots will let a replay start from the newest
// one at or before `from` instead of the first sequence.
//
// Thread safety: run_replay is reentrant; it runs on the calling thread.
#ifndef SLUICE_PIPELINE_REPLAY_H_
#define SLUICE_PIPELINE_REPLAY_H_

#include <cstdint>
#include <functional>
#include <limits>
#include <string>

#include "absl/status/statusor.h"
#include "pipeline/decision_digest.h"
#include "pipeline/processor.h"

namespace sluice {

struct ReplayOptions {
  std::string journal_dir;
  int64_t from = 1;
  int64_t to = std::numeric_limits<int64_t>::max();
  uint32_t shards = 1;
  ProcessorConfig config;
  std::string decisions_out;  // CSV file (SPEC 3 columns); empty: none
  // Called about every 2^20 events with (events read, last sequence read), for a progress line.
  std::function<void(int64_t, int64_t)> progress;
};

struct ReplayResult {
  int64_t events = 0;         // journal records read (all of them, from the first sequence)
  int64_t reported_events = 0;  // of those, within [from, to]
  int64_t first_sequence = 0;
  int64_t last_sequence = 0;
  int64_t decisions = 0;  // reported
  int64_t alerts = 0;     // reported
  int64_t verdicts[6] = {};      // reported decisions by verdict code
  int64_t alerts_by_rule[7] = {};  // reported alerts by rule code
  DecisionDigest digest;  // of the reported decisions
  double seconds = 0;
  bool torn_tail = false;
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
