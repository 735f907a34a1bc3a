#include "core/sequencer.h"

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <thread>
#include <vector>

#include "core/ring_buffer.h"
#include "core/sequence_barrier.h"
#include "core/wait_strategy.h"
#include "gtest/gtest.h"
#include "tests/test_util.h"

namespace sluice {
namespace {

template <typename SequencerT>
class SequencerTest : public ::testing::Test {
 protected:
  std::unique_ptr<WaitStrategy> wait_ = make_yielding_wait_strategy();
  SequencerT sequencer_{8, *wait_};
  Sequence consumer_;
  void SetUp() override { sequencer_.add_gating_sequence(consumer_); }
};

using SequencerTypes = ::testing::Types<SingleProducerSequencer, MultiProducerSequencer>;
TYPED_TEST_SUITE(SequencerTest, SequencerTypes);

TYPED_TEST(SequencerTest, NextClaimsConsecutiveSequencesFromZero) {
  EXPECT_EQ(this->sequencer_.next(), 0);
  EXPECT_EQ(this->sequencer_.next(), 1);
  EXPECT_EQ(this->sequencer_.next(3), 4);  // claims [2, 4]
  EXPECT_EQ(this->sequencer_.next(), 5);
}

TYPED_TEST(SequencerTest, TryNextReportsFullAndClaimsNothing) {
  auto& seq = this->sequencer_;
  int64_t hi = -100;
  ASSERT_EQ(seq.try_next(8, &hi), ClaimResult::kOk);
  EXPECT_EQ(hi, 7);
  seq.publish(0, 7);
  EXPECT_EQ(seq.remaining_capacity(), 0);

  hi = -100;
  EXPECT_EQ(seq.try_next(&hi), ClaimResult::kFull);
  EXPECT_EQ(hi, -100);
  EXPECT_EQ(seq.try_next(3, &hi), ClaimResult::kFull);

  // The consumer frees two slots: a claim of three still does not fit, one of two does.
  this->consumer_.set(1);
  EXPECT_EQ(seq.remaining_capacity(), 2);
  EXPECT_EQ(seq.try_next(3, &hi), ClaimResult::kFull);
  ASSERT_EQ(seq.try_next(2, &hi), ClaimResult::kOk);
  EXPECT_EQ(hi, 9);  // the failed claims left no hole in the numbering
}

TYPED_TEST(SequencerTest, NextWaitsForTheSlowestGatingConsumer) {
  auto& seq = this->sequencer_;
  Sequence second;  // a second terminal consumer that is further behind
  seq.add_gating_sequence(second);
  const int64_t hi = seq.next(8);
  seq.publish(0, hi);
  this->consumer_.set(7);

  std::atomic<int64_t> claimed{-1};
  std::thread producer([&] { claimed.store(seq.next(), std::memory_order_release); });
  // The producer must still be waiting: the slow consumer holds slot 0.
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  EXPECT_EQ(claimed.load(std::memory_order_acquire), -1);
  second.set(0);
  producer.join();
  EXPECT_EQ(claimed.load(), 8);
}

TYPED_TEST(SequencerTest, NextOfABatchWrapsAroundTheRing) {
  auto& seq = this->sequencer_;
  for (int64_t round = 0; round < 5; ++round) {
    const int64_t hi = seq.next(5);
    EXPECT_EQ(hi, round * 5 + 4);
    seq.publish(hi - 4, hi);
    this->consumer_.set(hi);
  }
}

TEST(MultiProducerSequencer, HighestPublishedStopsAtTheFirstUnpublishedSlot) {
  auto wait = make_yielding_wait_strategy();
  MultiProducerSequencer seq(8, *wait);
  Sequence consumer;
  seq.add_gating_sequence(consumer);
  EXPECT_EQ(seq.next(4), 3);
  seq.publish(0);
  seq.publish(1);
  seq.publish(3);  // 2 is claimed by a slower producer and not yet published
  EXPECT_EQ(seq.highest_published(0, 3), 1);
  EXPECT_FALSE(seq.is_available(2));
  EXPECT_TRUE(seq.is_available(3));
  seq.publish(2);
  EXPECT_EQ(seq.highest_published(0, 3), 3);

  SequenceBarrier<MultiProducerSequencer> barrier(seq, {});
  EXPECT_EQ(barrier.poll(0), 3);
  EXPECT_LT(barrier.poll(4), 4);
}

TEST(MultiProducerSequencer, AvailabilityIsPerLapNotPerSlot) {
  auto wait = make_yielding_wait_strategy();
  MultiProducerSequencer seq(4, *wait);
  Sequence consumer;
  seq.add_gating_sequence(consumer);
  const int64_t hi = seq.next(4);
  seq.publish(0, hi);
  consumer.set(3);
  EXPECT_EQ(seq.next(), 4);  // same slot as 0, next lap
  // Slot 0 was published in lap 0; sequence 4 (lap 1) is not published yet.
  EXPECT_TRUE(seq.is_available(0));
  EXPECT_FALSE(seq.is_available(4));
  seq.publish(4);
  EXPECT_TRUE(seq.is_available(4));
  EXPECT_FALSE(seq.is_available(0));
}

TEST(SequenceBarrier, WithDependentsReadsOnlyWhatAllOfThemFinished) {
  auto wait = make_yielding_wait_strategy();
  RingBuffer<int64_t> ring(16, *wait);
  Sequence a, b;
  SequenceBarrier<SingleProducerSequencer> barrier(ring.sequencer(), {&a, &b});
  const int64_t hi = ring.next(10);
  ring.publish(hi);
  EXPECT_LT(barrier.poll(0), 0);  // published, but neither upstream consumer has it
  a.set(6);
  b.set(3);
  EXPECT_EQ(barrier.poll(0), 3);
  b.set(9);
  EXPECT_EQ(barrier.poll(0), 6);
}

// Three producers on a multi-producer ring, one consumer: every event is seen exactly once and
// each producer's events arrive in the order it published them. Four threads on two cores, so
// everything yields.
TEST(MultiProducerSequencer, StressEveryEventSeenOnceInPerProducerOrder) {
  constexpr int kProducers = 3;
  const int64_t per_producer = 300'000 / testing::kStressScale;
  struct Event {
    int32_t producer = -1;
    int64_t index = -1;
  };
  auto wait = make_yielding_wait_strategy();
  RingBuffer<Event, MultiProducerSequencer> ring(1024, *wait);
  Sequence consumed;
  ring.add_gating_sequence(consumed);
  SequenceBarrier<MultiProducerSequencer> barrier(ring.sequencer(), {});

  std::vector<std::thread> producers;
  for (int p = 0; p < kProducers; ++p) {
    producers.emplace_back([&, p] {
      for (int64_t i = 0; i < per_producer;) {
        // Mix single claims, batches and try_next so every claim path races.
        const int64_t n = std::min<int64_t>(1 + (i + p) % 4, per_producer - i);
        int64_t hi;
        if (i % 3 == 0) {
          while (ring.try_next(n, &hi) != ClaimResult::kOk) std::this_thread::yield();
        } else {
          hi = ring.next(n);
        }
        for (int64_t s = hi - n + 1; s <= hi; ++s) ring[s] = Event{p, i++};
        ring.publish(hi - n + 1, hi);
      }
    });
  }

  std::vector<int64_t> next_index(kProducers, 0);
  int64_t out_of_order = 0;
  const int64_t total = kProducers * per_producer;
  int64_t next = 0;
  while (next < total) {
    const int64_t available = barrier.wait_for(next);
    ASSERT_NE(available, kAlerted);
    for (int64_t s = next; s <= available; ++s) {
      const Event& e = ring[s];
      ASSERT_GE(e.producer, 0);
      ASSERT_LT(e.producer, kProducers);
      if (e.index != next_index[e.producer]) ++out_of_order;
      next_index[e.producer] = e.index + 1;
    }
    consumed.set(available);
    next = available + 1;
  }
  for (auto& t : producers) t.join();
  EXPECT_EQ(out_of_order, 0);
  for (int p = 0; p < kProducers; ++p) EXPECT_EQ(next_index[p], per_producer) << "producer " << p;
  EXPECT_EQ(ring.cursor().get(), total - 1);
}

}  // namespace
}  // namespace sluice
