// ring_buffer_bench: the LMAX Disruptor throughput matrix and a ping-pong latency test for
// sluice's ring, next to the usual C++ inter-thread queues, in one binary so that
// --benchmark_enable_random_interleaving runs every implementation under the same conditions.
//
// Names: Topology/impl/payload[/yield], then Google Benchmark appends /manual_time.
//   Topology  OneToOne, ThreeToOne, OneToThreePipeline, OneToThreeMulticast, OneToThreeDiamond
//             (throughput: items_per_second) and PingPong (latency: rtt_p50_ns, rtt_p99_ns,
//             rtt_p999_ns counters; items_per_second there is round trips per second).
//   impl      sluice            RingBuffer + BatchEventProcessor; producer next()/publish() per item
//             sluice_batch64    producer claims next(64) and publishes publish(lo, hi) per batch
//             boost_spsc        boost::lockfree::spsc_queue, capacity<64Ki>: push / consume_one
//             boost_queue       boost::lockfree::queue (MPMC, 64Ki preallocated nodes):
//                               bounded_push / pop  (ThreeToOne only)
//             moodycamel_rwq    moodycamel::ReaderWriterQueue(64Ki): try_enqueue / try_dequeue
//             moodycamel_cq     moodycamel::ConcurrentQueue with producer and consumer tokens:
//                               try_enqueue(token) per item; the consumer uses
//                               try_dequeue_bulk(token, buf, 64), its idiomatic fast path
//             mutex_deque       std::mutex + std::deque, bounded at 64Ki; push_back / pop_front,
//                               spinning (or yielding) on full / empty, no condition variable
//             raw_cacheline     PingPong only: two threads bouncing a value through two cache
//                               lines, the hardware round trip every queue pays at least once.
//                               perf/run_bench.sh also runs it alone as the placement probe.
//   payload   8B or 64B message (one or eight int64 words), 32B event for the 1P3C topologies.
//   /yield    the topology runs more threads (4) than this machine has CPUs (2), so every thread
//             waits with sched_yield (sluice: make_yielding_wait_strategy) instead of spinning.
//             Names without it run exactly two threads, pinned to CPU 0 and CPU 1, busy-spinning.
//
// Method:
//   - Every queue and ring holds kCapacity = 64Ki slots (moodycamel_cq: 64Ki items in total
//     across its per-producer sub-queues; see MoodycamelCq).
//   - The benchmark's own thread is the (first) producer, pinned to CPU 0; the consumer is
//     pinned to CPU 1; extra threads alternate CPU 0 / CPU 1.
//   - Each benchmark run builds its queue and threads, then pushes kWarmupItems (or
//     kWarmupRoundTrips) untimed through the same path so caches, TLBs, page faults and the
//     branch predictors are warm; only then do the timed iterations start. (Google Benchmark's
//     MinWarmUpTime would re-run the whole function and throw the warm queue away.)
//   - One iteration publishes a fixed number of items and ends when the terminal consumer has
//     seen the last one; that span, read from sluice's TSC clock, is the manual iteration time.
//   - Consumers do a little real work: they sum the payload's first and last words (and the
//     1P3C stages compute and pass on fields). After the run the sums and counts are checked
//     against what the producers sent; a mismatch, or a wait for the consumers that exceeds
//     kTimeoutNs (lost items never arrive), fails the benchmark through SkipWithError.
//   - PingPong keeps one item in flight and times every round trip with rdtsc into a
//     sluice::Histogram.
//   - Conditions: this host puts its two vCPUs "near" (cache-line round trip ~100 ns) or "far"
//     (~400 ns) and moves them while a run is in progress, and other work may share the CPUs.
//     Every benchmark run therefore measures the cache-line round trip (~1 ms, untimed) just
//     before and after itself and the CPU time taken by anything else meanwhile, reported as
//     the counters cl_rtt_before_ns, cl_rtt_after_ns and foreign_cpu_pct (see Conditions);
//     perf/summarize_bench.py uses them to split the repetitions into near and far and to set
//     aside disturbed ones.
#include <benchmark/benchmark.h>
#include <sched.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <boost/lockfree/policies.hpp>
#include <boost/lockfree/queue.hpp>
#include <boost/lockfree/spsc_queue.hpp>
#include <concurrentqueue/concurrentqueue.h>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <readerwriterqueue/readerwriterqueue.h>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "bench/run_conditions.h"
#include "core/cache_line.h"
#include "core/clock.h"
#include "core/cpu.h"
#include "core/histogram.h"
#include "core/ring_buffer.h"
#include "core/sequence.h"
#include "core/sequence_barrier.h"
#include "core/sequencer.h"
#include "core/wait_strategy.h"
#include "pipeline/batch_event_processor.h"

namespace {

constexpr int64_t kCapacity = int64_t{1} << 16;            // slots in every ring / queue
constexpr int64_t kItemsPerIteration = int64_t{1} << 20;   // 1P1C and 1P3C
constexpr int kProducers = 3;                              // ThreeToOne
constexpr int64_t kItemsPerProducerIteration = int64_t{1} << 18;
constexpr int64_t kWarmupItems = 4 * kCapacity;            // untimed, before the first iteration
constexpr int64_t kRoundTripsPerIteration = 10'000;
constexpr int64_t kWarmupRoundTrips = 20'000;
constexpr int64_t kTimeoutNs = 20'000'000'000;             // no progress for this long: fail
constexpr int64_t kPublishEvery = 1024;  // queue consumers report progress this often (or idle)
constexpr int kBulk = 64;                // moodycamel_cq consumer's try_dequeue_bulk size

constexpr int kCpu0 = 0;  // the benchmark thread: the (first) producer
constexpr int kCpu1 = 1;  // the consumer

// ---------------------------------------------------------------------------------------------
// Payloads and the work done on them.

template <size_t kBytes>
struct Message {
  static_assert(kBytes % sizeof(int64_t) == 0);
  static constexpr size_t kWords = kBytes / sizeof(int64_t);
  int64_t w[kWords];
};
using Msg8 = Message<8>;
using Msg64 = Message<64>;
static_assert(sizeof(Msg8) == 8 && sizeof(Msg64) == 64);

template <class P>
inline void fill(P& p, int64_t x) noexcept {
  for (size_t k = 0; k < P::kWords; ++k) p.w[k] = x + static_cast<int64_t>(k);
}
// The consumer's work: touch the first and last word.
template <class P>
inline uint64_t digest(const P& p) noexcept {
  return static_cast<uint64_t>(p.w[0]) + static_cast<uint64_t>(p.w[P::kWords - 1]);
}
template <class P>
inline uint64_t expected_digest(int64_t x) noexcept {
  return 2 * static_cast<uint64_t>(x) + (P::kWords - 1);
}
template <class P>
std::string payload_name() {
  return std::to_string(sizeof(P)) + "B";
}

// The 1P3C topologies' event: the producer sets value, the stages compute a and b.
struct Event32 {
  int64_t value;
  int64_t a;
  int64_t b;
  int64_t spare;
};
static_assert(sizeof(Event32) == 32);

// Running sum / xor / count, modulo 2^64, of what a thread sent or received.
struct Tally {
  uint64_t sum = 0;
  uint64_t xr = 0;
  int64_t count = 0;
  void add(uint64_t v) noexcept {
    sum += v;
    xr ^= v;
    ++count;
  }
};

// One producer's values x, x + step, ... and the tally of what it sent. Aligned so that the
// producer's bookkeeping never shares a cache line (or an adjacent-line prefetch pair) with a
// consumer's.
struct alignas(2 * sluice::kCacheLineSize) Source {
  int64_t x = 0;
  int64_t step = 1;
  Tally sent;
  int64_t take() noexcept {
    const int64_t v = x;
    sent.add(static_cast<uint64_t>(v));
    x += step;
    return v;
  }
};

// What a consumer of `sent` (a tally of the x values) must have summed with digest().
template <class P>
uint64_t expected_digest_sum(const Tally& sent) {
  return 2 * sent.sum + static_cast<uint64_t>(sent.count) * (P::kWords - 1);
}

bool check(benchmark::State& state, const char* what, int64_t got_count, uint64_t got,
           int64_t want_count, uint64_t want) {
  if (state.error_occurred()) return false;  // the run already failed; keep its message
  if (got_count == want_count && got == want) return true;
  const std::string msg = std::string("checksum mismatch (") + what + "): received " +
                          std::to_string(got_count) + " items, checksum " + std::to_string(got) +
                          "; sent " + std::to_string(want_count) + " items, checksum " +
                          std::to_string(want);
  state.SkipWithError(msg.c_str());
  return false;
}

// ---------------------------------------------------------------------------------------------
// Threads, pinning and waiting.

enum class Wait { kSpin, kYield };

// A Sequence alone in its 128-byte adjacent-line prefetch pair, for the harness's own flags and
// counters (the consumer's progress count, round and stop signals).
struct alignas(2 * sluice::kCacheLineSize) Flag : sluice::Sequence {
  using sluice::Sequence::Sequence;
};

template <Wait W>
inline void pause_once() noexcept {
  if constexpr (W == Wait::kSpin) {
    sluice::cpu_relax();
  } else {
    sched_yield();
  }
}

// Waits until done() or kTimeoutNs passed; false on timeout.
template <Wait W, class Done>
bool await(Done&& done) {
  const int64_t deadline = sluice::now_ns() + kTimeoutNs;
  for (uint32_t n = 1;; ++n) {
    if (done()) return true;
    pause_once<W>();
    if ((W == Wait::kYield || (n & 0xFFF) == 0) && sluice::now_ns() > deadline) return false;
  }
}

// Spins until done(); false if the deadline passes first (checked every 64Ki spins).
template <class Done>
inline bool spin_until(Done&& done, int64_t deadline) {
  uint32_t spins = 0;
  while (!done()) {
    sluice::cpu_relax();
    if (++spins == 0x10000) {
      spins = 0;
      if (sluice::now_ns() > deadline) return false;
    }
  }
  return true;
}

// Two cache lines, each written by one side only; 128-byte alignment keeps them out of one
// adjacent-line prefetch pair.
struct alignas(2 * sluice::kCacheLineSize) Line {
  std::atomic<int64_t> v{-1};
};
constexpr int64_t kStopEcho = -2;

// The echo side of a cache-line ping-pong: copies every new value of `ping` to `pong` until it
// reads kStopEcho.
void echo_lines(const Line& ping, Line& pong) {
  int64_t last = -1;
  for (;;) {
    const int64_t v = ping.v.load(std::memory_order_acquire);
    if (v == last) {
      sluice::cpu_relax();
      continue;
    }
    if (v == kStopEcho) return;
    pong.v.store(v, std::memory_order_release);
    last = v;
  }
}

// Pins the benchmark thread (the producer) to CPU 0 and records the run's conditions against
// CPU 1 (bench/run_conditions.h). perf/summarize_bench.py uses them to split the repetitions by
// placement and to set aside the disturbed ones.
class Conditions final : public sluice::bench::RunConditions {
 public:
  Conditions() : RunConditions(kCpu0, kCpu1) {}
};

// The benchmark's worker threads. stop() runs the stop action (which must make every worker's
// body return) and joins; the destructor does it too, so no early return leaves a thread behind.
class Crew {
 public:
  explicit Crew(std::function<void()> stop_action) : stop_action_(std::move(stop_action)) {}
  ~Crew() { stop(); }
  Crew(const Crew&) = delete;
  Crew& operator=(const Crew&) = delete;

  template <class Body>
  void spawn(int cpu, const char* name, Body body) {
    threads_.emplace_back([this, cpu, name, body = std::move(body)]() mutable {
      if (!sluice::pin_current_thread(cpu).ok()) pin_failures_.fetch_add(1);
      (void)sluice::set_current_thread_name(name);
      body();
    });
  }

  void stop() {
    if (threads_.empty()) return;
    stop_action_();
    for (std::thread& t : threads_) t.join();
    threads_.clear();
  }

  // After the warm-up: every worker has pinned itself by then.
  bool pinned(benchmark::State& state) const {
    if (pin_failures_.load() == 0) return true;
    state.SkipWithError("pinning a worker thread to its CPU failed");
    return false;
  }

 private:
  std::function<void()> stop_action_;
  std::vector<std::thread> threads_;
  std::atomic<int> pin_failures_{0};
};

// Warm-up, then the timed iterations: produce(n) publishes n items from this thread (and starts
// any other producers), drained(total) tells whether the terminal consumers saw `total` items.
template <Wait W, class Produce, class Drained>
void drive(benchmark::State& state, const Crew& crew, int64_t warmup, int64_t per_iteration,
           Produce&& produce, Drained&& drained) {
  int64_t total = 0;
  produce(warmup);
  total += warmup;
  if (!await<W>([&] { return drained(total); })) {
    state.SkipWithError("warm-up timed out: the consumer stalled or lost items");
    return;
  }
  if (!crew.pinned(state)) return;
  for (auto _ : state) {
    const int64_t t0 = sluice::now_ns();
    produce(per_iteration);
    total += per_iteration;
    if (!await<W>([&] { return drained(total); })) {
      state.SkipWithError("timed out: the consumer stalled or lost items");
      break;
    }
    state.SetIterationTime(static_cast<double>(sluice::now_ns() - t0) * 1e-9);
  }
  state.SetItemsProcessed(state.iterations() * per_iteration);
}

// ---------------------------------------------------------------------------------------------
// Peer queues behind one interface:
//   Q(int producers); q.producer(i) -> handle with bool try_push(const P&);
//   q.consumer() -> handle with int64_t poll(F& on_item) calling on_item(const P&) for each item
//   taken, returning how many (0 when empty).

template <class P>
class BoostSpsc {
 public:
  static constexpr const char* kName = "boost_spsc";
  explicit BoostSpsc(int /*producers*/) {}

  struct Producer {
    BoostSpsc* q;
    bool try_push(const P& p) noexcept { return q->q_.push(p); }
  };
  struct Consumer {
    BoostSpsc* q;
    template <class F>
    int64_t poll(F& on_item) {
      return q->q_.consume_one(on_item) ? 1 : 0;
    }
  };
  Producer producer(int /*i*/) { return {this}; }
  Consumer consumer() { return {this}; }

 private:
  boost::lockfree::spsc_queue<P, boost::lockfree::capacity<kCapacity>> q_;
};

template <class P>
class BoostQueue {
 public:
  static constexpr const char* kName = "boost_queue";
  explicit BoostQueue(int /*producers*/) : q_(kCapacity) {}

  struct Producer {
    BoostQueue* q;
    bool try_push(const P& p) noexcept { return q->q_.bounded_push(p); }
  };
  struct Consumer {
    BoostQueue* q;
    template <class F>
    int64_t poll(F& on_item) {
      P p;
      if (!q->q_.pop(p)) return 0;
      on_item(p);
      return 1;
    }
  };
  Producer producer(int /*i*/) { return {this}; }
  Consumer consumer() { return {this}; }

 private:
  boost::lockfree::queue<P> q_;
};

template <class P>
class MoodycamelRwq {
 public:
  static constexpr const char* kName = "moodycamel_rwq";
  explicit MoodycamelRwq(int /*producers*/) : q_(static_cast<size_t>(kCapacity)) {}

  struct Producer {
    MoodycamelRwq* q;
    bool try_push(const P& p) noexcept { return q->q_.try_enqueue(p); }
  };
  struct Consumer {
    MoodycamelRwq* q;
    template <class F>
    int64_t poll(F& on_item) {
      P p;
      if (!q->q_.try_dequeue(p)) return 0;
      on_item(p);
      return 1;
    }
  };
  Producer producer(int /*i*/) { return {this}; }
  Consumer consumer() { return {this}; }

 private:
  moodycamel::ReaderWriterQueue<P> q_;
};

// ConcurrentQueue keeps one sub-queue per producer token, built from 32-item blocks that a
// token keeps once it has taken them from the queue's pool. With a plain pool of kCapacity / 32
// blocks, whichever producer runs first can take every block and starve the others for good
// (try_enqueue never allocates), so each sub-queue is capped instead (MAX_SUBQUEUE_SIZE =
// kCapacity / producers) and the pool sized for all of them: together they hold kCapacity items
// (65536 for one producer, 3 x 21856 for three; checked with try_enqueue on an empty queue).
template <size_t kSubqueue>
struct CqTraits : moodycamel::ConcurrentQueueDefaultTraits {
  static const size_t MAX_SUBQUEUE_SIZE = kSubqueue;
};

template <class P, int kProducerCount>
class MoodycamelCqN {
 public:
  static constexpr const char* kName = "moodycamel_cq";
  static constexpr size_t kBlock = moodycamel::ConcurrentQueueDefaultTraits::BLOCK_SIZE;
  static constexpr size_t kSubqueue =
      (static_cast<size_t>(kCapacity / kProducerCount) + kBlock - 1) / kBlock * kBlock;
  using Queue = moodycamel::ConcurrentQueue<P, CqTraits<kSubqueue>>;

  explicit MoodycamelCqN(int producers) : q_(kSubqueue, kProducerCount, 0) {
    tokens_.reserve(static_cast<size_t>(producers));
    for (int i = 0; i < producers; ++i) tokens_.emplace_back(q_);
  }

  struct Producer {
    Queue* q;
    moodycamel::ProducerToken* token;
    bool try_push(const P& p) { return q->try_enqueue(*token, p); }
  };
  struct Consumer {
    explicit Consumer(Queue& queue) : q(&queue), token(queue) {}
    Queue* q;
    moodycamel::ConsumerToken token;
    P buf[kBulk];
    template <class F>
    int64_t poll(F& on_item) {
      const size_t n = q->try_dequeue_bulk(token, buf, kBulk);
      for (size_t i = 0; i < n; ++i) on_item(buf[i]);
      return static_cast<int64_t>(n);
    }
  };
  Producer producer(int i) { return {&q_, &tokens_[static_cast<size_t>(i)]}; }
  Consumer consumer() { return Consumer(q_); }

 private:
  Queue q_;
  std::vector<moodycamel::ProducerToken> tokens_;
};
template <class P>
using MoodycamelCq = MoodycamelCqN<P, 1>;
template <class P>
using MoodycamelCq3 = MoodycamelCqN<P, kProducers>;

template <class P>
class MutexDeque {
 public:
  static constexpr const char* kName = "mutex_deque";
  explicit MutexDeque(int /*producers*/) {}

  struct Producer {
    MutexDeque* q;
    bool try_push(const P& p) {
      std::lock_guard<std::mutex> lock(q->mu_);
      if (static_cast<int64_t>(q->items_.size()) >= kCapacity) return false;
      q->items_.push_back(p);
      return true;
    }
  };
  struct Consumer {
    MutexDeque* q;
    template <class F>
    int64_t poll(F& on_item) {
      P p;
      {
        std::lock_guard<std::mutex> lock(q->mu_);
        if (q->items_.empty()) return 0;
        p = q->items_.front();
        q->items_.pop_front();
      }
      on_item(p);
      return 1;
    }
  };
  Producer producer(int /*i*/) { return {this}; }
  Consumer consumer() { return {this}; }

 private:
  std::mutex mu_;
  std::deque<P> items_;
};

// Pushes the source's next n items, retrying while the queue is full; gives up (false) if one
// push keeps failing for kTimeoutNs, which the consumer's count then reports as lost items.
template <Wait W, class P, class Producer>
bool push_items(Producer& producer, int64_t n, Source& src) {
  for (int64_t i = 0; i < n; ++i) {
    P item;
    fill(item, src.take());
    int64_t deadline = 0;
    for (uint32_t fails = 1; !producer.try_push(item); ++fails) {
      pause_once<W>();
      if ((fails & 0xFFFF) != 0) continue;
      const int64_t now = sluice::now_ns();
      if (deadline == 0) {
        deadline = now + kTimeoutNs;
      } else if (now > deadline) {
        return false;
      }
    }
  }
  return true;
}

// A queue consumer's loop: takes items until `stop` is set and the queue is empty. Reports its
// count through `consumed` every kPublishEvery items and whenever it finds the queue empty, so
// the waiting producer does not pull the counter's line away on every item.
template <Wait W, class P, class Consumer>
Tally consume_until_stopped(Consumer& consumer, sluice::Sequence& consumed,
                            const sluice::Sequence& stop) {
  Tally got;
  int64_t published = 0;
  auto on_item = [&got](const P& p) { got.add(digest(p)); };
  for (;;) {
    if (consumer.poll(on_item) > 0) {
      if (got.count - published >= kPublishEvery) {
        consumed.set(got.count);
        published = got.count;
      }
      continue;
    }
    if (got.count != published) {
      consumed.set(got.count);
      published = got.count;
      continue;
    }
    if (stop.get() != 0) break;
    pause_once<W>();
  }
  return got;
}

// ---------------------------------------------------------------------------------------------
// sluice handlers.

template <class P>
struct alignas(2 * sluice::kCacheLineSize) DigestHandler {
  Tally got;
  int64_t batches = 0;
  void on_event(const P& e, int64_t /*sequence*/, bool end_of_batch) noexcept {
    got.add(digest(e));
    batches += end_of_batch ? 1 : 0;
  }
  // Counter consumer_batch: the mean number of events the processor handed over per batch
  // (warm-up included). Small batches mean the consumer re-reads the cursor, and pulls its
  // cache line and the slot lines across, every few items.
  void report(benchmark::State& state) const {
    state.counters["consumer_batch"] =
        batches > 0 ? static_cast<double>(got.count) / static_cast<double>(batches) : 0.0;
  }
};

// ---------------------------------------------------------------------------------------------
// OneToOne: one producer (this thread, CPU 0), one consumer (CPU 1), busy-spin.

template <class P, int64_t kBatch>
void BM_OneToOne_Sluice(benchmark::State& state) {
  static_assert(kItemsPerIteration % kBatch == 0 && kWarmupItems % kBatch == 0);
  Conditions conditions;
  if (!conditions.start(state)) return;
  auto wait = sluice::make_busy_spin_wait_strategy();
  sluice::RingBuffer<P> ring(kCapacity, *wait);
  DigestHandler<P> handler;
  sluice::BatchEventProcessor<P, DigestHandler<P>> consumer("consumer", ring, handler);
  ring.add_gating_sequence(consumer.sequence());
  Crew crew([&] { consumer.halt(); });
  crew.spawn(kCpu1, "consumer", [&] { consumer.run(); });

  Source src;
  auto produce = [&](int64_t n) {
    if constexpr (kBatch == 1) {
      for (int64_t i = 0; i < n; ++i) {
        const int64_t s = ring.next();
        fill(ring[s], src.take());
        ring.publish(s);
      }
    } else {
      for (int64_t i = 0; i < n; i += kBatch) {
        const int64_t hi = ring.next(kBatch);
        const int64_t lo = hi - (kBatch - 1);
        for (int64_t s = lo; s <= hi; ++s) fill(ring[s], src.take());
        ring.publish(lo, hi);
      }
    }
  };
  auto drained = [&](int64_t total) { return consumer.sequence().get() >= total - 1; };
  drive<Wait::kSpin>(state, crew, kWarmupItems, kItemsPerIteration, produce, drained);
  crew.stop();
  conditions.finish(state);
  check(state, "consumer", handler.got.count, handler.got.sum, src.sent.count,
        expected_digest_sum<P>(src.sent));
  handler.report(state);
  state.SetLabel(kBatch == 1 ? "busy-spin; producer cpu0, consumer cpu1"
                             : "busy-spin; next(64)/publish(lo,hi); producer cpu0, consumer cpu1");
}

template <template <class> class Q, class P>
void BM_OneToOne_Queue(benchmark::State& state) {
  Conditions conditions;
  if (!conditions.start(state)) return;
  auto q = std::make_unique<Q<P>>(1);
  Flag consumed(0);
  Flag stop(0);
  Tally got;
  Crew crew([&] { stop.set(1); });
  crew.spawn(kCpu1, "consumer", [&] {
    auto consumer = q->consumer();
    got = consume_until_stopped<Wait::kSpin, P>(consumer, consumed, stop);
  });

  auto producer = q->producer(0);
  Source src;
  auto produce = [&](int64_t n) { (void)push_items<Wait::kSpin, P>(producer, n, src); };
  auto drained = [&](int64_t total) { return consumed.get() >= total; };
  drive<Wait::kSpin>(state, crew, kWarmupItems, kItemsPerIteration, produce, drained);
  crew.stop();
  conditions.finish(state);
  check(state, "consumer", got.count, got.sum, src.sent.count,
        expected_digest_sum<P>(src.sent));
  state.SetLabel(std::string(Q<P>::kName == std::string("moodycamel_cq")
                                 ? "busy-spin; consumer try_dequeue_bulk(64); "
                                 : "busy-spin; ") +
                 "producer cpu0, consumer cpu1");
}

// ---------------------------------------------------------------------------------------------
// ThreeToOne: three producers (this thread on CPU 0, workers on CPU 0 and CPU 1) and one consumer
// (CPU 1): four threads on two CPUs, so everything yields.

constexpr int producer_cpu(int p) { return p % 2 == 0 ? kCpu0 : kCpu1; }  // 0, 1, 0 -> cpu

// The ThreeToOne producers' state: producer p sends p, p + 3, p + 6, ...
struct Sources {
  Source src[kProducers];
  Sources() {
    for (int p = 0; p < kProducers; ++p) {
      src[p].x = p;
      src[p].step = kProducers;
    }
  }
  Tally total() const {
    Tally all;
    for (const Source& s : src) {
      all.sum += s.sent.sum;
      all.count += s.sent.count;
    }
    return all;
  }
};

// Runs producers 1..kProducers-1 on worker threads in lockstep rounds with this thread
// (producer 0): produce_share(n, source) publishes the source's next n items. Round 1 is the
// warm-up; `go` counts rounds started.
template <class ProduceShare, class Drained>
void drive_three_to_one(benchmark::State& state, Crew& crew, sluice::Sequence& go,
                        const sluice::Sequence& stop, Sources& sources,
                        ProduceShare&& produce_share, Drained&& drained) {
  constexpr int64_t kWarmupShare = kWarmupItems / kProducers;
  for (int p = 1; p < kProducers; ++p) {
    crew.spawn(producer_cpu(p), "producer", [&, p] {
      for (int64_t round = 1;; ++round) {
        while (go.get() < round) {
          if (stop.get() != 0) return;
          sched_yield();
        }
        produce_share(round == 1 ? kWarmupShare : kItemsPerProducerIteration, sources.src[p]);
      }
    });
  }
  int64_t round = 0;
  auto produce = [&](int64_t /*n*/) {
    go.set(++round);
    produce_share(round == 1 ? kWarmupShare : kItemsPerProducerIteration, sources.src[0]);
  };
  drive<Wait::kYield>(state, crew, kWarmupShare * kProducers,
                      kItemsPerProducerIteration * kProducers, produce, drained);
}

template <class P>
void BM_ThreeToOne_Sluice(benchmark::State& state) {
  Conditions conditions;
  if (!conditions.start(state)) return;
  using Ring = sluice::RingBuffer<P, sluice::MultiProducerSequencer>;
  auto wait = sluice::make_yielding_wait_strategy();
  Ring ring(kCapacity, *wait);
  DigestHandler<P> handler;
  sluice::BatchEventProcessor<P, DigestHandler<P>, sluice::MultiProducerSequencer> consumer(
      "consumer", ring, handler);
  ring.add_gating_sequence(consumer.sequence());
  Flag go(0);
  Flag stop(0);
  Sources sources;
  Crew crew([&] {
    stop.set(1);
    consumer.halt();
  });
  crew.spawn(kCpu1, "consumer", [&] { consumer.run(); });

  auto produce_share = [&ring](int64_t n, Source& src) {
    for (int64_t i = 0; i < n; ++i) {
      const int64_t s = ring.next();
      fill(ring[s], src.take());
      ring.publish(s);
    }
  };
  auto drained = [&](int64_t total) { return consumer.sequence().get() >= total - 1; };
  drive_three_to_one(state, crew, go, stop, sources, produce_share, drained);
  crew.stop();
  conditions.finish(state);
  const Tally all = sources.total();
  check(state, "consumer", handler.got.count, handler.got.sum, all.count,
        expected_digest_sum<P>(all));
  handler.report(state);
  state.SetLabel("yield; 4 threads on 2 CPUs: P0,P2 cpu0; P1,C cpu1; MultiProducerSequencer");
}

template <template <class> class Q, class P>
void BM_ThreeToOne_Queue(benchmark::State& state) {
  Conditions conditions;
  if (!conditions.start(state)) return;
  auto q = std::make_unique<Q<P>>(kProducers);
  Flag consumed(0);
  Flag go(0);
  Flag stop(0);
  Tally got;
  Sources sources;
  Crew crew([&] { stop.set(1); });
  crew.spawn(kCpu1, "consumer", [&] {
    auto consumer = q->consumer();
    got = consume_until_stopped<Wait::kYield, P>(consumer, consumed, stop);
  });

  using Producer = decltype(q->producer(0));
  std::vector<Producer> producers;
  for (int p = 0; p < kProducers; ++p) producers.push_back(q->producer(p));
  auto produce_share = [&](int64_t n, Source& src) {
    const auto p = static_cast<size_t>(&src - sources.src);
    (void)push_items<Wait::kYield, P>(producers[p], n, src);
  };
  auto drained = [&](int64_t total) { return consumed.get() >= total; };
  drive_three_to_one(state, crew, go, stop, sources, produce_share, drained);
  crew.stop();
  conditions.finish(state);
  const Tally all = sources.total();
  check(state, "consumer", got.count, got.sum, all.count, expected_digest_sum<P>(all));
  state.SetLabel(std::string("yield; 4 threads on 2 CPUs: P0,P2 cpu0; P1,C cpu1") +
                 (Q<P>::kName == std::string("moodycamel_cq") ? "; consumer try_dequeue_bulk(64)"
                                                              : ""));
}

// ---------------------------------------------------------------------------------------------
// One producer, three consumers (sluice only): four threads on two CPUs, so everything yields.
// Producer (this thread) cpu0, A cpu1, B cpu0, C cpu1.

struct alignas(2 * sluice::kCacheLineSize) PlusOne {  // a = value + 1
  int64_t count = 0;
  void on_event(Event32& e, int64_t, bool) noexcept {
    e.a = e.value + 1;
    ++count;
  }
};
struct alignas(2 * sluice::kCacheLineSize) TripleA {  // b = 3 * a   (pipeline stage 2: reads stage 1's output)
  int64_t count = 0;
  void on_event(Event32& e, int64_t, bool) noexcept {
    e.b = 3 * e.a;
    ++count;
  }
};
struct alignas(2 * sluice::kCacheLineSize) DoubleValue {  // b = 2 * value   (diamond: runs beside PlusOne)
  int64_t count = 0;
  void on_event(Event32& e, int64_t, bool) noexcept {
    e.b = 2 * e.value;
    ++count;
  }
};
struct alignas(2 * sluice::kCacheLineSize) SumB {  // sum of b
  Tally got;
  void on_event(const Event32& e, int64_t, bool) noexcept { got.add(static_cast<uint64_t>(e.b)); }
};
struct alignas(2 * sluice::kCacheLineSize) SumAB {  // sum of a + b
  Tally got;
  void on_event(const Event32& e, int64_t, bool) noexcept {
    got.add(static_cast<uint64_t>(e.a) + static_cast<uint64_t>(e.b));
  }
};
struct alignas(2 * sluice::kCacheLineSize) SumValue {
  Tally got;
  void on_event(const Event32& e, int64_t, bool) noexcept {
    got.add(static_cast<uint64_t>(e.value));
  }
};

enum class Shape { kPipeline, kMulticast, kDiamond };

template <Shape kShape>
void BM_OneToThree_Sluice(benchmark::State& state) {
  Conditions conditions;
  if (!conditions.start(state)) return;
  using Ring = sluice::RingBuffer<Event32>;
  auto wait = sluice::make_yielding_wait_strategy();
  Ring ring(kCapacity, *wait);

  Source src;
  const Tally& sent = src.sent;
  auto produce = [&](int64_t n) {
    for (int64_t i = 0; i < n; ++i) {
      const int64_t s = ring.next();
      ring[s].value = src.take();
      ring.publish(s);
    }
  };
  const uint64_t u3 = 3;

  if constexpr (kShape == Shape::kPipeline) {
    PlusOne ha;
    TripleA hb;
    SumB hc;
    sluice::BatchEventProcessor<Event32, PlusOne> a("A", ring, ha);
    sluice::BatchEventProcessor<Event32, TripleA> b("B", ring, hb, {&a.sequence()});
    sluice::BatchEventProcessor<Event32, SumB> c("C", ring, hc, {&b.sequence()});
    ring.add_gating_sequence(c.sequence());
    Crew crew([&] {
      a.halt();
      b.halt();
      c.halt();
    });
    crew.spawn(kCpu1, "A", [&] { a.run(); });
    crew.spawn(kCpu0, "B", [&] { b.run(); });
    crew.spawn(kCpu1, "C", [&] { c.run(); });
    auto drained = [&](int64_t total) { return c.sequence().get() >= total - 1; };
    drive<Wait::kYield>(state, crew, kWarmupItems, kItemsPerIteration, produce, drained);
    crew.stop();
    conditions.finish(state);
    // C sums 3 * (value + 1).
    if (check(state, "A", ha.count, 0, sent.count, 0) &&
        check(state, "B", hb.count, 0, sent.count, 0)) {
      check(state, "C", hc.got.count, hc.got.sum, sent.count,
            u3 * sent.sum + u3 * static_cast<uint64_t>(sent.count));
    }
    state.SetLabel("yield; P->A->B->C; 4 threads on 2 CPUs: P,B cpu0; A,C cpu1");
  } else if constexpr (kShape == Shape::kMulticast) {
    SumValue ha, hb, hc;
    sluice::BatchEventProcessor<Event32, SumValue> a("A", ring, ha);
    sluice::BatchEventProcessor<Event32, SumValue> b("B", ring, hb);
    sluice::BatchEventProcessor<Event32, SumValue> c("C", ring, hc);
    ring.add_gating_sequence(a.sequence());
    ring.add_gating_sequence(b.sequence());
    ring.add_gating_sequence(c.sequence());
    Crew crew([&] {
      a.halt();
      b.halt();
      c.halt();
    });
    crew.spawn(kCpu1, "A", [&] { a.run(); });
    crew.spawn(kCpu0, "B", [&] { b.run(); });
    crew.spawn(kCpu1, "C", [&] { c.run(); });
    const sluice::Sequence* terminal[] = {&a.sequence(), &b.sequence(), &c.sequence()};
    auto drained = [&](int64_t total) {
      return sluice::minimum_sequence(terminal) >= total - 1;
    };
    drive<Wait::kYield>(state, crew, kWarmupItems, kItemsPerIteration, produce, drained);
    crew.stop();
    conditions.finish(state);
    if (check(state, "A", ha.got.count, ha.got.sum, sent.count, sent.sum) &&
        check(state, "B", hb.got.count, hb.got.xr, sent.count, sent.xr)) {
      check(state, "C", hc.got.count, hc.got.sum, sent.count, sent.sum);
    }
    state.SetLabel("yield; P->{A,B,C}; 4 threads on 2 CPUs: P,B cpu0; A,C cpu1");
  } else {
    PlusOne ha;
    DoubleValue hb;
    SumAB hc;
    sluice::BatchEventProcessor<Event32, PlusOne> a("A", ring, ha);
    sluice::BatchEventProcessor<Event32, DoubleValue> b("B", ring, hb);
    sluice::BatchEventProcessor<Event32, SumAB> c("C", ring, hc, {&a.sequence(), &b.sequence()});
    ring.add_gating_sequence(c.sequence());
    Crew crew([&] {
      a.halt();
      b.halt();
      c.halt();
    });
    crew.spawn(kCpu1, "A", [&] { a.run(); });
    crew.spawn(kCpu0, "B", [&] { b.run(); });
    crew.spawn(kCpu1, "C", [&] { c.run(); });
    auto drained = [&](int64_t total) { return c.sequence().get() >= total - 1; };
    drive<Wait::kYield>(state, crew, kWarmupItems, kItemsPerIteration, produce, drained);
    crew.stop();
    conditions.finish(state);
    // C sums (value + 1) + 2 * value.
    if (check(state, "A", ha.count, 0, sent.count, 0) &&
        check(state, "B", hb.count, 0, sent.count, 0)) {
      check(state, "C", hc.got.count, hc.got.sum, sent.count,
            u3 * sent.sum + static_cast<uint64_t>(sent.count));
    }
    state.SetLabel("yield; P->{A,B}->C; 4 threads on 2 CPUs: P,B cpu0; A,C cpu1");
  }
}

// ---------------------------------------------------------------------------------------------
// PingPong: this thread (CPU 0) sends one item, the echo thread (CPU 1) sends it back; one item
// in flight, busy-spin on both sides. round_trip(x, deadline) does one exchange and returns
// whether the right value came back before the deadline.

template <class RoundTrip>
void drive_ping_pong(benchmark::State& state, const Crew& crew, RoundTrip&& round_trip) {
  const sluice::Clock& clock = sluice::default_clock();
  sluice::Histogram rtt;
  int64_t x = 0;
  const int64_t warmup_deadline = sluice::now_ns() + kTimeoutNs;
  for (int64_t i = 0; i < kWarmupRoundTrips; ++i) {
    if (!round_trip(x++, warmup_deadline)) {
      state.SkipWithError("warm-up round trip timed out or returned the wrong value");
      return;
    }
  }
  if (!crew.pinned(state)) return;
  for (auto _ : state) {
    const int64_t start = sluice::now_ns();
    const int64_t deadline = start + kTimeoutNs;
    bool ok = true;
    for (int64_t i = 0; i < kRoundTripsPerIteration && ok; ++i) {
      const int64_t t0 = clock.now_ticks();
      ok = round_trip(x++, deadline);
      const int64_t t1 = clock.now_ticks();
      rtt.record(clock.ticks_to_ns(t1) - clock.ticks_to_ns(t0));
    }
    if (!ok) {
      state.SkipWithError("round trip timed out or returned the wrong value");
      break;
    }
    state.SetIterationTime(static_cast<double>(sluice::now_ns() - start) * 1e-9);
  }
  state.SetItemsProcessed(state.iterations() * kRoundTripsPerIteration);
  state.counters["rtt_p50_ns"] = static_cast<double>(rtt.value_at_percentile(50.0));
  state.counters["rtt_p99_ns"] = static_cast<double>(rtt.value_at_percentile(99.0));
  state.counters["rtt_p999_ns"] = static_cast<double>(rtt.value_at_percentile(99.9));
  state.counters["rtt_min_ns"] = static_cast<double>(rtt.min());
}

void BM_PingPong_RawCacheline(benchmark::State& state) {
  Conditions conditions;
  if (!conditions.start(state)) return;
  Line ping;
  Line pong;
  Crew crew([&] { ping.v.store(kStopEcho, std::memory_order_release); });
  crew.spawn(kCpu1, "echo", [&] { echo_lines(ping, pong); });
  auto round_trip = [&](int64_t x, int64_t deadline) {
    ping.v.store(x, std::memory_order_release);
    return spin_until([&] { return pong.v.load(std::memory_order_acquire) == x; }, deadline);
  };
  drive_ping_pong(state, crew, round_trip);
  crew.stop();
  conditions.finish(state);
  state.SetLabel("busy-spin; two cache lines, cpu0 <-> cpu1 (placement probe)");
}

// Read by the echo thread for every event: aligned so that it never shares a line with anything
// the benchmark thread writes (its stack neighbours, e.g. the round-trip histogram: sharing
// one cost ~50 ns per round trip when placed near).
template <class P>
struct alignas(2 * sluice::kCacheLineSize) Echo {
  sluice::RingBuffer<P>* out;
  void on_event(const P& e, int64_t /*sequence*/, bool /*end_of_batch*/) noexcept {
    const int64_t s = out->next();
    (*out)[s] = e;
    out->publish(s);
  }
};

template <class P>
void BM_PingPong_Sluice(benchmark::State& state) {
  Conditions conditions;
  if (!conditions.start(state)) return;
  auto wait = sluice::make_busy_spin_wait_strategy();
  sluice::RingBuffer<P> ping(kCapacity, *wait);
  sluice::RingBuffer<P> pong(kCapacity, *wait);
  Echo<P> echo{&pong};
  sluice::BatchEventProcessor<P, Echo<P>> echoer("echo", ping, echo);
  ping.add_gating_sequence(echoer.sequence());
  sluice::Sequence pong_read;  // this thread's progress through pong
  pong.add_gating_sequence(pong_read);
  sluice::SequenceBarrier<sluice::SingleProducerSequencer> back(pong.sequencer(), {});
  Crew crew([&] { echoer.halt(); });
  crew.spawn(kCpu1, "echo", [&] { echoer.run(); });

  // One item in flight, so ping and pong advance in lockstep: item x is sequence x on both.
  auto round_trip = [&](int64_t x, int64_t deadline) {
    const int64_t s = ping.next();
    fill(ping[s], x);
    ping.publish(s);
    if (!spin_until([&] { return back.poll(s) >= s; }, deadline)) return false;
    const bool ok = digest(pong[s]) == expected_digest<P>(x);
    pong_read.set(s);
    return ok;
  };
  drive_ping_pong(state, crew, round_trip);
  crew.stop();
  conditions.finish(state);
  state.SetLabel("busy-spin; ping ring -> BatchEventProcessor echo -> pong ring");
}

template <template <class> class Q, class P>
void BM_PingPong_Queue(benchmark::State& state) {
  Conditions conditions;
  if (!conditions.start(state)) return;
  auto ping = std::make_unique<Q<P>>(1);
  auto pong = std::make_unique<Q<P>>(1);
  Flag stop(0);
  Crew crew([&] { stop.set(1); });
  crew.spawn(kCpu1, "echo", [&] {
    auto in = ping->consumer();
    auto out = pong->producer(0);
    auto echo = [&out](const P& p) {
      while (!out.try_push(p)) sluice::cpu_relax();
    };
    for (;;) {
      if (in.poll(echo) > 0) continue;
      if (stop.get() != 0) return;
      sluice::cpu_relax();
    }
  });

  auto there = ping->producer(0);
  auto back = pong->consumer();
  uint64_t got = 0;
  auto on_item = [&got](const P& p) { got = digest(p); };
  auto round_trip = [&](int64_t x, int64_t deadline) {
    P item;
    fill(item, x);
    while (!there.try_push(item)) sluice::cpu_relax();
    if (!spin_until([&] { return back.poll(on_item) > 0; }, deadline)) return false;
    return got == expected_digest<P>(x);
  };
  drive_ping_pong(state, crew, round_trip);
  crew.stop();
  conditions.finish(state);
  state.SetLabel("busy-spin; cpu0 <-> cpu1");
}

// ---------------------------------------------------------------------------------------------
// Registration.

void add(const std::string& name, void (*fn)(benchmark::State&)) {
  benchmark::RegisterBenchmark(name.c_str(), fn)->UseManualTime()->Unit(benchmark::kMillisecond);
}

template <class P>
void register_one_to_one() {
  const std::string pl = "/" + payload_name<P>();
  add("OneToOne/sluice" + pl, BM_OneToOne_Sluice<P, 1>);
  add("OneToOne/sluice_batch64" + pl, BM_OneToOne_Sluice<P, 64>);
  add("OneToOne/boost_spsc" + pl, BM_OneToOne_Queue<BoostSpsc, P>);
  add("OneToOne/moodycamel_rwq" + pl, BM_OneToOne_Queue<MoodycamelRwq, P>);
  add("OneToOne/moodycamel_cq" + pl, BM_OneToOne_Queue<MoodycamelCq, P>);
  add("OneToOne/mutex_deque" + pl, BM_OneToOne_Queue<MutexDeque, P>);
}

template <class P>
void register_three_to_one() {
  const std::string pl = "/" + payload_name<P>();
  add("ThreeToOne/sluice" + pl + "/yield", BM_ThreeToOne_Sluice<P>);
  add("ThreeToOne/boost_queue" + pl + "/yield", BM_ThreeToOne_Queue<BoostQueue, P>);
  add("ThreeToOne/moodycamel_cq" + pl + "/yield", BM_ThreeToOne_Queue<MoodycamelCq3, P>);
  add("ThreeToOne/mutex_deque" + pl + "/yield", BM_ThreeToOne_Queue<MutexDeque, P>);
}

template <class P>
void register_ping_pong() {
  const std::string pl = "/" + payload_name<P>();
  add("PingPong/sluice" + pl, BM_PingPong_Sluice<P>);
  add("PingPong/boost_spsc" + pl, BM_PingPong_Queue<BoostSpsc, P>);
  add("PingPong/moodycamel_rwq" + pl, BM_PingPong_Queue<MoodycamelRwq, P>);
  add("PingPong/moodycamel_cq" + pl, BM_PingPong_Queue<MoodycamelCq, P>);
  add("PingPong/mutex_deque" + pl, BM_PingPong_Queue<MutexDeque, P>);
}

void register_all() {
  register_one_to_one<Msg8>();
  register_one_to_one<Msg64>();
  register_three_to_one<Msg8>();
  register_three_to_one<Msg64>();
  add("OneToThreePipeline/sluice/32B/yield", BM_OneToThree_Sluice<Shape::kPipeline>);
  add("OneToThreeMulticast/sluice/32B/yield", BM_OneToThree_Sluice<Shape::kMulticast>);
  add("OneToThreeDiamond/sluice/32B/yield", BM_OneToThree_Sluice<Shape::kDiamond>);
  add("PingPong/raw_cacheline/8B", BM_PingPong_RawCacheline);
  register_ping_pong<Msg8>();
  register_ping_pong<Msg64>();
}

}  // namespace

int main(int argc, char** argv) {
  sluice::now_ns();  // calibrate the TSC clock (~20 ms) before any benchmark runs
  register_all();
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::AddCustomContext("ring_capacity", std::to_string(kCapacity));
  benchmark::AddCustomContext("items_per_iteration", std::to_string(kItemsPerIteration));
  benchmark::AddCustomContext("three_to_one_items_per_iteration",
                              std::to_string(kItemsPerProducerIteration * kProducers));
  benchmark::AddCustomContext("round_trips_per_iteration", std::to_string(kRoundTripsPerIteration));
  benchmark::AddCustomContext("clock", sluice::tsc_in_use()
                                           ? "tsc " + std::to_string(sluice::tsc_ghz()) + " GHz"
                                           : "clock_gettime");
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
