// The stats file: a running daemon's counters and latency histograms in a memory-mapped file in
// its data directory, read by `sluice stat` and the metrics endpoint without locks and without
// disturbing the threads that count.
//
// Layout (little-endian; one version of it, checked by magic and version):
//   the first pages: StatsHeader (magic, version, pid, start time, heartbeat, daemon state, the
//           block directory: for each block its name, kind, field count and offsets)
//   then, page-aligned, each block's data: a counter block is an array of Counters (8 bytes
//   each) followed by its field names (kFieldNameSize bytes each); a histogram block is one
//   SharedHistogram.
// Every counter and histogram has exactly one writing thread (the component that owns it);
// readers see recent values. A component's counter struct is a plain struct of Counters with a
// matching list of field names (see place()).
//
// Thread safety: StatsFile::create on one thread before the writers start; each block is then
// written by its owner. StatsView is read-only and may be used from any thread (one instance
// per thread).
#ifndef SLUICE_IO_STATS_FILE_H_
#define SLUICE_IO_STATS_FILE_H_

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <new>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "core/counter.h"
#include "core/shared_histogram.h"

namespace sluice {

inline constexpr char kStatsMagic[8] = {'S', 'L', 'U', 'I', 'C', 'E', 'S', 'T'};
inline constexpr uint32_t kStatsVersion = 1;
inline constexpr size_t kStatsMaxBlocks = 1024;  // 5 + 2 per shard: 256 shards fit
inline constexpr size_t kStatsNameSize = 32;       // block names, NUL-padded
inline constexpr size_t kStatsFieldNameSize = 48;  // counter names, NUL-padded

enum class StatsBlockKind : uint32_t { kCounters = 1, kHistogram = 2 };

// What the daemon is doing, for `sluice stat`.
enum class DaemonState : int64_t { kStarting = 0, kRecovering = 1, kRunning = 2, kStopping = 3,
                                   kStopped = 4, kFailed = 5 };
std::string_view daemon_state_name(DaemonState state);

struct StatsBlockEntry {
  char name[kStatsNameSize];
  StatsBlockKind kind;
  uint32_t fields;     // counters: number of Counters; histogram: 0
  uint64_t offset;     // of the data
  uint64_t bytes;      // of the data
  uint64_t names_offset;  // counters: of the field names
};

struct StatsHeader {
  char magic[8];
  uint32_t version;
  uint32_t block_count;
  int64_t pid;
  int64_t start_time_ns;  // CLOCK_REALTIME
  Counter heartbeat_ns;   // CLOCK_REALTIME, refreshed by the daemon's main thread
  Counter state;          // DaemonState
  StatsBlockEntry blocks[kStatsMaxBlocks];
};

// Declares the blocks before the file is made.
struct StatsLayout {
  struct CounterBlock {
    std::string name;
    std::vector<std::string> fields;
  };
  std::vector<CounterBlock> counter_blocks;
  std::vector<std::string> histograms;

  // Returns the block's index among counter blocks.
  size_t add_counters(std::string name, std::vector<std::string> fields) {
    counter_blocks.push_back({std::move(name), std::move(fields)});
    return counter_blocks.size() - 1;
  }
  template <typename T>
  size_t add_counters(std::string name) {
    return add_counters(std::move(name), {T::kFieldNames.begin(), T::kFieldNames.end()});
  }
  size_t add_histogram(std::string name) {
    histograms.push_back(std::move(name));
    return histograms.size() - 1;
  }
};

class StatsFile {
 public:
  // Creates (or replaces) the file at `path`, sized for the layout and zero-filled, maps it
  // and writes the header. Errors name the file.
  static absl::StatusOr<std::unique_ptr<StatsFile>> create(const std::string& path,
                                                           const StatsLayout& layout);
  ~StatsFile();
  StatsFile(const StatsFile&) = delete;
  StatsFile& operator=(const StatsFile&) = delete;

  StatsHeader& header() noexcept { return *header_; }
  std::span<Counter> counters(size_t block) noexcept { return counter_blocks_[block]; }
  SharedHistogram& histogram(size_t index) noexcept { return *histograms_[index]; }

  // A component's counter struct, placed over a counter block. T is a standard-layout struct
  // of Counters only, with `static constexpr std::array<std::string_view, N> kFieldNames`.
  // REQUIRES: the block was declared with T's field names.
  template <typename T>
  T* place(size_t block) noexcept {
    static_assert(sizeof(T) == T::kFieldNames.size() * sizeof(Counter),
                  "a counter struct holds exactly its named Counters");
    return new (counters(block).data()) T();
  }

  void set_state(DaemonState s) noexcept { header_->state.set(static_cast<int64_t>(s)); }
  void heartbeat() noexcept;

  const std::string& path() const noexcept { return path_; }

 private:
  StatsFile() = default;
  std::string path_;
  void* base_ = nullptr;
  size_t size_ = 0;
  StatsHeader* header_ = nullptr;
  std::vector<std::span<Counter>> counter_blocks_;
  std::vector<SharedHistogram*> histograms_;
};

// A read-only view of a stats file (another process's, or this one's).
class StatsView {
 public:
  struct Block {
    std::string name;
    StatsBlockKind kind;
    std::vector<std::string> fields;    // counters
    std::span<const Counter> values;    // counters
    const SharedHistogram* histogram = nullptr;
  };

  // Errors: NotFound (no daemon ever ran here), DataLoss (not a stats file, or a version this
  // build cannot read), naming the file.
  static absl::StatusOr<std::unique_ptr<StatsView>> open(const std::string& path);
  ~StatsView();
  StatsView(const StatsView&) = delete;
  StatsView& operator=(const StatsView&) = delete;

  const std::vector<Block>& blocks() const noexcept { return blocks_; }
  const Block* find(std::string_view name) const noexcept;
  // The value of counter `field` of block `block`, or -1 if there is no such counter.
  int64_t value(std::string_view block, std::string_view field) const noexcept;

  int64_t pid() const noexcept { return header_->pid; }
  int64_t start_time_ns() const noexcept { return header_->start_time_ns; }
  int64_t heartbeat_ns() const noexcept { return header_->heartbeat_ns.get(); }
  DaemonState state() const noexcept { return static_cast<DaemonState>(header_->state.get()); }
  // The process that wrote the file still exists (kill(pid, 0)).
  bool writer_alive() const noexcept;
  const std::string& path() const noexcept { return path_; }

 private:
  StatsView() = default;
  std::string path_;
  const void* base_ = nullptr;
  size_t size_ = 0;
  const StatsHeader* header_ = nullptr;
  std::vector<Block> blocks_;
};

// Prometheus text exposition (version 0.0.4) of everything in the view: every counter as
// `sluice_<block>_<field>`, every histogram as a summary with quantiles 0.5, 0.9, 0.99, 0.999,
// 0.9999 and its _count, in seconds (Prometheus's base unit).
std::string prometheus_text(const StatsView& view);

}  // namespace sluice

#endif  // SLUICE_IO_STATS_FILE_H_
