#include "core/ring_buffer.h"

#include <cstdint>
#include <cstring>
#include <thread>
#include <vector>

#include "core/wait_strategy.h"
#include "gtest/gtest.h"
#include "tests/test_util.h"

namespace sluice {
namespace {

struct Counted {
  static inline int live = 0;
  static inline int constructed = 0;
  Counted() {
    ++live;
    ++constructed;
  }
  ~Counted() { --live; }
  int64_t value = 0;
};

TEST(RingBuffer, ConstructsAndDestroysSlotsInBalance) {
  Counted::live = 0;
  Counted::constructed = 0;
  {
    auto wait = make_busy_spin_wait_strategy();
    RingBuffer<Counted> ring(16, *wait);
    // Every slot plus the padding at both ends is a live object for the ring's lifetime.
    EXPECT_GE(Counted::live, 16);
    EXPECT_EQ(Counted::live, Counted::constructed);
  }
  EXPECT_EQ(Counted::live, 0);
}

struct ThrowsOnFifth {
  static inline int live = 0;
  static inline int built = 0;
  ThrowsOnFifth() {
    if (++built == 5) throw std::runtime_error("fifth");
    ++live;
  }
  ~ThrowsOnFifth() { --live; }
};

TEST(RingBuffer, ConstructorFailureDestroysTheSlotsAlreadyBuilt) {
  ThrowsOnFifth::live = 0;
  ThrowsOnFifth::built = 0;
  auto wait = make_busy_spin_wait_strategy();
  EXPECT_THROW((RingBuffer<ThrowsOnFifth>(8, *wait)), std::runtime_error);
  EXPECT_EQ(ThrowsOnFifth::live, 0);
}

TEST(RingBuffer, SequenceIndexesSlotByMaskSoTheRingWraps) {
  auto wait = make_busy_spin_wait_strategy();
  RingBuffer<int64_t> ring(8, *wait);
  ring[3] = 42;
  EXPECT_EQ(ring[3 + 8], 42);
  EXPECT_EQ(ring[3 + 8 * 1000], 42);
  EXPECT_EQ(&ring[0], &ring[8]);
  EXPECT_NE(&ring[0], &ring[1]);
}

TEST(RingBuffer, FirstSlotStartsOnACacheLine) {
  auto wait = make_busy_spin_wait_strategy();
  RingBuffer<int64_t> ring(64, *wait);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(&ring[0]) % kCacheLineSize, 0u);
}

TEST(RingBuffer, ProducerWrapsAroundBehindAConsumer) {
  auto wait = make_busy_spin_wait_strategy();
  RingBuffer<int64_t> ring(4, *wait);
  Sequence consumer;
  ring.add_gating_sequence(consumer);
  SequenceBarrier<SingleProducerSequencer> barrier(ring.sequencer(), {});

  int64_t next_to_read = 0;
  for (int64_t round = 0; round < 10; ++round) {
    for (int i = 0; i < 3; ++i) {
      const int64_t s = ring.next();
      ring[s] = s * 10;
      ring.publish(s);
    }
    const int64_t available = barrier.poll(next_to_read);
    ASSERT_EQ(available, next_to_read + 2);
    for (int64_t s = next_to_read; s <= available; ++s) EXPECT_EQ(ring[s], s * 10);
    consumer.set(available);
    next_to_read = available + 1;
  }
  EXPECT_EQ(ring.cursor().get(), 29);
}

// A concurrent check that a consumer never reads a slot before it is published: the producer
// writes a slot's payload before publishing it, and a slot still holding last lap's payload
// would show up as a mismatch.
TEST(RingBuffer, ConsumerNeverReadsAnUnpublishedSlot) {
  struct Slot {
    int64_t sequence = -1;
    int64_t words[6] = {};
  };
  auto wait = make_yielding_wait_strategy();
  RingBuffer<Slot> ring(64, *wait);
  Sequence consumer;
  ring.add_gating_sequence(consumer);
  SequenceBarrier<SingleProducerSequencer> barrier(ring.sequencer(), {});
  const int64_t total = 2'000'000 / testing::kStressScale;

  std::thread producer([&] {
    for (int64_t s = 0; s < total;) {
      const int64_t n = std::min<int64_t>(1 + s % 7, total - s);  // mixed batch sizes
      const int64_t hi = ring.next(n);
      for (int64_t q = hi - n + 1; q <= hi; ++q) {
        Slot& slot = ring[q];
        slot.sequence = q;
        for (int64_t& w : slot.words) w = q ^ 0x5a5a;
      }
      ring.publish(hi - n + 1, hi);
      s += n;
    }
  });

  int64_t mismatches = 0;
  int64_t next = 0;
  while (next < total) {
    const int64_t available = barrier.wait_for(next);
    ASSERT_NE(available, kAlerted);
    for (int64_t s = next; s <= available; ++s) {
      const Slot& slot = ring[s];
      if (slot.sequence != s) ++mismatches;
      for (int64_t w : slot.words) mismatches += (w != (s ^ 0x5a5a));
    }
    consumer.set(available);
    next = available + 1;
  }
  producer.join();
  EXPECT_EQ(mismatches, 0);
  EXPECT_EQ(next, total);
}

}  // namespace
}  // namespace sluice
