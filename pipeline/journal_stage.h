// JournalStage: the journal writer as a consumer of the input ring.
//
// Each pass copies every readable slot into the writer's open batch (group commit: whatever
// arrived since the last flush goes to disk as one write) and lets the writer move batches on.
// It publishes three ring-space sequences: sequence() (copied: the slot may be reused),
// written() and durable() (the journal's, translated to ring sequences), so shards can gate on
// durable() when the durability mode is sync and never act on an event that is not on disk.
//
// A writer failure ends the stage with an exception that names the file and offset (its runner
// reports it up); the ring then stops draining, ingest sees it full and stops reading sockets,
// and the daemon refuses new input rather than lose it.
//
// Lifetime: ring and writer outlive the stage. Thread safety: one runner thread; the three
// sequences may be read from any thread.
#ifndef SLUICE_PIPELINE_JOURNAL_STAGE_H_
#define SLUICE_PIPELINE_JOURNAL_STAGE_H_

#include <cstdint>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "core/input_event.h"
#include "core/ring_buffer.h"
#include "core/sequence.h"
#include "core/sequence_barrier.h"
#include "io/journal_writer.h"
#include "pipeline/agent.h"

namespace sluice {

template <typename SequencerT = SingleProducerSequencer>
class JournalStage final : public Agent {
 public:
  // The first slot the ring will carry must hold writer.next_sequence().
  JournalStage(RingBuffer<InputEvent, SequencerT>& ring, journal::JournalWriter& writer,
               std::vector<const Sequence*> dependents = {})
      : ring_(ring),
        writer_(writer),
        barrier_(ring.sequencer(), std::move(dependents)),
        base_(writer.next_sequence()) {}

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
    }
    if (s > next_) {
      work += static_cast<int>(s - next_);
      next_ = s;
      copied_.set(s - 1);
      work += writer_.poll();  // start the batch now if the disk is idle
    }
    publish_progress();
    if (writer_.failed()) throw std::runtime_error(std::string(writer_.status().message()));
    return work;
  }

  // Whatever was copied reaches the disk before the stage stops.
  void on_close() override {
    (void)writer_.flush();
    publish_progress();
  }

 private:
  void publish_progress() noexcept {
    // Single writer for both: a plain release store when the value moved.
    const int64_t written = writer_.written().get() - base_;
    if (written != written_.get()) written_.set(written);
    const int64_t durable = writer_.durable().get() - base_;
    if (durable != durable_.get()) durable_.set(durable);
  }

  RingBuffer<InputEvent, SequencerT>& ring_;
  journal::JournalWriter& writer_;
  SequenceBarrier<SequencerT> barrier_;
  const int64_t base_;
  int64_t next_ = 0;
  Sequence copied_;
  Sequence written_;
  Sequence durable_;
};

}  // namespace sluice

#endif  // SLUICE_PIPELINE_JOURNAL_STAGE_H_
