// JournalStage: the journal writer as a consumer of the input ring.
//
// Each pass copies every readable slot into the writer's open batch (group commit: whatever
// arrived since the last flush goes to disk as one write) and lets the writer move batches on.
// It publishes three ring-space sequences: sequence() (copied: the slot may be reused),
// written() and durable() (the journal's, translated to ring sequences), so shards can gate on
// durable() when the durability mode is sync and never act on an event that is not on disk.
//
// Optionally it counts (JournalCounters, placeable in the stats file) and records, for every
// event, the time from its receipt by ingest (InputEvent::receive_ticks) to the moment the
// journal reported it durable (a SharedHistogram), when a histogram is given.
//
// A writer failure ends the stage with an exception that names the file and offset (its runner
// reports it up); the ring then stops draining, ingest sees it full and stops reading sockets,
// and the daemon refuses new input rather than lose it.
//
// Lifetime: ring and writer outlive the stage. Thread safety: one runner thread; the three
// sequences may be read from any thread.
#ifndef SLUICE_PIPELINE_JOURNAL_STAGE_H_
#define SLUICE_PIPELINE_JOURNAL_STAGE_H_

#include <algorithm>
#include <array>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "core/clock.h"
#include "core/counter.h"
#include "core/input_event.h"
#include "core/ring_buffer.h"
#include "core/sequence.h"
#include "core/sequence_barrier.h"
#include "core/shared_histogram.h"
#include "io/journal_writer.h"
#include "pipeline/agent.h"

namespace sluice {

// The journal stage's statistics (single writer: the stage's thread).
struct JournalCounters {
  static constexpr std::array<std::string_view, 6> kFieldNames = {
      "events_total", "written_sequence", "durable_sequence", "failed",
      "prepared_rolls_total", "prepare_failures_total"};
  Counter events;            // records handed to the writer
  Counter written_sequence;  // journal sequence, as JournalWriter::written()
  Counter durable_sequence;  // journal sequence, as JournalWriter::durable()
  Counter failed;            // 1 once the writer failed
  Counter prepared_rolls;    // rolls onto a segment prepared in the background
  Counter prepare_failures;  // segment preparations that failed (the roll fell back)
};
static_assert(sizeof(JournalCounters) == JournalCounters::kFieldNames.size() * sizeof(Counter));

template <typename SequencerT = SingleProducerSequencer>
class JournalStage final : public Agent {
 public:
  // The first slot the ring will carry must hold writer.next_sequence().
  // `counters` and `durable_latency` may be null (then the stage keeps its own counters and
  // records no latency).
  JournalStage(RingBuffer<InputEvent, SequencerT>& ring, journal::JournalWriter& writer,
               std::vector<const Sequence*> dependents = {}, JournalCounters* counters = nullptr,
               SharedHistogram* durable_latency = nullptr)
      : ring_(ring),
        writer_(writer),
        barrier_(ring.sequencer(), std::move(dependents)),
        base_(writer.next_sequence()),
        counters_(counters != nullptr ? counters : &own_counters_),
        durable_latency_(durable_latency) {
    if (durable_latency_ != nullptr) receive_ticks_.assign(kTicksCapacity, 0);
  }

  const JournalCounters& counters() const noexcept { return *counters_; }

  std::string_view name() const override { return "journal"; }

  const Sequence& sequence() const noexcept { return copied_; }
  const Sequence& written() const noexcept { return written_; }
  const Sequence& durable() const noexcept { return durable_; }

  // Ring sequence of a journal sequence, and back.
  int64_t ring_sequence(int64_t journal_sequence) const noexcept {
    return journal_sequence - base_;
  }

  int do_work() override {
    int work = writer_.poll();
    const int64_t available = barrier_.poll(next_);
    int64_t s = next_;
    for (; s <= available; ++s) {
      const InputEvent& e = ring_[s];
      const journal::AppendResult r = writer_.append(
          journal::RecordMeta{e.sequence, e.ingest_ns, e.client_id}, e.frame_bytes());
      if (r == journal::AppendResult::kFull) break;  // the open batch is full: next pass
      if (r == journal::AppendResult::kFailed) break;
      if (durable_latency_ != nullptr) {
        receive_ticks_[static_cast<size_t>(e.sequence) & (kTicksCapacity - 1)] = e.receive_ticks;
      }
    }
    if (s > next_) {
      counters_->events.add(s - next_);
      work += static_cast<int>(s - next_);
      next_ = s;
      copied_.set(s - 1);
      work += writer_.poll();  // start the batch now if the disk is idle
    }
    publish_progress();
    if (writer_.failed()) {
      counters_->failed.set(1);
      throw std::runtime_error(std::string(writer_.status().message()));
    }
    return work;
  }

  // Whatever was copied reaches the disk before the stage stops.
  void on_close() override {
    (void)writer_.flush();
    publish_progress();
  }

 private:
  void publish_progress() noexcept {
    if (writer_.prepared_rolls() != counters_->prepared_rolls.get()) {
      counters_->prepared_rolls.set(writer_.prepared_rolls());
    }
    if (writer_.prepare_failures() != counters_->prepare_failures.get()) {
      counters_->prepare_failures.set(writer_.prepare_failures());
    }
    // Single writer for both: a plain release store when the value moved.
    const int64_t written = writer_.written().get() - base_;
    if (written != written_.get()) {
      written_.set(written);
      counters_->written_sequence.set(written + base_);
    }
    const int64_t durable = writer_.durable().get() - base_;
    if (durable != durable_.get()) {
      record_durable(durable_.get() + base_ + 1, durable + base_);
      durable_.set(durable);
      counters_->durable_sequence.set(durable + base_);
    }
  }

  // Journal sequences [from, to] just became durable. Events older than the ticks window (a
  // batch larger than kTicksCapacity events) go unrecorded rather than read a reused entry.
  void record_durable(int64_t from, int64_t to) noexcept {
    if (durable_latency_ == nullptr || to < from) return;
    const int64_t now = now_ticks();
    from = std::max(from, to - static_cast<int64_t>(kTicksCapacity) + 1);
    for (int64_t s = from; s <= to; ++s) {
      const int64_t ticks = receive_ticks_[static_cast<size_t>(s) & (kTicksCapacity - 1)];
      if (ticks != 0) durable_latency_->record(ticks_to_ns(now) - ticks_to_ns(ticks));
    }
  }

  RingBuffer<InputEvent, SequencerT>& ring_;
  journal::JournalWriter& writer_;
  SequenceBarrier<SequencerT> barrier_;
  const int64_t base_;
  int64_t next_ = 0;
  Sequence copied_;
  Sequence written_;
  Sequence durable_;
  JournalCounters own_counters_;
  JournalCounters* const counters_;
  SharedHistogram* const durable_latency_;
  // receive_ticks of the events between copied and durable, by journal sequence: two full
  // batches of the smallest records fit (2 MiB / 40 bytes), more than the writer ever holds.
  static constexpr size_t kTicksCapacity = size_t{1} << 16;
  std::vector<int64_t> receive_ticks_;
};

}  // namespace sluice

#endif  // SLUICE_PIPELINE_JOURNAL_STAGE_H_
