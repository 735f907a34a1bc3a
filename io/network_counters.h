// NetworkCounters: what the network agent counts, one core/counter.h Counter each.
//
// A plain standard-layout struct of single-writer counters, so the daemon can place it in the
// memory-mapped stats file and `sluice stat` can read it while the server runs. The server
// takes it by pointer at construction (or uses an internal one).
//
// Thread safety: the server's thread writes; any thread (or process) reads.
#ifndef SLUICE_IO_NETWORK_COUNTERS_H_
#define SLUICE_IO_NETWORK_COUNTERS_H_

#include <array>
#include <string_view>
#include <type_traits>

#include "core/counter.h"

namespace sluice {

struct NetworkCounters {
  // The stats file's names (io/stats_file.h), in field order; "_total" marks a counter, the
  // rest are gauges.
  static constexpr std::array<std::string_view, 30> kFieldNames = {
      "connections_accepted_total", "connections_open", "connections_refused_total",
      "connections_dropped_slow_total", "connections_closed_error_total",
      "connections_closed_total", "frames_in_total", "bytes_in_total", "events_journaled_total",
      "invalid_total", "duplicate_total", "unknown_types_total", "protocol_errors_total",
      "malformed_lines_total", "ring_full_episodes_total", "ring_full_ns_total",
      "in_flight_stalls_total", "recv_buffer_shortages_total", "snapshot_barriers_total",
      "snapshot_barriers_deferred_total",
      "udp_datagrams_total", "udp_duplicates_total", "udp_gaps_total", "udp_bad_datagrams_total",
      "bytes_out_total", "decisions_sent_total", "alerts_seen_total", "alerts_sent_total",
      "decisions_gone_total", "decisions_unrouted_total"};
  // Connections (TCP, binary and text).
  Counter connections_accepted;      // accepted and served
  Counter connections_open;          // open now (set, not added)
  Counter connections_refused;       // over max_connections, or while stopping: ERROR, closed
  Counter connections_dropped_slow;  // unsent output passed max_output_bytes
  Counter connections_closed_error;  // a socket error (reset, failed send) ended it
  Counter connections_closed;        // every close, whatever the cause

  // Input.
  Counter frames_in;              // binary frames, text lines and UDP frames decoded
  Counter bytes_in;               // TCP and UDP payload bytes received
  Counter events_journaled;       // events published into the input ring (journal sequences)
  Counter invalid;                // SPEC 1.5 value checks failed: INVALID, not journaled
  Counter duplicate;              // SPEC 1.7: DUPLICATE, not journaled
  Counter unknown_types;          // frames of a type the server does not know: skipped
  Counter protocol_errors;        // broken frames, bad HELLOs, over-long lines: ERROR, closed
  Counter malformed_lines;        // text lines that did not parse: E line, connection stays
  Counter ring_full_episodes;     // times ingest found the input ring full and stopped reading
  Counter ring_full_ns;           // time spent with the input ring full
  Counter in_flight_stalls;       // times a connection reached max_in_flight and was not read
  Counter recv_buffer_shortages;  // receives that found no provided buffer (-ENOBUFS)
  Counter snapshot_barriers;      // events published with kInputSnapshotAfter
  Counter snapshot_barriers_deferred;  // due barriers held back until the writer was ready

  // UDP.
  Counter udp_datagrams;      // datagrams received
  Counter udp_duplicates;     // datagram_seq below the next expected one: dropped
  Counter udp_gaps;           // datagrams missing before an accepted one
  Counter udp_bad_datagrams;  // too short or with a broken frame: dropped whole

  // Output.
  Counter bytes_out;           // bytes the kernel took from sends
  Counter decisions_sent;      // decisions queued to their connection
  Counter alerts_seen;         // alerts read from the output rings
  Counter alerts_sent;         // alert frames queued to subscribers
  Counter decisions_gone;      // decisions for a connection that has closed (or never was)
  Counter decisions_unrouted;  // decisions with connection_id 0 (UDP, replay)
};

static_assert(std::is_standard_layout_v<NetworkCounters>);
static_assert(sizeof(NetworkCounters) == NetworkCounters::kFieldNames.size() * sizeof(Counter));

}  // namespace sluice

#endif  // SLUICE_IO_NETWORK_COUNTERS_H_
