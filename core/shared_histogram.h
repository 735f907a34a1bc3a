// SharedHistogram: a latency histogram that one thread records into and other threads (or
// another process, through the mapped stats file) read without locks.
//
// The layout is core/histogram.h's flat log-linear counts over a fixed range (0 to 100 s, 3
// significant digits), each count a single-writer Counter, so recording is one index
// computation and one plain store, as cheap as Histogram::record. A reader copies the counts
// into a Histogram (copy_to) and asks it for percentiles; while the owner keeps recording, the
// copy is some recent state, off by the few values recorded during the copy (fine for
// monitoring; exact figures come from `sluice load` and the benchmarks).
//
// A plain standard-layout object with no pointers: it can be placed in mapped memory.
//
// Thread safety: record from the owning thread only; copy_to from any thread.
#ifndef SLUICE_CORE_SHARED_HISTOGRAM_H_
#define SLUICE_CORE_SHARED_HISTOGRAM_H_

#include <cstddef>
#include <cstdint>

#include "core/counter.h"
#include "core/histogram.h"

namespace sluice {

class SharedHistogram {
 public:
  static constexpr int64_t kHighest = 100'000'000'000;  // 100 s in ns
  static constexpr size_t kLength = Histogram::counts_length(kHighest);

  void record(int64_t value) noexcept {
    if (value > kHighest) {
      value = kHighest;
      saturated_.add();
    }
    if (value < 0) value = 0;
    counts_[static_cast<size_t>(Histogram::index_of(value))].add();
    total_.add();
    if (value > max_.get()) max_.set(value);
  }

  int64_t total_count() const noexcept { return total_.get(); }
  int64_t max() const noexcept { return max_.get(); }

  // Adds the current counts to *out. REQUIRES: out's range is kHighest.
  // Each counter is recorded at its bucket's highest value, as Histogram reports percentiles,
  // except the top bucket's, which is recorded at the exact maximum.
  void copy_to(Histogram* out) const noexcept {
    const int64_t max = max_.get();
    const int64_t max_index = Histogram::index_of(max);
    for (size_t i = 0; i < kLength; ++i) {
      const int64_t c = counts_[i].get();
      if (c == 0) continue;
      const auto index = static_cast<int64_t>(i);
      out->record(index == max_index
                      ? max
                      : Histogram::highest_equivalent(Histogram::value_from_index(index)),
                  c);
    }
  }

 private:
  Counter total_;
  Counter saturated_;
  Counter max_;
  Counter counts_[kLength];
};

}  // namespace sluice

#endif  // SLUICE_CORE_SHARED_HISTOGRAM_H_
