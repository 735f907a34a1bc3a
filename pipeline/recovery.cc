#include "pipeline/recovery.h"

#include <algorithm>
#include <array>
#include <cstring>
#include <map>
#include <optional>
#include <set>
#include <span>
#include <system_error>
#include <thread>

#include "absl/strings/str_cat.h"
#include "core/clock.h"
#include "io/journal_reader.h"
#include "io/snapshot_file.h"
#include "io/snapshot_format.h"

namespace sluice {
namespace {

class DiscardSink final : public DecisionSink {
 public:
  void on_decision(const DecisionRecord&) override {}
  void on_alert(const AlertRecord&) override {}
};

std::vector<std::unique_ptr<Shard>> make_shards(const RecoveryOptions& o, uint32_t n,
                                                DecisionSink& sink) {
  std::vector<std::unique_ptr<Shard>> shards;
  shards.reserve(n);
  for (uint32_t i = 0; i < n; ++i) {
    shards.push_back(std::make_unique<Shard>(o.config, i, n, sink, o.store));
  }
  return shards;
}

// Tries the set of sequence `seq` with `count` shards; on success fills `out` and returns true.
bool try_set(const RecoveryOptions& o, int64_t seq, uint32_t count,
             const std::map<uint32_t, std::string>& files, journal::JournalReader& reader,
             DecisionSink& sink, Recovered& out) {
  if (files.size() != count) {
    std::string have;
    for (const auto& [k, path] : files) absl::StrAppend(&have, have.empty() ? "" : ",", k);
    out.warnings.push_back(absl::StrCat("snapshot set at sequence ", seq, " of ", count,
                                        " shards is incomplete (have shard ", have, ")"));
    return false;
  }
  const uint64_t fingerprint = config_fingerprint(o.config);
  std::vector<std::unique_ptr<snapshot::MappedSnapshot>> mapped;
  bool ok = true;
  for (const auto& [k, path] : files) {
    auto m = snapshot::MappedSnapshot::open(path, /*verify=*/true);
    if (!m.ok()) {
      out.warnings.push_back(std::string(m.status().message()));
      ok = false;
      continue;
    }
    const snapshot::Header& h = (*m)->header();
    std::string why;
    if (h.shard_index != k || h.shard_count != count || h.sequence != seq) {
      why = absl::StrCat("header says shard ", h.shard_index, " of ", h.shard_count,
                         " at sequence ", h.sequence, ", not what its name says");
    } else if (h.config_fingerprint != fingerprint) {
      why = "taken with another processor config or state layout (fingerprint differs): not used";
    }
    if (!why.empty()) {
      out.warnings.push_back(absl::StrCat(path, ": ", why));
      ok = false;
      continue;
    }
    mapped.push_back(*std::move(m));
  }
  if (!ok) return false;
  // The journal must still hold S: a snapshot ahead of the journal describes events it lost.
  if (absl::Status s = reader.seek(seq); !s.ok()) return false;
  journal::Record rec;
  const journal::ReadResult r = reader.next(&rec);
  if (r != journal::ReadResult::kRecord || rec.sequence != seq) {
    out.warnings.push_back(absl::StrCat("snapshot set at sequence ", seq, ": the journal ",
                                        r == journal::ReadResult::kRecord
                                            ? absl::StrCat("has no sequence ", seq)
                                            : std::string("ends before it"),
                                        ": not used"));
    return false;
  }
  std::vector<std::unique_ptr<Shard>> shards = make_shards(o, count, sink);
  for (uint32_t k = 0; k < count; ++k) {
    if (absl::Status s = shards[k]->restore(mapped[k]->bytes()); !s.ok()) {
      out.warnings.push_back(absl::StrCat(mapped[k]->path(), ": ", s.message()));
      return false;
    }
  }
  out.shards = std::move(shards);
  out.snapshot_sequence = seq;
  for (const auto& m : mapped) out.snapshot_files.push_back(m->path());
  return true;
}

// What one pass over the journal tail saw.
struct Tail {
  absl::Status status;
  int64_t first_sequence = 0;  // 0: no record
  int64_t last_sequence = 0;
  int64_t events = 0;
  bool torn_tail = false;
};

// Runs every record from the reader's position (through o.stop_after) through the shards that
// `each_shard(f)` calls f on. Records come a batch at a time (next_batch: all of a batch stay
// valid together), so the shards' state can be prefetched kAhead records ahead of the one
// handled, from the record where it lies. Only the last kAhead records of a batch, still to be
// handled when the next batch is read, are copied out (the next batch may be another window).
template <typename EachShard>
Tail run_records(const RecoveryOptions& o, journal::JournalReader& reader, bool report_progress,
                 EachShard each_shard) {
  constexpr size_t kAhead = 4;
  constexpr size_t kBatch = 64;
  struct Held {
    int64_t sequence;
    uint64_t client_id;
    uint16_t length;
    std::array<std::byte, wire::kMaxFrameSize> frame;
  };
  std::array<journal::Record, kBatch> batch;
  std::vector<Held> held(kAhead);
  size_t held_count = 0;
  Tail tail;
  auto handle = [&](int64_t sequence, uint64_t client_id, std::span<const std::byte> frame) {
    each_shard([&](Shard& shard) { shard.on_event(sequence, client_id, 0, frame); });
  };
  for (;;) {
    size_t n = reader.next_batch(batch);
    const bool last = n == 0 || batch[n - 1].sequence >= o.stop_after;
    if (n > 0 && batch[n - 1].sequence > o.stop_after) {
      // Sequences are consecutive: the records through stop_after are a prefix.
      n = batch[0].sequence > o.stop_after
              ? 0
              : static_cast<size_t>(o.stop_after - batch[0].sequence + 1);
    }
    for (size_t i = 0; i < std::min(n, kAhead); ++i) {
      each_shard([&](Shard& shard) { shard.prefetch(batch[i].frame); });
    }
    for (size_t h = 0; h < held_count; ++h) {
      const Held& it = held[h];
      handle(it.sequence, it.client_id, {it.frame.data(), it.length});
    }
    held_count = 0;
    const size_t direct = last ? n : n - std::min(n, kAhead);
    for (size_t i = 0; i < direct; ++i) {
      if (i + kAhead < n) {
        each_shard([&](Shard& shard) { shard.prefetch(batch[i + kAhead].frame); });
      }
      handle(batch[i].sequence, batch[i].client_id, batch[i].frame);
    }
    for (size_t i = direct; i < n; ++i) {
      Held& it = held[held_count++];
      it.sequence = batch[i].sequence;
      it.client_id = batch[i].client_id;
      it.length = static_cast<uint16_t>(batch[i].frame.size());
      std::memcpy(it.frame.data(), batch[i].frame.data(), batch[i].frame.size());
    }
    if (n > 0) {
      const int64_t before = tail.events;
      if (tail.first_sequence == 0) tail.first_sequence = batch[0].sequence;
      tail.last_sequence = batch[n - 1].sequence;
      tail.events += static_cast<int64_t>(n);
      if (report_progress && o.progress && (before >> 20) != (tail.events >> 20)) {
        o.progress(tail.events, tail.last_sequence);
      }
    }
    if (last) break;
  }
  if (!reader.status().ok()) tail.status = reader.status();
  tail.torn_tail = reader.torn_tail().has_value();
  return tail;
}

// run_records over `shards`; one shard (replay's usual case) without the loop.
Tail run_tail(const RecoveryOptions& o, journal::JournalReader& reader,
              std::span<const std::unique_ptr<Shard>> shards, bool report_progress) {
  if (shards.size() == 1) {
    Shard& shard = *shards[0];
    return run_records(o, reader, report_progress, [&shard](auto&& f) { f(shard); });
  }
  return run_records(o, reader, report_progress, [shards](auto&& f) {
    for (const auto& shard : shards) f(*shard);
  });
}

// The shards split into one contiguous group per thread (as many threads as the machine has
// CPUs, at most one per shard), each shard with its own sink: a shard's decisions depend only on
// the events, which every shard reads in full. The calling thread runs group 0 with `reader`
// (positioned just after `after`); every other thread opens a reader of its own there.
Tail run_tail_in_parallel(const RecoveryOptions& o, journal::JournalReader& reader,
                          std::span<const std::unique_ptr<Shard>> shards, int64_t after) {
  const auto n = static_cast<uint32_t>(shards.size());
  for (uint32_t k = 0; k < n; ++k) shards[k]->set_sink(*o.shard_sink(k, n));
  const uint32_t groups = std::clamp(std::thread::hardware_concurrency(), 1u, n);
  auto group = [&](uint32_t g) {
    const size_t lo = size_t{n} * g / groups;
    return shards.subspan(lo, size_t{n} * (g + 1) / groups - lo);
  };
  std::vector<Tail> tails(groups);
  std::vector<std::thread> threads;
  threads.reserve(groups - 1);
  for (uint32_t g = 1; g < groups; ++g) {
    auto run_group = [&o, &tails, shards = group(g), after, g] {
      Tail& tail = tails[g];
      auto own = journal::JournalReader::open(o.journal_dir);
      if (!own.ok()) {
        tail.status = own.status();
        return;
      }
      if (absl::Status s = (*own)->seek(after); !s.ok()) {
        tail.status = s;
        return;
      }
      journal::Record rec;
      if (after > 0 && (*own)->next(&rec) != journal::ReadResult::kRecord) {
        tail.status = absl::InternalError(
            absl::StrCat("the journal no longer holds sequence ", after, " (", o.journal_dir, ")"));
        return;
      }
      tail = run_tail(o, **own, shards, false);
    };
    try {
      threads.emplace_back(std::move(run_group));
    } catch (const std::system_error& e) {
      for (std::thread& t : threads) t.join();
      Tail failed;
      failed.status = absl::ResourceExhaustedError(
          absl::StrCat("cannot start a thread to replay the journal tail: ", e.what()));
      return failed;
    }
  }
  tails[0] = run_tail(o, reader, group(0), true);
  for (std::thread& t : threads) t.join();
  for (const Tail& t : tails) {
    if (!t.status.ok()) return t;
  }
  for (size_t g = 1; g < tails.size(); ++g) {
    if (tails[g].events != tails[0].events || tails[g].last_sequence != tails[0].last_sequence) {
      tails[0].status = absl::InternalError(absl::StrCat(
          "recovery threads read different journal tails: to sequence ", tails[0].last_sequence,
          " and to ", tails[g].last_sequence, " (", o.journal_dir, " changed meanwhile?)"));
      break;
    }
  }
  return tails[0];
}

}  // namespace

DecisionSink& discard_sink() {
  static DiscardSink sink;
  return sink;
}

absl::StatusOr<Recovered> recover(const RecoveryOptions& o) {
  if (absl::Status s = validate(o.config); !s.ok()) return s;
  auto reader = journal::JournalReader::open(o.journal_dir);
  if (!reader.ok()) return reader.status();
  DecisionSink& sink = o.tail_sink != nullptr ? *o.tail_sink : discard_sink();
  Recovered out;
  const int64_t load_start = monotonic_ns();

  if (o.use_snapshots && !o.snapshot_dir.empty()) {
    auto listed = snapshot::list(o.snapshot_dir);
    if (!listed.ok()) return listed.status();
    // sequence -> count -> shard -> path
    std::map<int64_t, std::map<uint32_t, std::map<uint32_t, std::string>>, std::greater<>> sets;
    std::map<uint32_t, int> other_counts;
    for (const snapshot::Listed& f : *listed) {
      if (o.shards != 0 && f.name.shard_count != o.shards) {
        ++other_counts[f.name.shard_count];
        continue;
      }
      if (f.name.sequence > o.max_snapshot_sequence) continue;
      sets[f.name.sequence][f.name.shard_count][f.name.shard_index] = f.path;
    }
    for (const auto& [count, n] : other_counts) {
      out.warnings.push_back(absl::StrCat("ignored ", n, " snapshot file(s) taken with ", count,
                                          " shards (recovering ", o.shards,
                                          "): the journal is replayed instead"));
    }
    for (const auto& [seq, by_count] : sets) {
      bool done = false;
      // With shards == 0, prefer the largest count at the newest sequence (any would do).
      for (auto it = by_count.rbegin(); it != by_count.rend() && !done; ++it) {
        done = try_set(o, seq, it->first, it->second, **reader, sink, out);
      }
      if (done) break;
    }
  }
  if (out.shards.empty()) {
    out.shards = make_shards(o, o.shards == 0 ? 1 : o.shards, sink);
    if (absl::Status s = (*reader)->seek(0); !s.ok()) return s;
  }
  out.load_seconds = static_cast<double>(monotonic_ns() - load_start) / 1e9;

  const int64_t replay_start = monotonic_ns();
  const bool parallel = out.shards.size() > 1 && o.shard_sink;
  // One thread replaying: a second CPU, if there is one, reads and checks the journal ahead of
  // it. In parallel, the shard groups have the CPUs.
  (*reader)->set_read_ahead(o.read_ahead && !parallel);
  const Tail tail = parallel ? run_tail_in_parallel(o, **reader, out.shards, out.snapshot_sequence)
                             : run_tail(o, **reader, out.shards, true);
  out.replay_seconds = static_cast<double>(monotonic_ns() - replay_start) / 1e9;
  if (!tail.status.ok()) return tail.status;
  out.first_sequence = tail.first_sequence;
  out.last_sequence = tail.events > 0 ? tail.last_sequence : out.snapshot_sequence;
  out.replayed_events = tail.events;
  out.torn_tail = tail.torn_tail;
  return out;
}

}  // namespace sluice
