#include "pipeline/batch_event_processor.h"

#include <atomic>
#include <thread>
#include <vector>

#include "core/ring_buffer.h"
#include "core/wait_strategy.h"
#include "gtest/gtest.h"
#include "pipeline/agent_runner.h"
#include "pipeline/composite_agent.h"
#include "tests/test_util.h"

namespace sluice {
namespace {

using testing::eventually;

struct Event {
  int64_t value = 0;
  int64_t doubled = 0;
  int64_t plus_one = 0;
};

struct Call {
  int64_t sequence;
  bool end_of_batch;
  bool operator==(const Call&) const = default;
};

struct RecordingHandler {
  std::vector<Call> calls;
  void on_event(Event&, int64_t sequence, bool end_of_batch) {
    calls.push_back({sequence, end_of_batch});
  }
};

void publish_values(RingBuffer<Event>& ring, int64_t count) {
  for (int64_t i = 0; i < count; ++i) {
    const int64_t s = ring.next();
    ring[s].value = s;
    ring.publish(s);
  }
}

TEST(BatchEventProcessor, HandsOverEverythingAvailableAsOneBatch) {
  auto wait = make_yielding_wait_strategy();
  RingBuffer<Event> ring(16, *wait);
  RecordingHandler handler;
  BatchEventProcessor<Event, RecordingHandler> processor("rec", ring, handler);
  ring.add_gating_sequence(processor.sequence());

  EXPECT_EQ(processor.do_work(), 0);
  EXPECT_EQ(processor.sequence().get(), Sequence::kInitialValue);
  publish_values(ring, 3);
  EXPECT_EQ(processor.do_work(), 3);
  EXPECT_EQ(handler.calls, (std::vector<Call>{{0, false}, {1, false}, {2, true}}));
  EXPECT_EQ(processor.sequence().get(), 2);
  EXPECT_EQ(processor.do_work(), 0);
}

TEST(BatchEventProcessor, MaxBatchBoundsOnePass) {
  auto wait = make_yielding_wait_strategy();
  RingBuffer<Event> ring(16, *wait);
  RecordingHandler handler;
  BatchEventProcessor<Event, RecordingHandler> processor("rec", ring, handler, {}, 4);
  publish_values(ring, 10);
  EXPECT_EQ(processor.do_work(), 4);
  EXPECT_EQ(processor.sequence().get(), 3);
  EXPECT_TRUE(handler.calls.back().end_of_batch);
  EXPECT_EQ(processor.do_work(), 4);
  EXPECT_EQ(processor.do_work(), 2);
  EXPECT_EQ(processor.sequence().get(), 9);
}

struct Doubler {
  void on_event(Event& e, int64_t, bool) { e.doubled = e.value * 2; }
};

// Checks that its upstream stage finished the event: a dependent consumer that ran ahead of
// the one it depends on would see doubled == 0 for the newest events.
struct CheckAfterDoubler {
  const Sequence* upstream;
  int64_t passed_upstream = 0;
  int64_t wrong = 0;
  int64_t seen = 0;
  void on_event(Event& e, int64_t sequence, bool) {
    if (upstream->get() < sequence) ++passed_upstream;
    if (e.doubled != e.value * 2) ++wrong;
    ++seen;
  }
};

TEST(BatchEventProcessor, ADependentConsumerNeverPassesTheOneItDependsOn) {
  auto wait = make_yielding_wait_strategy();
  RingBuffer<Event> ring(64, *wait);
  Doubler doubler;
  BatchEventProcessor<Event, Doubler> a("a", ring, doubler, {}, 7);
  CheckAfterDoubler check{.upstream = &a.sequence()};
  BatchEventProcessor<Event, CheckAfterDoubler> b("b", ring, check, {&a.sequence()});
  ring.add_gating_sequence(b.sequence());

  const int64_t total = 500'000 / testing::kStressScale;
  // Producer on this thread, the two stages on one runner thread each (3 threads, yielding).
  AgentRunner ra(a, RunnerOptions{.idle = IdleConfig{.kind = IdleKind::kYield}});
  AgentRunner rb(b, RunnerOptions{.idle = IdleConfig{.kind = IdleKind::kYield}});
  ASSERT_TRUE(ra.start().ok());
  ASSERT_TRUE(rb.start().ok());
  for (int64_t i = 0; i < total; ++i) {
    const int64_t s = ring.next();
    ring[s] = Event{.value = s};  // also clears last lap's doubled
    ring.publish(s);
  }
  ASSERT_TRUE(eventually([&] { return b.sequence().get() == total - 1; }));
  ra.stop();
  rb.stop();
  EXPECT_EQ(check.seen, total);
  EXPECT_EQ(check.passed_upstream, 0);
  EXPECT_EQ(check.wrong, 0);
}

struct Summer {
  int64_t sum = 0;
  int64_t count = 0;
  void on_event(Event& e, int64_t, bool) {
    sum += e.value;
    ++count;
  }
};

// Multicast (two consumers on the cursor) and a diamond join behind them.
TEST(BatchEventProcessor, DiamondJoinSeesBothBranches) {
  auto wait = make_yielding_wait_strategy();
  RingBuffer<Event> ring(32, *wait);
  Doubler left;
  struct PlusOne {
    void on_event(Event& e, int64_t, bool) { e.plus_one = e.value + 1; }
  } right;
  struct Join {
    int64_t wrong = 0, seen = 0;
    void on_event(Event& e, int64_t, bool) {
      wrong += (e.doubled != e.value * 2) + (e.plus_one != e.value + 1);
      ++seen;
    }
  } join;
  BatchEventProcessor<Event, Doubler> a("a", ring, left);
  BatchEventProcessor<Event, PlusOne> b("b", ring, right);
  BatchEventProcessor<Event, Join> c("c", ring, join, {&a.sequence(), &b.sequence()});
  ring.add_gating_sequence(c.sequence());

  CompositeAgent stages({&c, &b, &a});  // deliberately polled downstream-first
  AgentRunner runner(stages, RunnerOptions{.idle = IdleConfig{.kind = IdleKind::kYield}});
  ASSERT_TRUE(runner.start().ok());
  const int64_t total = 200'000 / testing::kStressScale;
  for (int64_t i = 0; i < total; ++i) {
    const int64_t s = ring.next();
    ring[s] = Event{.value = s};
    ring.publish(s);
  }
  ASSERT_TRUE(eventually([&] { return c.sequence().get() == total - 1; }));
  runner.stop();
  EXPECT_EQ(join.seen, total);
  EXPECT_EQ(join.wrong, 0);
}

TEST(BatchEventProcessor, RunWithABlockingStrategyProcessesUntilHalted) {
  BlockingWaitStrategy wait;
  RingBuffer<Event> ring(8, wait);
  Summer summer;
  BatchEventProcessor<Event, Summer> processor("sum", ring, summer);
  ring.add_gating_sequence(processor.sequence());
  std::thread consumer([&] { processor.run(); });

  const int64_t total = 10'000;
  for (int64_t i = 0; i < total; ++i) {
    const int64_t s = ring.next();
    ring[s].value = i;
    ring.publish(s);
  }
  ASSERT_TRUE(eventually([&] { return processor.sequence().get() == total - 1; }));
  // Parked again on the now-empty ring, then halted: run() must return.
  ASSERT_TRUE(eventually([&] { return wait.waiters() == 1; }));
  processor.halt();
  consumer.join();
  EXPECT_EQ(summer.count, total);
  EXPECT_EQ(summer.sum, total * (total - 1) / 2);
}

}  // namespace
}  // namespace sluice
