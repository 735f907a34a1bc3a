#include "core/wait_strategy.h"

#include <atomic>
#include <future>
#include <thread>

#include "core/ring_buffer.h"
#include "core/sequence_barrier.h"
#include "gtest/gtest.h"
#include "tests/test_util.h"

namespace sluice {
namespace {

using testing::eventually;

TEST(BlockingWaitStrategy, ParkedConsumerWakesForOnePublish) {
  BlockingWaitStrategy wait;
  RingBuffer<int64_t> ring(8, wait);
  Sequence consumer;
  ring.add_gating_sequence(consumer);
  SequenceBarrier<SingleProducerSequencer> barrier(ring.sequencer(), {});

  // Many rounds: each round the consumer parks on an empty ring and must wake for exactly one
  // publish. Half the rounds publish only once the consumer is known to be parked; the other
  // half publish right away to hit the window between its check and its sleep.
  const int rounds = 400 / static_cast<int>(testing::kStressScale) + 20;
  for (int round = 0; round < rounds; ++round) {
    const int64_t expected = round;
    auto got = std::async(std::launch::async, [&] { return barrier.wait_for(expected); });
    if (round % 2 == 0) {
      ASSERT_TRUE(eventually([&] { return wait.waiters() == 1; })) << "round " << round;
    }
    const int64_t s = ring.next();
    ring[s] = round;
    ring.publish(s);
    ASSERT_EQ(got.wait_for(std::chrono::seconds(20)), std::future_status::ready)
        << "consumer missed the wake-up in round " << round;
    EXPECT_EQ(got.get(), expected);
    consumer.set(expected);
  }
  EXPECT_EQ(wait.waiters(), 0);
}

TEST(BlockingWaitStrategy, AlertWakesAParkedConsumer) {
  BlockingWaitStrategy wait;
  RingBuffer<int64_t> ring(8, wait);
  SequenceBarrier<SingleProducerSequencer> barrier(ring.sequencer(), {});
  auto got = std::async(std::launch::async, [&] { return barrier.wait_for(0); });
  ASSERT_TRUE(eventually([&] { return wait.waiters() == 1; }));
  barrier.alert();
  ASSERT_EQ(got.wait_for(std::chrono::seconds(20)), std::future_status::ready);
  EXPECT_EQ(got.get(), kAlerted);
  EXPECT_TRUE(barrier.is_alerted());
  barrier.clear_alert();
  EXPECT_FALSE(barrier.is_alerted());
}

TEST(BlockingWaitStrategy, DownstreamConsumerWakesWhenUpstreamConsumerAdvances) {
  BlockingWaitStrategy wait;
  RingBuffer<int64_t> ring(8, wait);
  Sequence upstream;
  SequenceBarrier<SingleProducerSequencer> downstream(ring.sequencer(), {&upstream});
  const int64_t s = ring.next();
  ring.publish(s);  // published, but the upstream consumer has not processed it

  auto got = std::async(std::launch::async, [&] { return downstream.wait_for(0); });
  ASSERT_TRUE(eventually([&] { return wait.waiters() == 1; }));
  upstream.set(0);
  wait.signal_all_when_blocking();  // what a BatchEventProcessor does after a batch
  ASSERT_EQ(got.wait_for(std::chrono::seconds(20)), std::future_status::ready);
  EXPECT_EQ(got.get(), 0);
}

class IdleWaitStrategyTest : public ::testing::TestWithParam<IdleKind> {};

TEST_P(IdleWaitStrategyTest, ReturnsTheMinimumOfTheDependentsOnceItReachesTheSequence) {
  IdleWaitStrategy wait(IdleConfig{.kind = GetParam()});
  Sequence a(5), b(9);
  std::atomic<bool> alerted{false};
  const Sequence* deps[] = {&a, &b};
  EXPECT_EQ(wait.wait_for(3, deps, alerted), 5);

  auto got = std::async(std::launch::async, [&] { return wait.wait_for(7, deps, alerted); });
  std::this_thread::sleep_for(std::chrono::milliseconds(5));
  a.set(8);
  ASSERT_EQ(got.wait_for(std::chrono::seconds(20)), std::future_status::ready);
  EXPECT_EQ(got.get(), 8);
}

TEST_P(IdleWaitStrategyTest, AlertEndsTheWait) {
  IdleWaitStrategy wait(IdleConfig{.kind = GetParam()});
  Sequence a;
  std::atomic<bool> alerted{false};
  const Sequence* deps[] = {&a};
  auto got = std::async(std::launch::async, [&] { return wait.wait_for(0, deps, alerted); });
  std::this_thread::sleep_for(std::chrono::milliseconds(5));
  alerted.store(true, std::memory_order_release);
  ASSERT_EQ(got.wait_for(std::chrono::seconds(20)), std::future_status::ready);
  EXPECT_EQ(got.get(), kAlerted);
}

// Busy-spin is included: each test has one spinning thread beside the test thread, which
// sleeps, so no more threads spin than this machine has cores.
INSTANTIATE_TEST_SUITE_P(AllKinds, IdleWaitStrategyTest,
                         ::testing::Values(IdleKind::kBusySpin, IdleKind::kYield,
                                           IdleKind::kBackoff),
                         [](const auto& info) { return std::string(idle_kind_name(info.param)); });

}  // namespace
}  // namespace sluice

#include "core/doorbell.h"

namespace sluice {
namespace {

// A sleeper parked on an empty "queue" wakes for one ring, every time, over many rounds: no
// lost wake-up whichever side wins the race.
TEST(Doorbell, NoLostWakeUpOverManyRounds) {
  Doorbell bell;
  std::atomic<int64_t> produced{0};
  constexpr int64_t kRounds = 20'000;
  int64_t timeouts = 0;
  std::thread sleeper([&] {
    int64_t seen = 0;
    while (seen < kRounds) {
      if (produced.load(std::memory_order_acquire) > seen) {
        ++seen;
        continue;
      }
      const uint32_t ticket = bell.prepare();
      if (produced.load(std::memory_order_acquire) > seen) {
        bell.cancel();
        continue;
      }
      // Only a lost wake-up can sleep through the whole (long) timeout.
      if (!bell.wait(ticket, 10'000'000'000)) ++timeouts;
    }
  });
  for (int64_t i = 1; i <= kRounds; ++i) {
    produced.store(i, std::memory_order_release);
    bell.ring();
    if (i % 64 == 0) std::this_thread::yield();
  }
  sleeper.join();
  EXPECT_EQ(timeouts, 0);
  EXPECT_EQ(bell.sleepers(), 0);
}

TEST(Doorbell, WaitTimesOutWithoutARing) {
  Doorbell bell;
  const uint32_t ticket = bell.prepare();
  EXPECT_FALSE(bell.wait(ticket, 2'000'000));  // 2 ms, nobody rings
  EXPECT_EQ(bell.sleepers(), 0);
  // A ring between prepare and wait is not lost: the wait returns at once, as woken.
  const uint32_t second = bell.prepare();
  bell.ring();
  EXPECT_TRUE(bell.wait(second, 10'000'000'000));
}

}  // namespace
}  // namespace sluice
