// BatchEventProcessor: a consumer of a RingBuffer that hands its handler whole batches.
//
// It reads every slot its barrier says is readable, calls
//   handler.on_event(event, sequence, end_of_batch)
// for each, and then publishes its progress once for the batch. Its sequence() is what the
// producer (gating) and downstream consumers (barrier dependencies) wait on.
//
// Two ways to run it:
// - as an Agent (do_work polls the barrier, never blocks): on an AgentRunner or inside a
//   CompositeAgent, idling through the runner's IdleStrategy;
// - on a thread of its own with run(), waiting through the ring's WaitStrategy until halt().
//
// Lifetime: ring and handler must outlive the processor. Thread safety: do_work / run on one
// thread; halt and sequence() from any thread.
#ifndef SLUICE_PIPELINE_BATCH_EVENT_PROCESSOR_H_
#define SLUICE_PIPELINE_BATCH_EVENT_PROCESSOR_H_

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <limits>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/ring_buffer.h"
#include "core/sequence.h"
#include "core/sequence_barrier.h"
#include "core/wait_strategy.h"
#include "pipeline/agent.h"

namespace sluice {

template <typename H, typename T>
concept EventHandler = requires(H& handler, T& event, int64_t sequence, bool end_of_batch) {
  handler.on_event(event, sequence, end_of_batch);
};

template <typename T, typename Handler, typename SequencerT = SingleProducerSequencer>
  requires EventHandler<Handler, T>
class BatchEventProcessor final : public Agent {
 public:
  static constexpr int64_t kUnboundedBatch = std::numeric_limits<int64_t>::max();

  // `dependents`: upstream consumers' sequences (empty: read straight behind the producer).
  // `max_batch` bounds one do_work pass, so agents sharing a thread take turns.
  BatchEventProcessor(std::string name, RingBuffer<T, SequencerT>& ring, Handler& handler,
                      std::vector<const Sequence*> dependents = {},
                      int64_t max_batch = kUnboundedBatch)
      : name_(std::move(name)),
        ring_(ring),
        handler_(handler),
        barrier_(ring.sequencer(), std::move(dependents)),
        wait_strategy_(ring.sequencer().wait_strategy()),
        max_batch_(max_batch) {}

  const Sequence& sequence() const noexcept { return sequence_; }
  std::string_view name() const override { return name_; }

  void on_start() override {
    if constexpr (requires { handler_.on_start(); }) handler_.on_start();
  }
  void on_close() override {
    if constexpr (requires { handler_.on_shutdown(); }) handler_.on_shutdown();
  }

  int do_work() override {
    const int64_t available = barrier_.poll(next_);
    if (available < next_) return 0;
    return static_cast<int>(process(available));
  }

  // Runs on the calling thread until halt(): waits through the ring's WaitStrategy.
  void run() {
    on_start();
    while (!halted_.load(std::memory_order_acquire)) {
      const int64_t available = barrier_.wait_for(next_);
      if (available == kAlerted) continue;  // halt() raised the alert; the loop test decides
      process(available);
    }
    on_close();
  }

  // Ends run() (from any thread). REQUIRES: the processor is running under run().
  void halt() noexcept {
    // Release pairs with run()'s acquire; the alert wakes a waiter parked in the strategy.
    halted_.store(true, std::memory_order_release);
    barrier_.alert();
  }

 private:
  int64_t process(int64_t available) {
    const int64_t hi =
        max_batch_ == kUnboundedBatch ? available : std::min(available, next_ + max_batch_ - 1);
    for (int64_t s = next_; s <= hi; ++s) handler_.on_event(ring_[s], s, s == hi);
    // One release store per batch: the producer and downstream consumers see the whole batch.
    sequence_.set(hi);
    if (wait_strategy_.is_blocking()) wait_strategy_.signal_all_when_blocking();
    const int64_t done = hi - next_ + 1;
    next_ = hi + 1;
    return done;
  }

  const std::string name_;
  RingBuffer<T, SequencerT>& ring_;
  Handler& handler_;
  SequenceBarrier<SequencerT> barrier_;
  WaitStrategy& wait_strategy_;
  const int64_t max_batch_;
  int64_t next_ = 0;  // owner-thread copy of sequence_ + 1
  std::atomic<bool> halted_{false};
  Sequence sequence_;
};

}  // namespace sluice

#endif  // SLUICE_PIPELINE_BATCH_EVENT_PROCESSOR_H_
