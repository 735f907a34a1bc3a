// state_store_bench: the per-shard state store (pipeline/state_store.h) against the layout it
// replaced, absl::flat_hash_map<account, absl::InlinedVector<Entry, 6>> with a
// std::priority_queue of timers (the former WindowedHistory + TimerQueue), on the fraud
// processor's access pattern: per event one window query, one insert, one timer, and the
// evictions of the timers the advancing watermark fires.
//
//   StateStore/<flat|absl>/<accounts>   events/s (items_per_second), resident bytes per account
//   Growth/<flat|absl>/<keys>           the longest single insert while a table fills from empty
//                                        to <keys> keys, through every doubling (max_insert_us),
//                                        inserts that took over 100 us, and inserts/s
//
// Each (layout, accounts) run builds its state from scratch, warms it to steady size
// (bench/workload.h: 3 events per account), then times batches of 2M events. Run with
// --benchmark_repetitions and compare medians; the two layouts of one account count run next
// to each other.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cstdint>
#include <functional>
#include <memory>
#include <queue>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/inlined_vector.h"
#include "bench/workload.h"
#include "core/clock.h"
#include "core/int128.h"
#include "pipeline/state_store.h"

namespace sluice {
namespace {

constexpr int64_t kWindow = 60'000'000'000;
constexpr int64_t kLateness = 5'000'000'000;
constexpr int64_t kBatch = 2'000'000;

struct Entry {
  int64_t time = 0;
  int64_t amount = 0;
};

// The state store: HistoryState (3 inline, pooled runs) + TimerQueue (FIFO + heap).
class FlatLayout {
 public:
  FlatLayout() : history_(store_.capture(), "h"), timers_(store_.capture(), "t") {}
  int64_t on_event(const bench::EventGen::Raw& e) {
    const WindowStats s = history_.query(e.account, e.time - kWindow, e.time);
    history_.add(e.account, Entry{e.time, e.amount});
    timers_.add(e.time + kLateness + kWindow, e.account);
    if (e.time > max_) {
      max_ = e.time;
      const int64_t cutoff = max_ - kLateness - kWindow;
      timers_.advance(max_, [&](uint64_t key, int64_t) { history_.evict(key, cutoff); });
    }
    return s.count;
  }
  size_t keys() const { return history_.keys(); }
  size_t bytes() const {
    return history_.table().capacity() * sizeof(HistoryState<Entry, 3>::Slot) +
           history_.pool_units() * sizeof(Entry) + timers_.size() * sizeof(Timer);
  }

 private:
  StateStore store_;
  HistoryState<Entry, 3> history_;
  TimerQueue timers_;
  int64_t max_ = INT64_MIN;
};

// The former layout, as pipeline/keyed_processors used it before the state store.
class AbslLayout {
 public:
  int64_t on_event(const bench::EventGen::Raw& e) {
    int64_t count = 0;
    Int128 sum = 0;
    if (auto it = map_.find(e.account); it != map_.end()) {
      const auto& v = it->second;
      auto first = std::upper_bound(v.begin(), v.end(), e.time - kWindow,
                                    [](int64_t t, const Entry& x) { return t < x.time; });
      for (auto x = first; x != v.end() && x->time <= e.time; ++x) {
        ++count;
        sum += x->amount;
      }
    }
    auto& v = map_[e.account];
    auto at = std::upper_bound(v.begin(), v.end(), e.time,
                               [](int64_t t, const Entry& x) { return t < x.time; });
    v.insert(at, Entry{e.time, e.amount});
    heap_.push({e.time + kLateness + kWindow, e.account});
    if (e.time > max_) {
      max_ = e.time;
      const int64_t cutoff = max_ - kLateness - kWindow;
      while (!heap_.empty() && heap_.top().first <= max_) {
        const uint64_t key = heap_.top().second;
        heap_.pop();
        auto it = map_.find(key);
        if (it == map_.end()) continue;
        auto& w = it->second;
        auto end = std::upper_bound(w.begin(), w.end(), cutoff,
                                    [](int64_t t, const Entry& x) { return t < x.time; });
        w.erase(w.begin(), end);
        if (w.empty()) map_.erase(it);
      }
    }
    return count + static_cast<int64_t>(sum & 1);
  }
  size_t keys() const { return map_.size(); }
  size_t bytes() const {
    size_t b = map_.capacity() * (sizeof(std::pair<uint64_t, absl::InlinedVector<Entry, 6>>) + 1);
    for (const auto& [k, v] : map_) {
      if (v.capacity() > 6) b += v.capacity() * sizeof(Entry);
    }
    return b + heap_.size() * sizeof(std::pair<int64_t, uint64_t>);
  }

 private:
  absl::flat_hash_map<uint64_t, absl::InlinedVector<Entry, 6>> map_;
  using Timer = std::pair<int64_t, uint64_t>;
  std::priority_queue<Timer, std::vector<Timer>, std::greater<Timer>> heap_;
  int64_t max_ = INT64_MIN;
};

template <typename Layout>
void BM_StateStore(benchmark::State& state) {
  const auto accounts = static_cast<uint64_t>(state.range(0));
  auto layout = std::make_unique<Layout>();
  bench::EventGen gen(accounts, bench::Mix::kFraud);
  int64_t sink = 0;
  for (int64_t i = 0; i < bench::warmup_events(accounts); ++i)
    sink += layout->on_event(gen.next_raw());
  for (auto _ : state) {
    const int64_t start = now_ns();
    for (int64_t i = 0; i < kBatch; ++i) sink += layout->on_event(gen.next_raw());
    state.SetIterationTime(static_cast<double>(now_ns() - start) / 1e9);
  }
  benchmark::DoNotOptimize(sink);
  state.SetItemsProcessed(state.iterations() * kBatch);
  state.counters["keys"] = static_cast<double>(layout->keys());
  state.counters["bytes_per_key"] = static_cast<double>(layout->bytes()) /
                                    static_cast<double>(std::max<size_t>(1, layout->keys()));
}

// The generator alone: what both layouts' numbers include.
void BM_Generator(benchmark::State& state) {
  bench::EventGen gen(static_cast<uint64_t>(state.range(0)), bench::Mix::kFraud);
  int64_t sink = 0;
  for (auto _ : state) {
    const int64_t start = now_ns();
    for (int64_t i = 0; i < kBatch; ++i) sink += gen.next_raw().time;
    state.SetIterationTime(static_cast<double>(now_ns() - start) / 1e9);
  }
  benchmark::DoNotOptimize(sink);
  state.SetItemsProcessed(state.iterations() * kBatch);
}

// Growth: what one insert can cost when it is the one that crosses the load limit. MapState
// (the risk processor's positions: a 24-byte slot) against absl::flat_hash_map, both unreserved,
// filled with fresh keys; each insert timed alone.
struct FlatGrowth {
  StateStore store;
  MapState<int64_t> map{store.capture(), "m"};
  void put(uint64_t key, int64_t v) { map.put(key, 1, v); }
};
struct AbslGrowth {
  absl::flat_hash_map<uint64_t, int64_t> map;
  void put(uint64_t key, int64_t v) { map[key] = v; }
};

template <typename Layout>
void BM_Growth(benchmark::State& state) {
  const auto keys = static_cast<uint64_t>(state.range(0));
  int64_t max_ns = 0;
  int64_t over_100us = 0;
  for (auto _ : state) {
    auto layout = std::make_unique<Layout>();
    uint64_t key = 0x9e3779b97f4a7c15ull;
    const int64_t start = now_ns();
    for (uint64_t i = 0; i < keys; ++i) {
      key = key * 6364136223846793005ull + 1442695040888963407ull;  // LCG: distinct keys
      const int64_t t0 = now_ns();
      layout->put(key | 1, static_cast<int64_t>(i) + 1);
      const int64_t ns = now_ns() - t0;
      max_ns = std::max(max_ns, ns);
      over_100us += ns > 100'000;
    }
    state.SetIterationTime(static_cast<double>(now_ns() - start) / 1e9);
    benchmark::DoNotOptimize(layout.get());
    state.PauseTiming();
    layout.reset();
    state.ResumeTiming();
  }
  state.SetItemsProcessed(state.iterations() * static_cast<int64_t>(keys));
  state.counters["max_insert_us"] = static_cast<double>(max_ns) / 1e3;
  state.counters["inserts_over_100us"] =
      static_cast<double>(over_100us) / static_cast<double>(state.iterations());
}

void args(benchmark::internal::Benchmark* b) {
  b->Arg(10'000)
      ->Arg(1'000'000)
      ->Arg(10'000'000)
      ->UseManualTime()
      ->Unit(benchmark::kMillisecond)
      ->Iterations(3);
}

BENCHMARK(BM_Generator)
    ->Arg(1'000'000)
    ->UseManualTime()
    ->Unit(benchmark::kMillisecond)
    ->Iterations(3);
BENCHMARK_TEMPLATE(BM_StateStore, FlatLayout)->Name("StateStore/flat")->Apply(args);
BENCHMARK_TEMPLATE(BM_StateStore, AbslLayout)->Name("StateStore/absl")->Apply(args);
void growth_args(benchmark::internal::Benchmark* b) {
  b->Arg(1'000'000)->Arg(4'000'000)->UseManualTime()->Unit(benchmark::kMillisecond)->Iterations(3);
}
BENCHMARK_TEMPLATE(BM_Growth, FlatGrowth)->Name("Growth/flat")->Apply(growth_args);
BENCHMARK_TEMPLATE(BM_Growth, AbslGrowth)->Name("Growth/absl")->Apply(growth_args);

}  // namespace
}  // namespace sluice

BENCHMARK_MAIN();
