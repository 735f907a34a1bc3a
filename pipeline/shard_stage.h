// ShardStage: the agent that runs one Shard as a consumer of the input ring, answers into the
// shard's own output ring, and takes the shard's snapshots.
//
// Every shard reads every input slot (the ring is multicast; the shard itself skips the accounts
// it does not own) behind a barrier on `dependents` (empty: the ring's cursor; with durability
// sync the engine passes the journal stage's durable() so nothing is answered before it is on
// disk). Decisions and alerts go into the output ring, decisions with the connection_id and
// receive_ticks of their InputEvent.
//
// Backpressure: do_work never blocks. Before each event it makes sure the output ring has room
// for everything one event can emit (kMaxOutputsPerEvent); if not, it stops at that event
// (counted in output_full_stalls) and the next pass resumes exactly there, so nothing is lost or
// answered twice. Progress (sequence()) and the output cursor are published once per pass.
//
// Snapshots: after handling an event whose flags carry kInputSnapshotAfter (sequence S), the
// stage begins a copy-on-write capture of the shard's store (pipeline/state_store.h) and goes on
// handling events; each pass copies a bounded slice (snapshot_slice_bytes), writes copy the
// chunks they touch first, and when every chunk is copied the image (state exactly as of S) goes
// to the SnapshotWriter's thread for CRC, write and fsync. The time a pass spends in snapshot
// work is the shard's stall; its maximum per snapshot is counted (snapshot_stall_ns_*).
//
// Lifetime: rings, shard, writer and counters outlive the stage. Thread safety: do_work,
// on_close and snapshot_now on the runner's thread (snapshot_now after the runner stopped is
// the engine's thread, which joining synchronises); sequence() and the counters from any thread.
#ifndef SLUICE_PIPELINE_SHARD_STAGE_H_
#define SLUICE_PIPELINE_SHARD_STAGE_H_

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include "absl/status/status.h"
#include "core/counter.h"
#include "core/input_event.h"
#include "core/output_event.h"
#include "core/ring_buffer.h"
#include "core/sequence.h"
#include "core/sequence_barrier.h"
#include "core/shared_histogram.h"
#include "io/snapshot_format.h"
#include "io/snapshot_writer.h"
#include "pipeline/agent.h"
#include "pipeline/decision_digest.h"
#include "pipeline/keyed_processors.h"
#include "pipeline/processor.h"

namespace sluice {

// A shard stage's statistics: plain single-writer counters (core/counter.h), standard layout, so
// the engine can place the struct in the mapped stats file.
struct ShardCounters {
  static constexpr std::array<std::string_view, 26> kFieldNames = {
      "events_total", "last_sequence", "decisions_total", "decisions_accept_total",
      "decisions_flag_total", "decisions_reject_total", "decisions_duplicate_total",
      "decisions_late_total", "decisions_invalid_total", "alerts_total", "alerts_none_total",
      "alerts_velocity_exceeded_total", "alerts_amount_anomaly_total",
      "alerts_max_order_qty_total", "alerts_max_order_notional_total",
      "alerts_position_limit_total", "alerts_order_rate_total", "output_full_stalls_total",
      "snapshots_total", "snapshots_forced_total", "snapshot_stall_ns_last",
      "snapshot_stall_ns_max", "snapshot_cow_chunks_total", "snapshot_unprepared_buffers_total",
      "digest_sum", "digest_count"};
  Counter events;         // input events handled
  Counter last_sequence;  // journal sequence of the last one
  Counter decisions;
  Counter decisions_by_verdict[6];  // [wire::Verdict]
  Counter alerts;
  Counter alerts_by_rule[7];       // [wire::Rule]; [0] unused
  Counter output_full_stalls;      // passes that stopped because the output ring had no room
  Counter snapshots_taken;         // images completed and handed to the writer
  Counter snapshots_forced;        // barriers that found the previous capture unfinished
  Counter snapshot_stall_ns_last;  // max ns of snapshot work in one pass, last snapshot
  Counter snapshot_stall_ns_max;   // the same, over all snapshots
  Counter snapshot_cow_chunks;     // chunks copied because a write landed in them
  Counter snapshot_unprepared_buffers;  // barriers whose image buffer was mapped, not prepared
  // DecisionDigest of every decision (pipeline/decision_digest.h) as its two parts: the sum
  // (mod 2^64, stored as its bit pattern) and the count, so digests of shards combine.
  Counter digest_sum;
  Counter digest_count;
};
static_assert(sizeof(ShardCounters) == ShardCounters::kFieldNames.size() * sizeof(Counter));

// The header of a snapshot of `shard` as of `sequence` (its state must be as of it).
snapshot::Header snapshot_header(const Shard& shard, int64_t sequence);

// Captures `shard` whole, now, and writes it through `writer` on the calling thread (tests,
// tools and snapshot_now). REQUIRES: no capture in progress.
absl::Status write_snapshot(Shard& shard, snapshot::SnapshotWriter& writer);

struct ShardStageOptions {
  int64_t max_batch = 1024;                 // input events per pass
  int64_t max_batch_snapshotting = 256;     // while a capture runs (bounds copy-on-write per pass)
  size_t snapshot_slice_bytes = 256 << 10;  // copied per pass while a capture runs
  // When set, every event with a receive time records receipt-to-this-shard latency here (the
  // pass's start, a clock read per pass). Single writer: this stage.
  SharedHistogram* latency = nullptr;
};

class ShardStage final : public Agent {
 public:
  using InputRing = RingBuffer<InputEvent, SingleProducerSequencer>;
  using OutputRing = RingBuffer<OutputEvent, SingleProducerSequencer>;

  // REQUIRES: output.size() >= kMaxOutputsPerEvent. writer may be null (no snapshots);
  // counters may be null (an internal struct is used).
  ShardStage(InputRing& input, std::vector<const Sequence*> dependents, Shard& shard,
             OutputRing& output, snapshot::SnapshotWriter* writer,
             ShardCounters* counters = nullptr, ShardStageOptions options = {});
  ~ShardStage() override;
  ShardStage(const ShardStage&) = delete;
  ShardStage& operator=(const ShardStage&) = delete;

  int do_work() override;
  std::string_view name() const override { return name_; }
  // Finishes a capture in progress and hands it to the writer.
  void on_close() override;

  // Ring sequence of the last input slot handled (gate the input ring on it).
  const Sequence& sequence() const noexcept { return sequence_; }
  const ShardCounters& counters() const noexcept { return *counters_; }
  bool snapshot_in_progress() const noexcept { return capturing_; }

  // Writes a snapshot of the shard as of the last handled event, synchronously (after the
  // runner stopped: at clean shutdown). Finishes and flushes a capture in progress first; does
  // nothing if this stage already wrote one at that sequence, or the shard never saw an event.
  absl::Status snapshot_now();

 private:
  class OutputSink final : public DecisionSink {
   public:
    OutputSink(OutputRing& ring, ShardCounters& counters) : ring_(ring), counters_(counters) {}
    void on_decision(const DecisionRecord& d) override;
    void on_alert(const AlertRecord& a) override;
    const InputEvent* current = nullptr;
    int64_t claimed = -1;
    uint64_t digest_sum = 0;  // mirrored into counters_.digest_sum  // highest output sequence claimed, published at the end of the pass

   private:
    OutputRing& ring_;
    ShardCounters& counters_;
  };

  void begin_snapshot(int64_t sequence);
  void hand_over_if_complete();
  void record_stall(int64_t ns);
  // Asks the writer for an image buffer of the state's size plus a quarter.
  void prepare_image(size_t bytes);
  // Between snapshots: asks again once the state has outgrown the buffer asked for.
  void keep_image_prepared(int64_t events);

  InputRing& input_;
  SequenceBarrier<SingleProducerSequencer> barrier_;
  Shard& shard_;
  OutputRing& output_;
  snapshot::SnapshotWriter* writer_;
  ShardCounters own_counters_;
  ShardCounters* counters_;
  const ShardStageOptions options_;
  const std::string name_;
  OutputSink sink_;
  int64_t next_ = 0;        // next input ring sequence to handle
  int64_t out_room_ = 0;    // output slots known free
  int64_t published_ = -1;  // highest output sequence published
  Sequence sequence_;

  bool capturing_ = false;  // a capture is running or complete but not handed over
  snapshot::ImageBuffer buffer_;
  snapshot::Header header_;
  int64_t stall_ns_ = 0;     // max per pass, this snapshot
  int64_t extra_ticks_ = 0;  // snapshot work outside the capture's own accounting this pass
  int64_t last_snapshot_sequence_ = -1;
  size_t prepared_image_bytes_ = 0;  // the capacity of the buffer last asked for
  int64_t events_since_size_check_ = 0;
};

}  // namespace sluice

#endif  // SLUICE_PIPELINE_SHARD_STAGE_H_
