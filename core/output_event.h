// OutputEvent: a slot of a shard's output ring, one answer on its way to egress.
//
// Every shard owns one output ring (single producer: the shard; single consumer: the network
// agent's egress), so the decisions of one account leave in the order its shard made them.
// A decision goes to the connection that sent the event (connection_id; 0 means nobody waits
// for it: replay, recovery, UDP); an alert goes to every subscribed connection and to the
// alerts log.
//
// Thread safety: as RingBuffer slots (the shard writes a slot between claim and publish; egress
// reads it behind its barrier).
#ifndef SLUICE_CORE_OUTPUT_EVENT_H_
#define SLUICE_CORE_OUTPUT_EVENT_H_

#include <cstdint>

#include "core/cache_line.h"

namespace sluice {

struct alignas(kCacheLineSize) OutputEvent {
  enum class Kind : uint8_t { kDecision = 1, kAlert = 2 };

  Kind kind = Kind::kDecision;
  char type = 'T';              // decision: 'T' transaction, 'O' order
  uint8_t verdict = 0;          // decision: wire::Verdict
  uint8_t reason = 0;           // decision: lowest rule code that fired, 0 if none
  uint32_t connection_id = 0;   // decision: where it goes; 0 for nobody
  uint32_t flags = 0;           // decision: bit (rule - 1) for every rule that fired
  uint16_t rule = 0;            // alert: wire::Rule
  int64_t seq = 0;              // journal sequence of the event
  uint64_t account_id = 0;
  uint64_t client_id = 0;       // decision
  uint64_t client_seq = 0;      // decision
  int64_t receive_ticks = 0;    // core/clock ticks when ingest received the event (0: unknown)
  int64_t event_time_ns = 0;    // alert
  int64_t value = 0;            // alert
  int64_t threshold = 0;        // alert
};

static_assert(sizeof(OutputEvent) == 2 * kCacheLineSize);

}  // namespace sluice

#endif  // SLUICE_CORE_OUTPUT_EVENT_H_
