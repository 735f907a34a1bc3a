// The engine of `sluice load` (SPEC section 3): an open-loop load generator and latency meter
// for sluice's binary TCP protocol (SPEC section 1).
//
// Schedule. Events are due at a constant rate: global event k (0-based) has the intended send
// time start + k / rate and goes to connection k % connections, so connection i sends its j-th
// event, client_seq last_client_seq + 1 + j, at start + (j * connections + i) / rate. The first
// warmup * rate events are sent and checked like the rest but kept out of the histogram.
// Nothing waits for a decision before sending (open loop): if the server or the network falls
// behind, events are sent late, and their latency still counts from the intended time.
//
// Latency. For every DECISION: arrival time (read right after the recv that brought it) minus
// the event's intended send time, the coordinated-omission correction of wrk2: a stall that
// holds up sending shows in every event scheduled during it, not just the one that waited.
// The intended time is computed from client_seq, so no per-event timestamp is stored; a bitmap
// of one bit per scheduled event catches duplicate and stray decisions.
//
// Threads. Connections are spread over `threads` worker threads (connection i on thread
// i % threads). Each pass of a worker encodes every event due by now into its connection's
// buffer and sends it with one send() per connection, then does one large recv() per
// connection. With nothing to do it sleeps in ppoll() until the next event is due or a
// decision arrives (timer slack set to 1 ns), waking early by its learned wake-up latency and
// yielding the rest, unless `spin` asks it to poll.
//
// Connection setup runs on the caller's thread: connect every connection, send HELLO{client_id}
// on each (unless client_id_base is 0) and wait for its HELLO_ACK; with `subscribe`, connection
// 0 then sends SUBSCRIBE{alerts} (one subscriber, so each alert is counted once).
//
// Thread safety: run_load() may be called from any thread and blocks until the run is over;
// it starts and joins its own worker threads. options.progress runs on the calling thread;
// options.stop may be set from any thread (a signal handler included).
#ifndef SLUICE_TOOLS_LOAD_GENERATOR_H_
#define SLUICE_TOOLS_LOAD_GENERATOR_H_

#include <array>
#include <atomic>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "core/histogram.h"
#include "tools/load_workload.h"

namespace sluice::tools {

struct LoadProgress {
  double elapsed_s = 0;  // since the schedule started
  int64_t sent = 0;
  int64_t decided = 0;
  int64_t errors = 0;
};

struct LoadOptions {
  std::string host = "127.0.0.1";
  uint16_t port = 7700;
  double rate = 10'000;      // events/s over all connections; > 0
  double duration_s = 10;    // the measured period; > 0
  double warmup_s = 0;       // sent before the measured period, kept out of the histogram
  uint32_t connections = 1;  // >= 1
  uint32_t threads = 1;      // 1 .. connections
  WorkloadOptions workload;
  uint64_t client_id_base = 1;  // connection i says HELLO{client_id_base + i}; 0: no HELLO
  double drain_timeout_s = 5;   // after the last event is due, wait this long for decisions
  double connect_timeout_s = 5;
  bool subscribe = false;     // connection 0 sends SUBSCRIBE{alerts} and counts the ALERTs
  bool spin = false;          // poll instead of sleeping when early (costs a core per thread)
  int send_buffer_bytes = 0;  // SO_SNDBUF of each connection; 0 keeps the kernel's default
  // Event time runs this many times as fast as the wall clock from the start of the run (> 0,
  // at most 1000): a short run then covers windows, lateness and state cleanup that take
  // minutes of event time. 1: event time is the wall clock.
  double time_scale = 1;
  // Set to end the schedule early: nothing more is sent, outstanding decisions drain.
  const std::atomic<bool>* stop = nullptr;
  // Called about once a second on the thread that called run_load().
  std::function<void(const LoadProgress&)> progress;
};

// What happened on one connection.
struct ConnectionReport {
  uint32_t index = 0;
  uint64_t client_id = 0;
  uint64_t last_client_seq = 0;  // from HELLO_ACK; the first event sent has this + 1
  int64_t scheduled = 0;
  int64_t sent = 0;     // events whose bytes the kernel accepted
  int64_t decided = 0;  // events with exactly one DECISION
  bool failed = false;  // closed, reset or broken before its work was done
};

struct LoadResult {
  double rate_target = 0;
  // Measured events sent per second: measured events sent over the time from the measured
  // period's start to the send() of the last of them, plus one interval. Equals rate_target when
  // every event left on time; lower when sending fell behind.
  double rate_achieved = 0;
  // Measured decisions per second over the time from the period's start to the last of them.
  double decided_rate = 0;
  int64_t scheduled = 0;  // events the schedule called for (warm-up included)
  int64_t sent = 0;
  int64_t decided = 0;
  int64_t measured = 0;  // decisions recorded in `latency` (the measured period's events)
  // Problems other than a missing decision: connection failures, ERROR frames, malformed
  // frames, decisions for an unknown or already decided client_seq.
  int64_t errors = 0;
  int64_t alerts = 0;                 // ALERT frames received (only with options.subscribe)
  std::array<int64_t, 6> verdicts{};  // by wire::Verdict
  double elapsed_s = 0;               // from the schedule's start to the end of the drain
  Histogram latency;  // ns, intended send time -> DECISION arrival, measured events only
  // ns, intended send time -> the start of the send() call that completed the event: the
  // generator's own lateness plus time blocked on a full socket, not the send's own cost.
  Histogram send_lag;
  std::vector<ConnectionReport> connections;
  // One line each, "connection 2 to 127.0.0.1:7700: ...", in connection order.
  std::vector<std::string> error_messages;

  int64_t missing() const noexcept { return scheduled - decided; }
  bool ok() const noexcept { return errors == 0 && decided == scheduled; }
};

// Splits "HOST:PORT" ("[::1]:7700" for IPv6). InvalidArgument if malformed.
absl::Status parse_target(std::string_view target, std::string* host, uint16_t* port);

// Runs the whole load: connect, handshake, schedule, drain. Errors: InvalidArgument for options
// out of range; Unavailable (with host:port and the connection index) when resolving,
// connecting or the handshake fails. Failures after the schedule started are in the result.
absl::StatusOr<LoadResult> run_load(const LoadOptions& options);

}  // namespace sluice::tools

#endif  // SLUICE_TOOLS_LOAD_GENERATOR_H_
