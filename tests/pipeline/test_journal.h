// Random journals and state comparison for the snapshot, recovery and shard stage suites.
#ifndef SLUICE_TESTS_PIPELINE_TEST_JOURNAL_H_
#define SLUICE_TESTS_PIPELINE_TEST_JOURNAL_H_

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include "core/wire_format.h"
#include "gtest/gtest.h"
#include "io/journal_writer.h"
#include "pipeline/keyed_processors.h"
#include "pipeline/processor.h"
#include "pipeline/state_store.h"

namespace sluice::testing {

struct JournalEvent {
  uint64_t client_id = 0;
  std::vector<std::byte> frame;
};

// Transactions, orders and watermarks over `accounts` accounts from 4 clients (one of them 0,
// no HELLO), event times mostly rising with out-of-order and late ones, so every verdict, the
// windows, timers and the pool all take part.
inline std::vector<JournalEvent> random_events(int64_t count, uint64_t seed,
                                               uint64_t accounts = 50) {
  std::mt19937_64 rng(seed);
  std::vector<JournalEvent> out;
  out.reserve(static_cast<size_t>(count));
  int64_t now = 1'000'000'000'000;
  uint64_t client_seq[4] = {0, 0, 0, 0};
  for (int64_t i = 0; i < count; ++i) {
    JournalEvent e;
    const int client = static_cast<int>(rng() % 4);
    e.client_id = client == 0 ? 0 : 100 + static_cast<uint64_t>(client);
    e.frame.resize(wire::kMaxFrameSize);
    now += static_cast<int64_t>(rng() % 300'000'000);
    int64_t t = now - static_cast<int64_t>(rng() % 3'000'000'000);
    if (rng() % 50 == 0) t = now - 20'000'000'000;  // late
    const uint64_t account = 1 + rng() % accounts;
    const uint64_t cseq = ++client_seq[client] + (rng() % 20 == 0 ? 5 : 0);
    client_seq[client] = cseq;
    switch (rng() % 10) {
      case 0:
        e.frame.resize(wire::encode(wire::Watermark{.event_time_ns = now}, e.frame));
        break;
      case 1:
      case 2:
      case 3:
        e.frame.resize(
            wire::encode(wire::Order{.client_seq = cseq,
                                     .event_time_ns = t,
                                     .account_id = account,
                                     .order_id = static_cast<uint64_t>(i),
                                     .instrument_id = static_cast<uint32_t>(rng() % 3),
                                     .side = static_cast<uint8_t>(1 + rng() % 2),
                                     .quantity = static_cast<int64_t>(1 + rng() % 20'000),
                                     .price = static_cast<int64_t>(1 + rng() % 200'000)},
                         e.frame));
        break;
      default:
        e.frame.resize(wire::encode(
            wire::Transaction{.client_seq = cseq,
                              .event_time_ns = t,
                              .account_id = account,
                              .amount_minor = static_cast<int64_t>(
                                  rng() % 20 == 0 ? 1 + rng() % 1'000'000 : 1 + rng() % 10'000),
                              .merchant_id = 9,
                              .currency = 840,
                              .channel = 1},
            e.frame));
        break;
    }
    out.push_back(std::move(e));
  }
  return out;
}

// Appends events (sequences first_sequence..) to the journal in `dir`.
inline void append_journal(const std::string& dir, const std::vector<JournalEvent>& events,
                           size_t from = 0, size_t to = SIZE_MAX) {
  auto w = journal::JournalWriter::open(journal::WriterOptions{
      .dir = dir, .segment_size = 1 << 20, .durability = journal::Durability::kNone});
  ASSERT_TRUE(w.ok()) << w.status();
  to = std::min(to, events.size());
  for (size_t i = from; i < to; ++i) {
    const journal::RecordMeta meta{static_cast<int64_t>(i + 1), static_cast<int64_t>(i),
                                   events[i].client_id};
    while ((*w)->append(meta, events[i].frame) == journal::AppendResult::kFull) (*w)->poll();
  }
  ASSERT_TRUE((*w)->close().ok());
}

// The whole state of a shard as an image (the bytes a snapshot would hold, header left zero).
inline std::vector<std::byte> image_of(Shard& shard) {
  StateCapture& c = shard.capture();
  std::vector<std::byte> image(c.image_bytes());
  c.begin(image.data(), image.size());
  c.finish();
  c.take();
  c.take_work_ticks();
  return image;
}

struct Collected final : DecisionSink {
  std::vector<DecisionRecord> decisions;
  std::vector<AlertRecord> alerts;
  void on_decision(const DecisionRecord& d) override { decisions.push_back(d); }
  void on_alert(const AlertRecord& a) override { alerts.push_back(a); }
};

}  // namespace sluice::testing

#endif  // SLUICE_TESTS_PIPELINE_TEST_JOURNAL_H_
