#include "pipeline/shard_stage.h"

#include <algorithm>
#include <cassert>

#include "absl/strings/str_cat.h"
#include "core/clock.h"

namespace sluice {
namespace {

// How far ahead of the event being handled the stage prefetches the state it will touch.
constexpr int64_t kPrefetchDistance = 4;

int64_t ticks_duration_ns(int64_t ticks) { return ticks_to_ns(ticks) - ticks_to_ns(0); }

}  // namespace

snapshot::Header snapshot_header(const Shard& shard, int64_t sequence) {
  const ShardStateCounts c = shard.state_counts();
  snapshot::Header h;
  h.shard_index = shard.index();
  h.shard_count = shard.count();
  h.sequence = sequence;
  h.max_time = shard.max_time();
  h.config_fingerprint = config_fingerprint(shard.config());
  h.accounts = c.accounts;
  h.history_entries = c.history_entries;
  h.positions = c.positions;
  h.rate_accounts = c.rate_accounts;
  h.rate_entries = c.rate_entries;
  h.timers = c.timers;
  h.clients = c.clients;
  return h;
}

absl::Status write_snapshot(Shard& shard, snapshot::SnapshotWriter& writer) {
  StateCapture& c = shard.capture();
  if (c.active()) return absl::FailedPreconditionError("a capture is in progress");
  const snapshot::ImageBuffer buffer = writer.acquire(c.image_bytes());
  c.begin(buffer.data, buffer.capacity);
  c.finish();
  const size_t size = c.take().second;
  c.take_work_ticks();
  return writer.write_now(snapshot_header(shard, shard.last_sequence()), buffer, size);
}

void ShardStage::OutputSink::on_decision(const DecisionRecord& d) {
  int64_t hi = 0;
  [[maybe_unused]] const ClaimResult r = ring_.try_next(1, &hi);
  assert(r == ClaimResult::kOk);  // do_work checked the room first
  ring_[hi] = to_output_event(d, current != nullptr ? current->receive_ticks : 0);
  claimed = hi;
  counters_.decisions.add();
  counters_.decisions_by_verdict[static_cast<size_t>(d.verdict) % 6].add();
  digest_sum += DecisionDigest::hash(d);
  counters_.digest_sum.set(static_cast<int64_t>(digest_sum));
  counters_.digest_count.add();
}

void ShardStage::OutputSink::on_alert(const AlertRecord& a) {
  int64_t hi = 0;
  [[maybe_unused]] const ClaimResult r = ring_.try_next(1, &hi);
  assert(r == ClaimResult::kOk);
  ring_[hi] = to_output_event(a, current != nullptr ? current->receive_ticks : 0);
  claimed = hi;
  counters_.alerts.add();
  counters_.alerts_by_rule[static_cast<size_t>(a.rule) % 7].add();
}

ShardStage::ShardStage(InputRing& input, std::vector<const Sequence*> dependents, Shard& shard,
                       OutputRing& output, snapshot::SnapshotWriter* writer,
                       ShardCounters* counters, ShardStageOptions options)
    : input_(input),
      barrier_(input.sequencer(), std::move(dependents)),
      shard_(shard),
      output_(output),
      writer_(writer),
      counters_(counters != nullptr ? counters : &own_counters_),
      options_(options),
      name_(absl::StrCat("shard-", shard.index())),
      sink_(output, *counters_) {
  assert(output.size() >= static_cast<int64_t>(kMaxOutputsPerEvent));
  shard_.set_sink(sink_);
  // Have a buffer faulted in before the first barrier: first-touch page faults in a fresh image
  // would otherwise land on the shard's thread, inside copy-on-write copies.
  if (writer_ != nullptr) prepare_image(shard_.capture().image_bytes());
}

void ShardStage::prepare_image(size_t bytes) {
  writer_->prepare(bytes);
  prepared_image_bytes_ = snapshot::SnapshotWriter::buffer_capacity(bytes);
}

void ShardStage::keep_image_prepared(int64_t events) {
  // A state that grows between two snapshots (new keys, a table doubling) would outgrow the
  // buffer asked for at the last one; the next barrier would then map a fresh one and take its
  // page faults here, inside copy-on-write copies. Checked every 64Ki events: image_bytes() sums
  // a few dozen array sizes.
  constexpr int64_t kCheckEvents = 65'536;
  events_since_size_check_ += events;
  if (events_since_size_check_ < kCheckEvents) return;
  events_since_size_check_ = 0;
  const size_t bytes = shard_.capture().image_bytes();
  if (bytes > prepared_image_bytes_) prepare_image(bytes);
}

ShardStage::~ShardStage() {
  if (capturing_) {
    StateCapture& c = shard_.capture();
    if (c.complete()) {
      c.take();
    } else {
      c.abandon();
    }
    if (writer_ != nullptr) writer_->release(buffer_);
  }
}

void ShardStage::record_stall(int64_t ns) { stall_ns_ = std::max(stall_ns_, ns); }

void ShardStage::hand_over_if_complete() {
  StateCapture& c = shard_.capture();
  if (!capturing_ || !c.complete()) return;
  const auto [image, size] = c.take();
  (void)image;
  writer_->submit(header_, buffer_, size);
  buffer_ = {};
  // The next snapshot's buffer, faulted in by the writer thread in the meantime.
  prepare_image(size);
  capturing_ = false;
  last_snapshot_sequence_ = header_.sequence;
  counters_->snapshots_taken.add();
  counters_->snapshot_stall_ns_last.set(stall_ns_);
  if (stall_ns_ > counters_->snapshot_stall_ns_max.get()) {
    counters_->snapshot_stall_ns_max.set(stall_ns_);
  }
  counters_->snapshot_cow_chunks.set(c.cow_copies());
}

void ShardStage::begin_snapshot(int64_t sequence) {
  const int64_t start = now_ticks();
  StateCapture& c = shard_.capture();
  if (capturing_) {
    // The previous barrier's image is not finished: finish it now (a longer stall, counted).
    counters_->snapshots_forced.add();
    c.finish();
    extra_ticks_ += c.take_work_ticks();
    hand_over_if_complete();
  }
  const size_t bytes = c.image_bytes();
  buffer_ = writer_->acquire(bytes);
  if (buffer_.unprepared) counters_->snapshot_unprepared_buffers.add();
  header_ = snapshot_header(shard_, sequence);
  c.begin(buffer_.data, buffer_.capacity);
  capturing_ = true;
  stall_ns_ = 0;
  extra_ticks_ += now_ticks() - start;
}

int ShardStage::do_work() {
  const int64_t available = barrier_.poll(next_);
  const int64_t batch = capturing_ ? options_.max_batch_snapshotting : options_.max_batch;
  const int64_t hi = std::min(available, next_ + batch - 1);
  constexpr auto kRoom = static_cast<int64_t>(kMaxOutputsPerEvent);
  int64_t s = next_;
  const int64_t pass_ns = options_.latency != nullptr && hi >= s ? ticks_to_ns(now_ticks()) : 0;
  for (; s <= hi; ++s) {
    if (out_room_ < kRoom) {
      out_room_ = output_.remaining_capacity();
      if (out_room_ < kRoom) {
        counters_->output_full_stalls.add();
        break;
      }
    }
    if (s + kPrefetchDistance <= hi) shard_.prefetch(input_[s + kPrefetchDistance].frame_bytes());
    const InputEvent& e = input_[s];
    if (options_.latency != nullptr && e.receive_ticks != 0) {
      options_.latency->record(pass_ns - ticks_to_ns(e.receive_ticks));
    }
    sink_.current = &e;
    const int64_t claimed_before = sink_.claimed;
    shard_.on_event(e.sequence, e.client_id, e.connection_id, e.frame_bytes());
    out_room_ -= sink_.claimed - claimed_before;
    if ((e.flags & kInputSnapshotAfter) != 0 && writer_ != nullptr) begin_snapshot(e.sequence);
  }
  int work = static_cast<int>(s - next_);
  if (s > next_) {
    counters_->events.add(s - next_);
    counters_->last_sequence.set(input_[s - 1].sequence);
    if (sink_.claimed > published_) {
      output_.publish(sink_.claimed);
      published_ = sink_.claimed;
    }
    next_ = s;
    sequence_.set(s - 1);
    if (writer_ != nullptr && !capturing_) keep_image_prepared(work);
  }
  if (capturing_) {
    StateCapture& c = shard_.capture();
    if (c.active()) {
      c.copy_some(options_.snapshot_slice_bytes);
      ++work;  // keep the runner from idling while a copy is pending
    }
    record_stall(ticks_duration_ns(c.take_work_ticks() + extra_ticks_));
    extra_ticks_ = 0;
    hand_over_if_complete();
  }
  return work;
}

void ShardStage::on_close() {
  if (!capturing_) return;
  shard_.capture().finish();
  record_stall(ticks_duration_ns(shard_.capture().take_work_ticks() + extra_ticks_));
  extra_ticks_ = 0;
  hand_over_if_complete();
}

absl::Status ShardStage::snapshot_now() {
  if (writer_ == nullptr) return absl::FailedPreconditionError("no snapshot writer");
  on_close();
  if (absl::Status s = writer_->flush(); !s.ok()) return s;
  const int64_t sequence = shard_.last_sequence();
  if (sequence <= 0 || sequence == last_snapshot_sequence_) return absl::OkStatus();
  absl::Status s = write_snapshot(shard_, *writer_);
  if (s.ok()) {
    last_snapshot_sequence_ = sequence;
    counters_->snapshots_taken.add();
  }
  return s;
}

}  // namespace sluice
