// The state store's containers against std:: models on random operations, and the
// copy-on-write capture against a synchronous copy taken at the same moment.
#include "pipeline/state_store.h"

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <map>
#include <memory>
#include <random>
#include <set>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "gtest/gtest.h"
#include "tests/test_util.h"

namespace sluice {
namespace {

struct KvSlot {
  using Key = uint64_t;
  uint64_t key = 0;
  uint64_t value = 0;
  static uint64_t hash(uint64_t k) noexcept { return state_hash(k); }
};

// A slot whose hash is the key itself: keys that are multiples of the capacity collide, so
// clusters, wrap-around and backward shifts are exercised on purpose.
struct CollidingSlot {
  using Key = uint64_t;
  uint64_t key = 0;
  uint64_t value = 0;
  static uint64_t hash(uint64_t k) noexcept { return k << 60; }  // 16 homes in any capacity
};

// The same slots in a table that keeps distance bytes (FlatTable::kDistanceBytes), which only
// slots of a cache line or more get by default: the table tests below run both ways.
template <typename Slot>
struct WithDistanceBytes : Slot {
  static constexpr bool kDistanceBytes = true;
};
static_assert(!FlatTable<CollidingSlot>::kDistanceBytes);
static_assert(FlatTable<WithDistanceBytes<CollidingSlot>>::kDistanceBytes);

struct Entry {
  int64_t time = 0;
  int64_t amount = 0;
};

// incremental_from_bytes: SIZE_MAX grows every table at once, 0 grows every one incrementally.
template <typename Slot>
void check_table_against_model(uint64_t seed, uint64_t key_range, int ops,
                               size_t incremental_from_bytes) {
  StateStore store;
  FlatTable<Slot> table(store.capture(), "t", incremental_from_bytes);
  std::map<uint64_t, uint64_t> model;
  std::mt19937_64 rng(seed);
  for (int op = 0; op < ops; ++op) {
    const uint64_t key = 1 + rng() % key_range;
    if (rng() % 3 != 0) {
      const auto [i, inserted] = table.insert(key);
      EXPECT_EQ(inserted, model.count(key) == 0);
      table.mut(i).value = key * 7 + static_cast<uint64_t>(op);
      model[key] = key * 7 + static_cast<uint64_t>(op);
    } else {
      const int64_t i = table.find_index(key);
      ASSERT_EQ(i >= 0, model.count(key) == 1) << "key " << key;
      if (i >= 0) table.erase_at(static_cast<size_t>(i));
      model.erase(key);
    }
    if (op % 97 == 0 || op == ops - 1) {
      ASSERT_EQ(table.size(), model.size());
      for (uint64_t k = 1; k <= key_range; ++k) {
        const Slot* s = table.find(k);
        auto it = model.find(k);
        ASSERT_EQ(s != nullptr, it != model.end()) << "key " << k << " after op " << op;
        if (s != nullptr) {
          ASSERT_EQ(s->value, it->second);
        }
      }
      size_t seen = 0;
      table.for_each([&](const Slot& s) {
        ++seen;
        EXPECT_EQ(model.at(s.key), s.value);
      });
      EXPECT_EQ(seen, model.size());
      EXPECT_LE(table.size() * 4, table.capacity() * 3);
    }
  }
}

// Each check runs with growth at once and with incremental growth (keys found in either array,
// inserted into the new one, erased from either while the move goes on).
constexpr size_t kAtOnce = SIZE_MAX;
constexpr size_t kIncremental = 0;

TEST(FlatTable, RandomInsertsAndErasesMatchAStdMapThroughGrowth) {
  for (size_t from : {kAtOnce, kIncremental}) {
    SCOPED_TRACE(from);
    check_table_against_model<KvSlot>(1, 3'000, 40'000, from);
    check_table_against_model<WithDistanceBytes<KvSlot>>(1, 3'000, 40'000, from);
  }
}

TEST(FlatTable, BackwardShiftKeepsEveryKeyReachableInCollidingClusters) {
  // Every key hashes to one of 16 homes: long clusters that wrap around the end of the array.
  for (size_t from : {kAtOnce, kIncremental}) {
    SCOPED_TRACE(from);
    check_table_against_model<CollidingSlot>(2, 200, 20'000, from);
    check_table_against_model<WithDistanceBytes<CollidingSlot>>(2, 200, 20'000, from);
  }
}

TEST(FlatTable, KeysFarBeyondTheirHomeAreStillShiftedBackCorrectly) {
  // 700 keys over 16 homes: one cluster hundreds of slots long, so many keys sit further from
  // their home than a distance byte counts, and erase must hash those keys to move them.
  for (size_t from : {kAtOnce, kIncremental}) {
    SCOPED_TRACE(from);
    check_table_against_model<CollidingSlot>(3, 700, 6'000, from);
    check_table_against_model<WithDistanceBytes<CollidingSlot>>(3, 700, 6'000, from);
  }
}

// A large table's growth is spread over the inserts that follow it: the old keys stay findable
// (at indexes from capacity() on) until moved, and the move ends within capacity / 16 inserts,
// long before the doubled table reaches its own limit.
TEST(FlatTable, GrowthMovesTheOldKeysOverManyInsertsNotInOne) {
  StateStore store;
  FlatTable<KvSlot> table(store.capture(), "t");
  uint64_t next = 1;
  auto add = [&] {
    const uint64_t k = next++;
    table.mut(table.insert(k).first).value = k + 1;
  };
  // Tables under kIncrementalFromBytes grow at once.
  while (table.capacity() * sizeof(KvSlot) < FlatTable<KvSlot>::kIncrementalFromBytes) {
    add();
    ASSERT_FALSE(table.growing());
  }
  // Fill to the limit, then one more: the growth starts.
  const size_t old_cap = table.capacity();
  while (!table.growing()) add();
  ASSERT_EQ(table.capacity(), old_cap * 2);
  size_t in_old = 0;
  for (uint64_t k = 1; k < next; ++k) {
    const int64_t i = table.find_index(k);
    ASSERT_GE(i, 0) << k;
    in_old += static_cast<size_t>(i) >= table.capacity();
    ASSERT_EQ(table.at(static_cast<size_t>(i)).value, k + 1) << k;
  }
  EXPECT_GT(in_old, old_cap / 4);  // most keys are still in the old array after that insert
  // Erasing keys meanwhile, in either array, keeps the rest reachable (and moves keys too, but
  // these few erases not all of them).
  const uint64_t erased_below = next;
  for (uint64_t k = 1; k < erased_below; k += 50) {
    table.erase_at(static_cast<size_t>(table.find_index(k)));
  }
  ASSERT_TRUE(table.growing());
  size_t inserts = 0;
  while (table.growing()) {
    add();
    ++inserts;
  }
  EXPECT_GT(inserts, 1u);
  EXPECT_LE(inserts, old_cap / FlatTable<KvSlot>::kMoveSlotsPerInsert + 1);
  EXPECT_EQ(table.index_end(), table.capacity());
  EXPECT_EQ(table.size(), next - 1 - (erased_below + 48) / 50);
  for (uint64_t k = 1; k < next; ++k) {
    const KvSlot* s = table.find(k);
    if (k < erased_below && k % 50 == 1) {
      EXPECT_EQ(s, nullptr) << k;
    } else {
      ASSERT_NE(s, nullptr) << k;
      EXPECT_EQ(s->value, k + 1);
    }
  }
}

// A slot whose home, in a table of 1024 slots, is key >> 16: tests place keys exactly.
struct PlacedSlot {
  using Key = uint64_t;
  uint64_t key = 0;
  uint64_t value = 0;
  static uint64_t hash(uint64_t k) noexcept { return (k >> 16) << 54; }
};

template <typename Slot>
void check_far_key_moves_back_across_a_cluster_that_cannot_move() {
  StateStore store;
  FlatTable<Slot> table(store.capture(), "t");
  table.reserve(500);
  ASSERT_EQ(table.capacity(), 1024u);
  const uint64_t first = uint64_t{0} << 16 | 1;  // home 0, slot 0
  table.insert(first);
  for (uint64_t n = 0; n < 300; ++n) table.insert(uint64_t{1} << 16 | n);  // home 1: slots 1-300
  const uint64_t far = uint64_t{0} << 16 | 2;  // home 0: slot 301, 301 past its home
  ASSERT_EQ(table.insert(far).first, 301u);
  // Erasing slot 0 leaves the 300 keys of home 1 where they are; only `far` may fill the hole.
  table.erase_at(static_cast<size_t>(table.find_index(first)));
  EXPECT_EQ(table.find_index(far), 0);
  for (uint64_t n = 0; n < 300; ++n) {
    ASSERT_EQ(table.find_index(uint64_t{1} << 16 | n), static_cast<int64_t>(1 + n)) << n;
  }
  table.erase_at(0);  // and now that it sits at home, erasing it moves nothing
  EXPECT_EQ(table.find_index(far), -1);
  EXPECT_EQ(table.size(), 300u);
  EXPECT_EQ(table.find_index(uint64_t{1} << 16 | 299), 300);
}

TEST(FlatTable, AKeyFarFromItsHomeMovesBackAcrossAClusterThatCannotMove) {
  check_far_key_moves_back_across_a_cluster_that_cannot_move<PlacedSlot>();
  check_far_key_moves_back_across_a_cluster_that_cannot_move<WithDistanceBytes<PlacedSlot>>();
}

// A reserved table takes that many keys without growing, and keeps what it held.
TEST(FlatTable, ReserveSizesTheTableSoTheKeysFitWithoutGrowing) {
  StateStore store;
  FlatTable<KvSlot> table(store.capture(), "t");
  for (uint64_t k = 1; k <= 5; ++k) table.mut(table.insert(k).first).value = k * 3;
  table.reserve(10'000);
  const size_t reserved = table.capacity();
  EXPECT_GE(reserved * 3, 10'000u * 4);
  for (uint64_t k = 1; k <= 5; ++k) {
    ASSERT_NE(table.find(k), nullptr);
    EXPECT_EQ(table.find(k)->value, k * 3);
  }
  for (uint64_t k = 6; k <= 10'000; ++k) table.insert(k);
  EXPECT_EQ(table.capacity(), reserved);
  EXPECT_EQ(table.size(), 10'000u);
  table.reserve(100);  // never shrinks
  EXPECT_EQ(table.capacity(), reserved);
}

// A table grows at 1/2 load while the doubled table stays within kSmallTableBytes, at 3/4 after.
TEST(FlatTable, SmallTablesGrowAtHalfLoadLargeOnesAtThreeQuarters) {
  static_assert(sizeof(KvSlot) == 16);
  static_assert(FlatTable<KvSlot>::kSmallTableBytes == size_t{4} << 20);
  StateStore store;
  FlatTable<KvSlot> table(store.capture(), "t");
  for (uint64_t k = 1; k <= 512; ++k) table.insert(k);
  EXPECT_EQ(table.capacity(), 1024u);  // exactly half full
  table.insert(513);
  EXPECT_EQ(table.capacity(), 2048u);  // at 3/4 it would still be 1024
  // 2^17 slots of 16 bytes double to 4 MiB: still at 1/2. 2^18 double to 8 MiB: at 3/4.
  FlatTable<KvSlot> large(store.capture(), "large");
  large.reserve(65'536);
  EXPECT_EQ(large.capacity(), size_t{1} << 17);
  large.reserve(65'537);
  EXPECT_EQ(large.capacity(), size_t{1} << 18);
  large.reserve(196'608);  // 3/4 of 2^18
  EXPECT_EQ(large.capacity(), size_t{1} << 18);
  for (uint64_t k = 1; k <= 196'608; ++k) large.insert(k);
  EXPECT_EQ(large.capacity(), size_t{1} << 18);
  large.insert(196'609);
  EXPECT_EQ(large.capacity(), size_t{1} << 19);
}

TEST(FlatTable, EraseLeavesNoTombstonesSoAnEmptiedTableIsAllZero) {
  StateStore store;
  FlatTable<CollidingSlot> table(store.capture(), "t");
  for (uint64_t k = 1; k <= 10; ++k) table.insert(k);
  for (uint64_t k = 1; k <= 10; ++k) table.erase_at(static_cast<size_t>(table.find_index(k)));
  EXPECT_EQ(table.size(), 0u);
  for (size_t i = 0; i < table.capacity(); ++i) EXPECT_EQ(table.at(i).key, 0u) << i;
}

// allocate_prepared's block is zeroed and whole whether the background thread had it ready (a
// prepared block, taken) or not (fresh small pages), and can be released either way.
TEST(AllocatePrepared, BlocksAreZeroedWhetherPreparedInTimeOrNot) {
  for (size_t bytes : {size_t{3} << 20, size_t{5} << 20, size_t{1} << 10}) {
    for (int attempt = 0; attempt < 2; ++attempt) {
      SCOPED_TRACE(bytes);
      prepare_zeroed(bytes);
      if (attempt == 1) std::this_thread::sleep_for(std::chrono::milliseconds(200));
      std::byte* p = allocate_prepared(bytes);
      ASSERT_NE(p, nullptr);
      EXPECT_TRUE(std::all_of(p, p + bytes, [](std::byte b) { return b == std::byte{0}; }));
      std::memset(p, 0xab, bytes);
      release_zeroed_later(p, bytes);
    }
  }
}

// ---- HistoryState ----------------------------------------------------------------------------

using TestHistory = HistoryState<Entry, 3>;
using Model = std::map<uint64_t, std::vector<Entry>>;

void model_add(Model& m, uint64_t key, Entry e) {
  auto& v = m[key];
  auto at = std::upper_bound(v.begin(), v.end(), e.time,
                             [](int64_t t, const Entry& x) { return t < x.time; });
  v.insert(at, e);
}
void model_evict(Model& m, uint64_t key, int64_t cutoff) {
  auto it = m.find(key);
  if (it == m.end()) return;
  auto& v = it->second;
  v.erase(v.begin(),
          std::find_if(v.begin(), v.end(), [&](const Entry& e) { return e.time > cutoff; }));
  if (v.empty()) m.erase(it);
}

void expect_same(const TestHistory& h, const Model& m) {
  size_t entries = 0;
  for (const auto& [key, v] : m) {
    const auto got = h.get(key);
    ASSERT_EQ(got.size(), v.size()) << "key " << key;
    for (size_t i = 0; i < v.size(); ++i) {
      ASSERT_EQ(got[i].time, v[i].time) << "key " << key << " entry " << i;
      ASSERT_EQ(got[i].amount, v[i].amount) << "key " << key << " entry " << i;
    }
    entries += v.size();
  }
  EXPECT_EQ(h.keys(), m.size());
  EXPECT_EQ(h.entries(), entries);
}

TEST(HistoryState, RandomAddsEvictsAndQueriesMatchAModelAcrossInlineAndPoolRuns) {
  StateStore store;
  TestHistory h(store.capture(), "h");
  Model model;
  std::mt19937_64 rng(3);
  int64_t now = 1'000;
  for (int op = 0; op < 60'000; ++op) {
    // Bursty keys: a few get hundreds of entries (large runs), most a handful (inline).
    const uint64_t key = rng() % 10 == 0 ? 1 + rng() % 3 : 4 + rng() % 400;
    const int r = static_cast<int>(rng() % 100);
    if (r < 60) {
      now += static_cast<int64_t>(rng() % 5);
      const int64_t t = now - static_cast<int64_t>(rng() % 4 == 0 ? rng() % 50 : 0);
      const Entry e{t, static_cast<int64_t>(rng() % 1000)};
      if (rng() % 2 == 0) {
        h.add(key, e);
      } else {
        // The one-lookup path: a query through the found slot, then an add through it.
        const auto found = h.find(key);
        ASSERT_EQ(found.index < 0, model.find(key) == model.end()) << "op " << op;
        const WindowStats via_found = h.query(found, t - 100, t);
        const WindowStats via_key = h.query(key, t - 100, t);
        ASSERT_EQ(via_found.count, via_key.count) << "op " << op;
        ASSERT_TRUE(via_found.sum == via_key.sum) << "op " << op;
        h.add(found, e);
      }
      model_add(model, key, e);
    } else if (r < 90) {
      const int64_t cutoff = now - static_cast<int64_t>(rng() % 400);
      h.evict(key, cutoff);
      model_evict(model, key, cutoff);
    } else {
      const int64_t hi = now - static_cast<int64_t>(rng() % 100);
      const int64_t lo = hi - static_cast<int64_t>(rng() % 200);
      const WindowStats got = h.query(key, lo, hi);
      int64_t count = 0;
      Int128 sum = 0;
      if (auto it = model.find(key); it != model.end()) {
        for (const Entry& e : it->second) {
          if (e.time > lo && e.time <= hi) {
            ++count;
            sum += e.amount;
          }
        }
      }
      ASSERT_EQ(got.count, count) << "op " << op;
      ASSERT_TRUE(got.sum == sum) << "op " << op;
    }
    if (op % 1000 == 0) expect_same(h, model);
  }
  expect_same(h, model);
}

TEST(HistoryState, FreedRunsAreReusedSoTheSteadyStatePoolStopsGrowing) {
  StateStore store;
  TestHistory h(store.capture(), "h");
  // A sliding window over 50 keys of ~20 entries each: runs are allocated and freed forever.
  int64_t t = 0;
  size_t pool_after_warmup = 0;
  for (int round = 0; round < 400; ++round) {
    for (uint64_t key = 1; key <= 50; ++key) h.add(key, Entry{++t, 1});
    for (uint64_t key = 1; key <= 50; ++key) h.evict(key, t - 1'000);
    if (round == 100) pool_after_warmup = h.pool_units();
  }
  EXPECT_GT(pool_after_warmup, 0u);
  EXPECT_EQ(h.pool_units(), pool_after_warmup);
  // Everything evicted: no key, no entry.
  for (uint64_t key = 1; key <= 50; ++key) h.evict(key, t);
  EXPECT_EQ(h.keys(), 0u);
  EXPECT_EQ(h.entries(), 0u);
}

TEST(HistoryState, EqualTimesKeepInsertionOrder) {
  StateStore store;
  TestHistory h(store.capture(), "h");
  for (int64_t i = 0; i < 20; ++i) h.add(9, Entry{i % 2 == 0 ? 100 : 50, i});
  const auto v = h.get(9);
  ASSERT_EQ(v.size(), 20u);
  for (size_t i = 0; i < 10; ++i) EXPECT_EQ(v[i].amount, static_cast<int64_t>(2 * i + 1));
  for (size_t i = 0; i < 10; ++i) EXPECT_EQ(v[10 + i].amount, static_cast<int64_t>(2 * i));
}

// ---- MapState ----------------------------------------------------------------------------------

// put() by key and put() through a find() agree with a std::map, zero meaning "no entry", across
// growth and backward-shift erases.
TEST(MapState, PutsThroughFindAndByKeyMatchAStdMapAndZeroIsNoEntry) {
  StateStore store;
  MapState<int64_t> m(store.capture(), "m");
  std::map<std::pair<uint64_t, uint32_t>, int64_t> model;
  std::mt19937_64 rng(11);
  for (int op = 0; op < 100'000; ++op) {
    const uint64_t key = 1 + rng() % 3'000;
    const auto user = static_cast<uint32_t>(rng() % 3);
    const auto value = static_cast<int64_t>(rng() % 4) - 1;  // zero a quarter of the time
    const auto it = model.find({key, user});
    const int64_t expected = it == model.end() ? 0 : it->second;
    if (rng() % 2 == 0) {
      ASSERT_EQ(m.get(key, user), expected) << "op " << op;
      m.put(key, user, value);
    } else {
      const auto found = m.find(key, user);
      ASSERT_EQ(found.value, expected) << "op " << op;
      ASSERT_EQ(found.index >= 0, it != model.end()) << "op " << op;
      m.put(found, found.value + value);
      if (found.value + value != 0) {
        model[{key, user}] = found.value + value;
      } else {
        model.erase({key, user});
      }
      continue;
    }
    if (value != 0) {
      model[{key, user}] = value;
    } else {
      model.erase({key, user});
    }
  }
  ASSERT_EQ(m.size(), model.size());
  for (const auto& [k, v] : model) EXPECT_EQ(m.get(k.first, k.second), v);
  size_t seen = 0;
  m.for_each([&](uint64_t key, uint32_t user, int64_t value) {
    ++seen;
    EXPECT_NE(value, 0);
    EXPECT_EQ(model.at({key, user}), value);
  });
  EXPECT_EQ(seen, model.size());
}

// ---- TimerQueue --------------------------------------------------------------------------------

// Reserving unwraps a wrapped FIFO into the bigger ring without losing or reordering timers.
TEST(TimerQueue, ReserveKeepsAWrappedQueueInOrder) {
  StateStore store;
  TimerQueue q(store.capture(), "q");
  for (int64_t t = 1; t <= 12; ++t) q.add(t, static_cast<uint64_t>(t));
  std::vector<int64_t> fired;
  q.advance(6, [&](uint64_t, int64_t t) { fired.push_back(t); });
  for (int64_t t = 13; t <= 20; ++t) q.add(t, static_cast<uint64_t>(t));  // wraps the ring
  q.add(9, 999);  // out of order: the heap
  q.reserve(10'000, 1'000);
  for (int64_t t = 21; t <= 5'000; ++t) q.add(t, static_cast<uint64_t>(t));
  q.advance(1'000'000, [&](uint64_t, int64_t t) { fired.push_back(t); });
  ASSERT_EQ(fired.size(), 5'001u);
  EXPECT_TRUE(std::is_sorted(fired.begin(), fired.end()));
  EXPECT_EQ(q.size(), 0u);
}

TEST(TimerQueue, FiresEveryTimerOnceInTimeOrderWhetherAddedInOrderOrNot) {
  StateStore store;
  TimerQueue q(store.capture(), "q");
  std::mt19937_64 rng(4);
  std::multiset<std::pair<int64_t, uint64_t>> model;
  int64_t now = 0, clock = 0;
  for (int op = 0; op < 50'000; ++op) {
    if (rng() % 3 != 0) {
      clock += static_cast<int64_t>(rng() % 10);
      const int64_t t = clock - static_cast<int64_t>(rng() % 5 == 0 ? rng() % 100 : 0);
      const uint64_t key = 1 + rng() % 1000;
      q.add(t, key);
      model.insert({t, key});
    } else {
      now += static_cast<int64_t>(rng() % 30);
      std::vector<std::pair<int64_t, uint64_t>> fired;
      q.advance(now, [&](uint64_t key, int64_t time) { fired.emplace_back(time, key); });
      std::vector<std::pair<int64_t, uint64_t>> want;
      while (!model.empty() && model.begin()->first <= now) {
        want.push_back(*model.begin());
        model.erase(model.begin());
      }
      // Repeats of the last timer added are dropped: compare the distinct timers.
      want.erase(std::unique(want.begin(), want.end()), want.end());
      std::vector<std::pair<int64_t, uint64_t>> got_sorted = fired;
      std::sort(got_sorted.begin(), got_sorted.end());
      got_sorted.erase(std::unique(got_sorted.begin(), got_sorted.end()), got_sorted.end());
      ASSERT_EQ(got_sorted, want) << "op " << op;
      for (size_t i = 1; i < fired.size(); ++i) ASSERT_LE(fired[i - 1].first, fired[i].first);
    }
  }
}

// A timer that fire() registers is part of the same advance if it is due: in time order, from
// the heap as well as the FIFO (advance runs on the FIFO alone only while the heap is empty).
TEST(TimerQueue, TimersAddedWhileFiringFireInTheSameAdvanceInTimeOrder) {
  StateStore store;
  TimerQueue q(store.capture(), "q");
  q.add(10, 1);
  q.add(20, 2);
  q.add(30, 3);
  std::vector<std::pair<int64_t, uint64_t>> fired;
  q.advance(25, [&](uint64_t key, int64_t time) {
    fired.emplace_back(time, key);
    if (key == 1) {
      q.add(15, 4);  // before the FIFO's back (30): into the heap, due now
      q.add(26, 5);  // due later
    }
    if (key == 4) q.add(12, 6);  // already past: fires next
  });
  const std::vector<std::pair<int64_t, uint64_t>> want = {{10, 1}, {15, 4}, {12, 6}, {20, 2}};
  EXPECT_EQ(fired, want);
  EXPECT_EQ(q.size(), 2u);
  fired.clear();
  q.advance(30, [&](uint64_t key, int64_t time) { fired.emplace_back(time, key); });
  const std::vector<std::pair<int64_t, uint64_t>> rest = {{26, 5}, {30, 3}};
  EXPECT_EQ(fired, rest);
}

// Cleanup timers, mixed with exact ones: each fires once, never before its time, and no later
// than the latest time registered before it (it queues with that timer); exact timers still fire
// exactly when the watermark reaches them; what fire() sees is in time order; and cleanup timers
// never touch the heap.
TEST(TimerQueue, ACleanupTimerFiresOnceNoEarlierThanItsTimeAndNoLaterThanTheLatestBeforeIt) {
  StateStore store;
  TimerQueue q(store.capture(), "q");
  std::mt19937_64 rng(5);
  struct Pending {
    int64_t time;
    int64_t deadline;  // must have fired once the watermark reaches this
    bool exact;
  };
  std::map<uint64_t, Pending> pending;  // by key; every timer has a key of its own
  uint64_t next_key = 1;
  int64_t clock = 0, now = 0, latest = INT64_MIN;
  int64_t cleanup_fired_late = 0;
  for (int op = 0; op < 50'000; ++op) {
    if (rng() % 3 != 0) {
      clock += static_cast<int64_t>(rng() % 10);
      const int64_t t = clock - static_cast<int64_t>(rng() % 4 == 0 ? rng() % 100 : 0);
      const bool exact = rng() % 8 == 0;
      const uint64_t key = next_key++;
      if (exact) {
        q.add(t, key);
      } else {
        q.add_cleanup(t, key);
      }
      pending[key] = {t, exact ? t : std::max(t, latest), exact};
      latest = std::max(latest, t);
    } else {
      now += static_cast<int64_t>(rng() % 30);
      int64_t last_seen = INT64_MIN;
      q.advance(now, [&](uint64_t key, int64_t time) {
        auto it = pending.find(key);
        ASSERT_NE(it, pending.end()) << "key " << key << " fired twice or was never added";
        ASSERT_GE(time, last_seen) << "op " << op;
        last_seen = time;
        ASSERT_LE(time, now);
        ASSERT_GE(time, it->second.time) << "key " << key << " fired early";
        if (it->second.exact) {
          ASSERT_EQ(time, it->second.time);
        }
        cleanup_fired_late += !it->second.exact && time > it->second.time;
        pending.erase(it);
      });
      for (const auto& [key, p] : pending) {
        ASSERT_GT(p.deadline, now) << "key " << key << " (time " << p.time << ") has not fired";
      }
    }
  }
  EXPECT_GT(cleanup_fired_late, 0);  // the out-of-order ones queued behind later ones
  size_t exact_pending = 0;
  for (const auto& [key, p] : pending) exact_pending += p.exact;
  EXPECT_LE(q.heap_size(), exact_pending);  // only exact timers go to the heap
  EXPECT_EQ(q.size(), pending.size());
}

TEST(TimerQueue, CleanupTimersOutOfOrderStayOutOfTheHeap) {
  StateStore store;
  TimerQueue q(store.capture(), "q");
  q.add_cleanup(100, 1);
  q.add_cleanup(50, 2);   // queues behind 100, with its time
  q.add_cleanup(100, 2);  // the same timer again: dropped
  q.add_cleanup(120, 3);
  EXPECT_EQ(q.heap_size(), 0u);
  EXPECT_EQ(q.size(), 3u);
  std::vector<std::pair<int64_t, uint64_t>> fired;
  q.advance(99, [&](uint64_t key, int64_t time) { fired.emplace_back(time, key); });
  EXPECT_TRUE(fired.empty());
  q.advance(100, [&](uint64_t key, int64_t time) { fired.emplace_back(time, key); });
  EXPECT_EQ(fired, (std::vector<std::pair<int64_t, uint64_t>>{{100, 1}, {100, 2}}));
  // An empty FIFO clamps nothing: 10 fires at 10.
  q.advance(200, [&](uint64_t, int64_t) {});
  q.add_cleanup(10, 4);
  fired.clear();
  q.advance(10, [&](uint64_t key, int64_t time) { fired.emplace_back(time, key); });
  EXPECT_EQ(fired, (std::vector<std::pair<int64_t, uint64_t>>{{10, 4}}));
}

// ---- Capture -----------------------------------------------------------------------------------

// An image of the whole store, taken in one go.
std::vector<std::byte> capture_image(StateStore& store) {
  StateCapture& c = store.capture();
  std::vector<std::byte> image(c.image_bytes());
  c.begin(image.data(), image.size());
  c.finish();
  c.take();
  return image;
}

// A small store with one of everything.
struct TestState {
  explicit TestState(size_t chunk) : store(StateStore::Options{.chunk_bytes = chunk}) {}
  StateStore store;
  FlatTable<KvSlot> table{store.capture(), "table"};
  HistoryState<Entry, 3> history{store.capture(), "history"};
  TimerQueue timers{store.capture(), "timers"};

  void mutate(std::mt19937_64& rng, int64_t& now, uint64_t key_range) {
    const uint64_t key = 1 + rng() % key_range;
    switch (rng() % 6) {
      case 0:
      case 1:
        table.mut(table.insert(key).first).value = rng();
        break;
      case 2: {
        const int64_t i = table.find_index(key);
        if (i >= 0) table.erase_at(static_cast<size_t>(i));
        break;
      }
      case 3:
        now += 3;
        history.add(key, Entry{now - static_cast<int64_t>(rng() % 7), static_cast<int64_t>(key)});
        timers.add(now + 100 - static_cast<int64_t>(rng() % 7), key);
        break;
      case 4:
        history.evict(key, now - 200);
        break;
      default:
        timers.advance(now - 50, [&](uint64_t k, int64_t) { history.evict(k, now - 150); });
        break;
    }
  }

  std::vector<std::byte> full_image() { return capture_image(store); }
};

TEST(StateCapture, AnImageTakenOverManyWritesEqualsTheStateAtBegin) {
  for (size_t chunk : {64u, 4096u}) {
    SCOPED_TRACE(chunk);
    TestState s(chunk);
    std::mt19937_64 rng(5);
    int64_t now = 0;
    for (int i = 0; i < 20'000; ++i) s.mutate(rng, now, 2'000);
    for (int round = 0; round < 10; ++round) {
      const std::vector<std::byte> want = s.full_image();
      StateCapture& c = s.store.capture();
      std::vector<std::byte> image(c.image_bytes());
      c.begin(image.data(), image.size());
      // Keep writing while the copy trickles: copy-on-write must preserve the state at begin.
      int64_t copies_before = c.cow_copies();
      while (c.active()) {
        for (int k = 0; k < 50; ++k) s.mutate(rng, now, 500);  // no growth: keys already present
        c.copy_some(chunk);
      }
      ASSERT_TRUE(c.complete());
      const auto [p, n] = c.take();
      ASSERT_EQ(n, want.size());
      EXPECT_TRUE(std::equal(want.begin(), want.end(), p)) << "round " << round;
      EXPECT_GT(c.cow_copies(), copies_before);
    }
  }
}

TEST(StateCapture, GrowthDuringACaptureCopiesTheGrowingArrayFirstAndKeepsTheOldState) {
  TestState s(256);
  std::mt19937_64 rng(6);
  int64_t now = 0;
  for (int i = 0; i < 2'000; ++i) s.mutate(rng, now, 100);
  const std::vector<std::byte> want = s.full_image();
  StateCapture& c = s.store.capture();
  std::vector<std::byte> image(c.image_bytes());
  c.begin(image.data(), image.size());
  c.copy_some(256);
  // New keys grow the table: its part of the image must be complete before its old array goes;
  // the rest of the capture goes on, and writes elsewhere still copy first.
  for (uint64_t k = 1'000; k < 5'000; ++k) s.table.insert(k);
  for (int i = 0; i < 500; ++i) {
    now += 3;
    s.history.add(1 + static_cast<uint64_t>(i) % 50, Entry{now, 1});
    s.timers.add(now + 1'000, 1 + static_cast<uint64_t>(i) % 50);
  }
  c.finish();
  ASSERT_TRUE(c.complete());
  const auto [p, n] = c.take();
  ASSERT_EQ(n, want.size());
  EXPECT_TRUE(std::equal(want.begin(), want.end(), p));
}

TEST(StateCapture, ARestoredStoreEqualsTheOriginalAndEvolvesIdentically) {
  TestState a(4096);
  std::mt19937_64 rng(7);
  int64_t now = 0;
  for (int i = 0; i < 30'000; ++i) a.mutate(rng, now, 3'000);
  const std::vector<std::byte> image = a.full_image();

  TestState b(4096);
  auto regions = b.store.capture().parse_directory(image);
  ASSERT_TRUE(regions.ok()) << regions.status();
  RegionReader in(image, *regions);
  ASSERT_TRUE(b.table.restore(in).ok());
  ASSERT_TRUE(b.history.restore(in).ok());
  ASSERT_TRUE(b.timers.restore(in).ok());
  EXPECT_TRUE(in.done());
  EXPECT_EQ(b.full_image(), image);

  // Same operations from here on: same bytes.
  std::mt19937_64 ra(8), rb(8);
  int64_t na = now, nb = now;
  for (int i = 0; i < 10'000; ++i) {
    a.mutate(ra, na, 5'000);
    b.mutate(rb, nb, 5'000);
  }
  EXPECT_EQ(a.full_image(), b.full_image());
}

TEST(StateCapture, ADamagedDirectoryOrRegionIsRejectedNotTrusted) {
  TestState a(4096);
  std::mt19937_64 rng(9);
  int64_t now = 0;
  for (int i = 0; i < 5'000; ++i) a.mutate(rng, now, 300);
  for (int64_t t = 0; t < 10; ++t) a.history.add(7, Entry{now + t, 1});  // a run in the pool
  const std::vector<std::byte> image = a.full_image();
  {
    TestState b(4096);
    std::vector<std::byte> cut(image.begin(), image.end() - 64);
    EXPECT_FALSE(b.store.capture().parse_directory(cut).ok());
  }
  {
    // A history slot pointing past the pool.
    TestState b(4096);
    auto regions = b.store.capture().parse_directory(image);
    ASSERT_TRUE(regions.ok());
    std::vector<std::byte> bad = image;
    const auto& slots = (*regions)[3];  // history.slots (after table.slots, .old_slots, .meta)
    bool damaged = false;
    for (uint64_t off = slots.offset; off < slots.offset + slots.bytes && !damaged; off += 64) {
      uint32_t count;
      std::memcpy(&count, bad.data() + off + 8, 4);
      if (count > 3) {
        const uint32_t run = 0x7fffffff;
        std::memcpy(bad.data() + off + 12, &run, 4);
        damaged = true;
      }
    }
    ASSERT_TRUE(damaged);
    RegionReader in(bad, *regions);
    ASSERT_TRUE(b.table.restore(in).ok());
    EXPECT_FALSE(b.history.restore(in).ok());
  }
}

// The image of a store holding one table with these keys (each key's value is key + 1).
template <typename Slot>
std::vector<std::byte> table_image(const std::vector<uint64_t>& keys) {
  StateStore store;
  FlatTable<Slot> table(store.capture(), "t");
  for (uint64_t k : keys) table.mut(table.insert(k).first).value = k + 1;
  return capture_image(store);
}

// Restores `into`, the only table of `store`, from an image made by table_image.
template <typename Slot>
absl::Status restore_table(const std::vector<std::byte>& image, FlatTable<Slot>& into,
                           StateStore& store) {
  auto regions = store.capture().parse_directory(image);
  if (!regions.ok()) return regions.status();
  RegionReader in(image, *regions);
  return into.restore(in);
}

// A table that is growing: both arrays and the move's cursor are state. Keys 1..n, n the first
// count at which the table grows (incrementally: threshold 0), then `extra` more.
struct GrowingTable {
  explicit GrowingTable(size_t chunk = 1024) : store(StateStore::Options{.chunk_bytes = chunk}) {}
  StateStore store;
  FlatTable<CollidingSlot> table{store.capture(), "t", 0};
  uint64_t next = 1;
  void add() {
    const uint64_t k = next++;
    table.mut(table.insert(k).first).value = k + 1;
  }
  void grow_to(size_t capacity, int extra) {
    while (table.capacity() < capacity || !table.growing()) add();
    for (int i = 0; i < extra; ++i) add();
  }
  // Inserts and erases, the same for the same seed.
  void mutate(std::mt19937_64& rng, int ops) {
    for (int i = 0; i < ops; ++i) {
      if (rng() % 4 == 0) {
        const int64_t at = table.find_index(1 + rng() % (next - 1));
        if (at >= 0) table.erase_at(static_cast<size_t>(at));
      } else {
        add();
      }
    }
  }
};

TEST(StateCapture, AnImageTakenWhileATableGrowsRestoresAndEvolvesIdentically) {
  GrowingTable a;
  a.grow_to(512, 3);
  ASSERT_TRUE(a.table.growing());
  const std::vector<std::byte> image = capture_image(a.store);

  GrowingTable b;
  ASSERT_TRUE(restore_table(image, b.table, b.store).ok());
  b.next = a.next;
  ASSERT_TRUE(b.table.growing());
  EXPECT_EQ(capture_image(b.store), image);
  for (uint64_t k = 1; k < a.next; ++k) {
    const CollidingSlot* s = b.table.find(k);
    ASSERT_NE(s, nullptr) << k;
    EXPECT_EQ(s->value, k + 1);
  }
  // Same operations: the same bytes, while the move goes on and after it ends.
  std::mt19937_64 ra(11), rb(11);
  for (int round = 0; round < 20; ++round) {
    a.mutate(ra, 5);
    b.mutate(rb, 5);
    ASSERT_EQ(capture_image(a.store), capture_image(b.store)) << "round " << round;
  }
  EXPECT_FALSE(a.table.growing());
}

TEST(StateCapture, AnImageTakenWhileATableGrowsEqualsTheStateAtBeginDespiteTheMove) {
  GrowingTable s(64);
  s.grow_to(512, 1);
  const std::vector<std::byte> want = capture_image(s.store);
  StateCapture& c = s.store.capture();
  std::vector<std::byte> image(c.image_bytes());
  c.begin(image.data(), image.size());
  std::mt19937_64 rng(12);
  // Every insert moves old keys: writes to both arrays that must copy their chunks first.
  while (c.active()) {
    s.mutate(rng, 3);
    c.copy_some(64);
  }
  EXPECT_FALSE(s.table.growing());
  ASSERT_TRUE(c.complete());
  const auto [p, n] = c.take();
  ASSERT_EQ(n, want.size());
  EXPECT_TRUE(std::equal(want.begin(), want.end(), p));
}

TEST(StateCapture, ADamagedGrowthCursorOrAKeyBehindItIsRefused) {
  GrowingTable a;
  a.grow_to(512, 3);
  const std::vector<std::byte> image = capture_image(a.store);
  auto regions = a.store.capture().parse_directory(image);
  ASSERT_TRUE(regions.ok());
  const auto& old = (*regions)[1];   // t.old_slots
  const auto& meta = (*regions)[2];  // t.meta: count, cursor, left
  ASSERT_EQ(old.bytes, 256 * sizeof(CollidingSlot));
  uint64_t cursor;
  std::memcpy(&cursor, image.data() + meta.offset + 8, 8);
  {
    std::vector<std::byte> bad = image;
    const uint64_t out_of_range = 256;
    std::memcpy(bad.data() + meta.offset + 8, &out_of_range, 8);
    GrowingTable b;
    const absl::Status s = restore_table(bad, b.table, b.store);
    EXPECT_TRUE(absl::IsDataLoss(s)) << s;
    EXPECT_NE(s.message().find("growth cursor is out of range"), std::string_view::npos) << s;
  }
  {
    // A key in the slot the move has just passed: a lookup would never reach it.
    std::vector<std::byte> bad = image;
    const uint64_t key = 100'000;
    std::memcpy(bad.data() + old.offset + ((cursor + 255) % 256) * sizeof(CollidingSlot), &key, 8);
    GrowingTable b;
    const absl::Status s = restore_table(bad, b.table, b.store);
    EXPECT_TRUE(absl::IsDataLoss(s)) << s;
    EXPECT_NE(s.message().find("behind the growth cursor"), std::string_view::npos) << s;
  }
}

// KvSlot's layout under the mixer state_hash replaced: what an older build's snapshot holds.
struct OldHashSlot {
  using Key = uint64_t;
  uint64_t key = 0;
  uint64_t value = 0;
  static uint64_t hash(uint64_t x) noexcept {
    x ^= x >> 32;
    x *= 0xd6e8feb86659fd93ull;
    x ^= x >> 32;
    x *= 0xd6e8feb86659fd93ull;
    x ^= x >> 32;
    return x;
  }
};

// Keys 1..n, which fill whole clusters over CollidingSlot's 16 homes, and eight keys homed at
// the last slot, which wrap around to the front.
std::vector<uint64_t> clustered_keys(uint64_t n) {
  std::vector<uint64_t> keys;
  for (uint64_t k = 1; k <= n; ++k) keys.push_back(k);
  for (uint64_t k = 0xf; k < 0xf + 16 * 8; k += 16) keys.push_back(k + 1000 * 16);  // home 15
  return keys;
}

TEST(FlatTable, ARestoredTableFindsEveryKeyIncludingClustersThatWrapAround) {
  const std::vector<uint64_t> keys = clustered_keys(40);
  const std::vector<std::byte> image = table_image<CollidingSlot>(keys);
  StateStore store;
  FlatTable<CollidingSlot> table(store.capture(), "t");
  ASSERT_TRUE(restore_table(image, table, store).ok());
  ASSERT_EQ(table.size(), keys.size());
  for (uint64_t k : keys) {
    const CollidingSlot* s = table.find(k);
    ASSERT_NE(s, nullptr) << k;
    EXPECT_EQ(s->value, k + 1);
  }
}

// Clusters long enough to pass the distance bytes' limit, and wrapping around the end. What
// erase needs to know of every slot is rebuilt on restore, not taken from the image.
template <typename Slot>
void check_restored_table_erases_and_inserts() {
  std::vector<uint64_t> keys = clustered_keys(600);
  const std::vector<std::byte> image = table_image<Slot>(keys);
  StateStore store;
  FlatTable<Slot> table(store.capture(), "t");
  ASSERT_TRUE(restore_table(image, table, store).ok());
  std::map<uint64_t, uint64_t> model;
  for (uint64_t k : keys) model[k] = k + 1;
  std::mt19937_64 rng(4);
  std::shuffle(keys.begin(), keys.end(), rng);
  for (size_t n = 0; n < keys.size(); ++n) {
    table.erase_at(static_cast<size_t>(table.find_index(keys[n])));
    model.erase(keys[n]);
    if (n % 2 == 0) {  // and some new keys into the gaps
      const uint64_t k = 5'000 + n;
      table.mut(table.insert(k).first).value = k + 1;
      model[k] = k + 1;
    }
    if (n % 23 != 0) continue;
    ASSERT_EQ(table.size(), model.size());
    for (const auto& [k, v] : model) {
      const Slot* s = table.find(k);
      ASSERT_NE(s, nullptr) << "key " << k << " after " << n + 1 << " erases";
      ASSERT_EQ(s->value, v);
    }
  }
}

TEST(FlatTable, ARestoredTableErasesAndInsertsLikeTheTableItWasTakenFrom) {
  check_restored_table_erases_and_inserts<CollidingSlot>();
  check_restored_table_erases_and_inserts<WithDistanceBytes<CollidingSlot>>();
}

TEST(FlatTable, ATableLaidOutByAnotherHashIsRefusedNotRestoredWithUnreachableKeys) {
  std::vector<uint64_t> keys;
  for (uint64_t k = 1; k <= 3'000; ++k) keys.push_back(k * 977);
  const std::vector<std::byte> image = table_image<OldHashSlot>(keys);
  StateStore store;
  FlatTable<KvSlot> table(store.capture(), "t");
  const absl::Status s = restore_table(image, table, store);
  EXPECT_TRUE(absl::IsDataLoss(s)) << s;
  EXPECT_NE(s.message().find("not where a lookup finds it"), std::string_view::npos) << s;
  EXPECT_NE(s.message().find("t.slots"), std::string_view::npos) << s;
}

TEST(FlatTable, ASlotWhoseKeyWasDamagedIsRefused) {
  std::vector<uint64_t> keys;
  for (uint64_t k = 1; k <= 500; ++k) keys.push_back(k);
  std::vector<std::byte> image = table_image<KvSlot>(keys);
  StateStore store;
  FlatTable<KvSlot> table(store.capture(), "t");
  auto regions = store.capture().parse_directory(image);
  ASSERT_TRUE(regions.ok());
  // Flip a high bit of the first occupied slot's key: the key now belongs somewhere else.
  const auto& slots = (*regions)[0];
  bool damaged = false;
  for (uint64_t off = slots.offset; off < slots.offset + slots.bytes; off += sizeof(KvSlot)) {
    uint64_t key;
    std::memcpy(&key, image.data() + off, 8);
    if (key != 0) {
      key ^= uint64_t{1} << 40;
      std::memcpy(image.data() + off, &key, 8);
      damaged = true;
      break;
    }
  }
  ASSERT_TRUE(damaged);
  const absl::Status s = restore_table(image, table, store);
  EXPECT_TRUE(absl::IsDataLoss(s)) << s;
}

}  // namespace
}  // namespace sluice
