#include "pipeline/replay.h"

#include <algorithm>
#include <charconv>
#include <cstdio>
#include <functional>
#include <iterator>
#include <memory>
#include <vector>

#include "absl/strings/str_cat.h"
#include "core/clock.h"
#include "io/io_error.h"
#include "pipeline/keyed_processors.h"
#include "pipeline/recovery.h"

namespace sluice {
namespace {

// Appends decisions to a CSV file through a large buffer, formatting with to_chars.
class CsvWriter {
 public:
  absl::Status open(const std::string& path) {
    path_ = path;
    file_ = std::fopen(path.c_str(), "w");
    if (file_ == nullptr) return io_error(errno, "open decisions file", path);
    buffer_.reserve(kFlushAt + 256);
    buffer_.append(kDecisionsCsvHeader);
    buffer_.push_back('\n');
    return absl::OkStatus();
  }

  void add(const DecisionRecord& d) {
    append_number(d.seq);
    buffer_.push_back(',');
    buffer_.push_back(d.type);
    buffer_.push_back(',');
    append_number(d.account_id);
    buffer_.push_back(',');
    append_number(d.client_id);
    buffer_.push_back(',');
    append_number(d.client_seq);
    buffer_.push_back(',');
    const std::string_view verdict = wire::verdict_name(d.verdict);
    buffer_.append(verdict.data(), verdict.size());
    buffer_.push_back(',');
    append_number(d.reason);
    buffer_.push_back(',');
    append_number(d.flags);
    buffer_.push_back('\n');
    if (buffer_.size() >= kFlushAt) flush_buffer();
  }

  absl::Status close() {
    if (file_ == nullptr) return absl::OkStatus();
    flush_buffer();
    const bool failed = error_ || std::fclose(file_) != 0;
    file_ = nullptr;
    if (failed) return io_error(errno != 0 ? errno : EIO, "write decisions file", path_);
    return absl::OkStatus();
  }

  ~CsvWriter() {
    if (file_ != nullptr) std::fclose(file_);
  }

 private:
  static constexpr size_t kFlushAt = 1 << 20;

  template <typename T>
  void append_number(T v) {
    char tmp[24];
    auto [end, ec] = std::to_chars(tmp, tmp + sizeof(tmp), v);
    buffer_.append(tmp, end);
  }
  void flush_buffer() {
    if (!buffer_.empty() &&
        std::fwrite(buffer_.data(), 1, buffer_.size(), file_) != buffer_.size()) {
      error_ = true;
    }
    buffer_.clear();
  }

  std::string path_;
  std::FILE* file_ = nullptr;
  std::string buffer_;
  bool error_ = false;
};

class ReplaySink final : public DecisionSink {
 public:
  ReplaySink(const ReplayOptions& options, ReplayResult& result, CsvWriter* csv)
      : from_(options.from), to_(options.to), result_(result), csv_(csv) {}

  void on_decision(const DecisionRecord& d) override {
    if (d.seq < from_ || d.seq > to_) return;
    ++result_.decisions;
    ++result_.verdicts[static_cast<size_t>(d.verdict) % 6];
    result_.digest.add(d);
    if (csv_ != nullptr) csv_->add(d);
  }
  void on_alert(const AlertRecord& a) override {
    if (a.seq < from_ || a.seq > to_) return;
    ++result_.alerts;
    ++result_.alerts_by_rule[static_cast<size_t>(a.rule) % 7];
  }

 private:
  const int64_t from_;
  const int64_t to_;
  ReplayResult& result_;
  CsvWriter* csv_;
};

}  // namespace

absl::StatusOr<ReplayResult> run_replay(const ReplayOptions& options) {
  if (absl::Status s = validate(options.config); !s.ok()) return s;
  ReplayResult result;
  std::unique_ptr<CsvWriter> csv;
  if (!options.decisions_out.empty()) {
    csv = std::make_unique<CsvWriter>();
    if (absl::Status s = csv->open(options.decisions_out); !s.ok()) return s;
  }
  ReplaySink sink(options, result, csv.get());
  // Without a decisions file nothing needs the decisions in one sequence: with several shards,
  // each runs into its own counts (on up to a thread per CPU), added up after.
  std::vector<ReplayResult> partials;
  std::vector<std::unique_ptr<ReplaySink>> shard_sinks;
  std::function<DecisionSink*(uint32_t, uint32_t)> shard_sink;
  if (csv == nullptr) {
    shard_sink = [&](uint32_t k, uint32_t n) -> DecisionSink* {
      if (partials.size() != n) partials.resize(n);  // the first call; none is in use yet
      shard_sinks.push_back(std::make_unique<ReplaySink>(options, partials[k], nullptr));
      return shard_sinks.back().get();
    };
  }
  RecoveryOptions recovery{.snapshot_dir = options.snapshot_dir,
                           .journal_dir = options.journal_dir,
                           .shards = options.shards,
                           .config = options.config,
                           .use_snapshots = !options.snapshot_dir.empty(),
                           .max_snapshot_sequence = options.from - 1,
                           .stop_after = options.to,
                           .tail_sink = &sink,
                           .shard_sink = shard_sink,
                           .read_ahead = options.read_ahead,
                           .progress = options.progress};
  const int64_t start = now_ns();
  absl::StatusOr<Recovered> r = recover(recovery);
  if (!r.ok()) return r.status();
  result.seconds = static_cast<double>(now_ns() - start) / 1e9;
  for (const ReplayResult& p : partials) {
    result.decisions += p.decisions;
    result.alerts += p.alerts;
    for (size_t i = 0; i < std::size(result.verdicts); ++i) result.verdicts[i] += p.verdicts[i];
    for (size_t i = 0; i < std::size(result.alerts_by_rule); ++i) {
      result.alerts_by_rule[i] += p.alerts_by_rule[i];
    }
    result.digest.combine(p.digest);
  }
  result.events = r->replayed_events;
  result.first_sequence = r->first_sequence;
  result.last_sequence = r->last_sequence;
  if (r->replayed_events > 0) {
    result.reported_events =
        std::max<int64_t>(0, r->last_sequence - std::max(options.from, r->first_sequence) + 1);
  }
  result.torn_tail = r->torn_tail;
  result.shards = static_cast<uint32_t>(r->shards.size());
  result.snapshot_sequence = r->snapshot_sequence;
  result.snapshot_files = r->snapshot_files;
  result.snapshot_load_seconds = r->load_seconds;
  result.warnings = r->warnings;
  if (csv != nullptr) {
    if (absl::Status s = csv->close(); !s.ok()) return s;
  }
  return result;
}

}  // namespace sluice
