// InputEvent: a slot of the input ring, one journaled event as ingest received it.
//
// The input ring carries exactly the journaled events, in journal order: ring sequence r holds
// journal sequence base + r, where base is the first sequence appended after recovery. That
// one-to-one mapping is what lets stages gate on the journal's written/durable sequences.
//
// Thread safety: as RingBuffer slots (ingest writes a slot between claim and publish; the
// journal and the shards read it behind their barriers).
#ifndef SLUICE_CORE_INPUT_EVENT_H_
#define SLUICE_CORE_INPUT_EVENT_H_

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>

#include "core/cache_line.h"
#include "core/wire_format.h"

namespace sluice {

// InputEvent::flags bits.
// The shards snapshot their state right after handling this event (the snapshot barrier:
// every shard reads every slot, so all of them snapshot as of the same sequence).
inline constexpr uint8_t kInputSnapshotAfter = 1u << 0;

struct alignas(kCacheLineSize) InputEvent {
  // Journaled with the frame.
  int64_t sequence = 0;    // journal sequence: 1-based, gap-free
  int64_t ingest_ns = 0;   // CLOCK_REALTIME when ingest decoded it
  uint64_t client_id = 0;  // from the connection's HELLO, 0 without one
  // Not journaled: routing and measurement for this process only.
  int64_t receive_ticks = 0;   // core/clock now_ticks() at receive, for latency
  uint32_t connection_id = 0;  // where the DECISION goes
  uint16_t frame_length = 0;
  uint8_t flags = 0;  // kInput* bits
  uint8_t reserved = 0;
  std::array<std::byte, wire::kMaxFrameSize> frame;

  std::span<const std::byte> frame_bytes() const noexcept {
    return {frame.data(), frame_length};
  }
};

}  // namespace sluice

#endif  // SLUICE_CORE_INPUT_EVENT_H_
