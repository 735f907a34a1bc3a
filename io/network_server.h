// NetworkServer: the network agent's engine. On one thread and one io_uring it takes events in
// over binary TCP, text TCP and UDP (SPEC section 1; docs/protocol.md), numbers them with
// their journal sequence and publishes them into the input ring, and sends the shards'
// decisions and alerts back out.
//
// Data path. Multishot accept per listener; multishot receive per connection into a shared
// ring of provided buffers (fallbacks: single-shot accept and receive, per-connection buffers;
// describe() says which path runs). Frames are decoded in place in the receive buffers (only a
// frame split across two buffers is copied), checked (SPEC 1.5), deduplicated (SPEC 1.7),
// stamped and copied into input-ring slots claimed with try_next; the cursor is published once
// per pass. Egress reads every output ring, encodes each decision into its connection's output
// buffer (alerts into every subscriber's) and sends each connection's whole buffer with one
// send, one send in flight per connection, so frames leave in the order they were queued.
//
// Completions are collected without system calls when there are none: the ring uses
// DEFER_TASKRUN + TASKRUN_FLAG when the kernel has them, and a pass enters the kernel only when
// the shared SQ flags say work is pending, plus once to submit what the pass queued.
//
// Backpressure, never loss, over TCP. When the input ring is full, ingest stops decoding and
// holds what it has received; receive buffers run out and the multishot receives end (-ENOBUFS)
// and are not re-armed, so the sockets fill and TCP pushes back on the senders. When space
// returns, connections resume in turn (a FIFO), each one receive buffer at a time. A
// connection is also not read while it holds max_input_bytes of undecoded input or has
// max_in_flight events published and unanswered; it resumes as answers come back.
//
// Ordering. Decisions are queued in the order the output rings deliver them (per account: the
// order sent). Replies ingest makes itself (HELLO_ACK, INVALID and DUPLICATE decisions, ERROR
// frames, text E lines) are held until every decision owed for an event that connection sent
// before them has been queued, so they never overtake an earlier event's decision.
//
// Slow consumers. A connection's unsent output (queued, in flight and held) is bounded by
// max_output_bytes; past it the connection is dropped and counted. Egress never waits for a
// socket, so a shard never waits for a slow client.
//
// Thread safety and lifetime:
// - create() on any thread: binds the listeners (their ports are known from then on), sets up
//   the ring (disabled) and its buffers. Errors (address in use, no io_uring) surface here.
// - start(), poll() and wait() on the agent's thread only. The first of them binds the ring to
//   that thread (SINGLE_ISSUER); the first poll() calls start() when nobody did.
// - wake(), request_snapshot(), stop_accepting(), refuse_input(), drained(), counters() and
//   the port accessors from any thread.
// - Destroy after the agent's thread stopped calling it. The rings outlive the server.
#ifndef SLUICE_IO_NETWORK_SERVER_H_
#define SLUICE_IO_NETWORK_SERVER_H_

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <limits>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "core/histogram.h"
#include "core/shared_histogram.h"
#include "core/input_event.h"
#include "core/output_event.h"
#include "core/ring_buffer.h"
#include "core/sequence.h"
#include "io/network_counters.h"

namespace sluice {

struct NetworkOptions {
  // "host:port" ("[v6]:port" for IPv6); port 0 picks a free port (read it back with port()).
  // Empty: that listener is off.
  std::string listen = "127.0.0.1:7700";       // binary TCP
  std::string text_listen = "127.0.0.1:7701";  // text TCP
  bool udp = true;  // UDP on the binary listener's address and port number

  // Limits, per connection unless said.
  uint32_t max_connections = 1024;     // TCP connections at once (at most 65536); beyond: refused
  size_t max_input_bytes = 256 << 10;  // received and undecoded; past it: not read for a while
  uint32_t max_in_flight = 4096;       // events published, decision not yet queued; ditto
  size_t max_output_bytes = 4 << 20;   // unsent output; past it: dropped as a slow consumer
  int send_buffer_bytes = 0;           // SO_SNDBUF of accepted sockets; 0: the kernel's
                                       // (autotuned, up to net.ipv4.tcp_wmem's maximum)
  int64_t linger_ns = 1'000'000'000;   // after a server-side close: wait this long for the
                                       // client to close, reading and discarding, so it gets
                                       // the last frames instead of a reset; the wait
                                       // starts over while the kernel still holds output
                                       // the client has not acknowledged (it reads slowly)
  int64_t linger_limit_ns = 30'000'000'000;  // ... but never lingers longer than this
  int64_t drain_timeout_ns = 5'000'000'000;  // after stop_accepting: connections still open
                                             // this long after it are dropped

  // Snapshot barriers (kInputSnapshotAfter); 0 turns each trigger off.
  int64_t snapshot_every_events = 0;
  int64_t snapshot_interval_ns = 0;
  // When set, a due barrier waits for it to read true (the snapshot writer's ready(): the last
  // snapshot written, the next image buffer faulted in) and goes on the first event after.
  // Not owned; outlives the server.
  const std::atomic<bool>* snapshot_gate = nullptr;

  // io_uring set-up.
  uint32_t recv_buffers = 1024;       // provided receive buffers (a power of two <= 32768)
  uint32_t recv_buffer_size = 16384;  // bytes each; also the per-connection buffer without them
  uint32_t udp_receives = 8;          // UDP receives in flight, one 64 KiB buffer each
  uint32_t udp_max_senders = 65536;   // per-sender datagram_seq state; forgotten past this
  bool allow_multishot = true;        // false: single-shot accept and receive
  bool allow_buffer_ring = true;      // false: a receive buffer per connection
  bool allow_defer_taskrun = true;    // false: COOP_TASKRUN (or nothing)
  // wait() sleeps at most this long while received input waits for input-ring space (space
  // returns without network activity; wake() ends the sleep earlier).
  int64_t held_input_wait_ns = 50'000;

  // Called on the server's thread for every alert read from an output ring (the alerts log).
  std::function<void(const OutputEvent&)> alert_sink;
  // Also records every ingest-to-decision latency here when set (the stats file's histogram,
  // readable from other threads); the server's own latency() histogram records them anyway.
  SharedHistogram* decision_latency = nullptr;
};

// Client id -> highest journaled client_seq (SPEC 1.7), rebuilt from the journal at start.
using ClientSeqTable = absl::flat_hash_map<uint64_t, uint64_t>;

class NetworkServer {
 public:
  using InputRing = RingBuffer<InputEvent, SingleProducerSequencer>;
  using OutputRing = RingBuffer<OutputEvent, SingleProducerSequencer>;

  // `first_sequence` is the journal sequence of the first event this server publishes (the
  // journal's next_sequence(), >= 1); ring sequence r carries first_sequence + r. The server is
  // the input ring's only producer and the output rings' only consumer: add output_sequence(k)
  // as output ring k's gating sequence before anything publishes into it.
  // `counters` may be null (an internal set is used).
  static absl::StatusOr<std::unique_ptr<NetworkServer>> create(
      NetworkOptions options, int64_t first_sequence, ClientSeqTable client_seqs, InputRing& input,
      std::vector<OutputRing*> outputs, NetworkCounters* counters = nullptr);
  ~NetworkServer();
  NetworkServer(const NetworkServer&) = delete;
  NetworkServer& operator=(const NetworkServer&) = delete;

  // Binds the ring to the calling thread and starts accepting and receiving.
  absl::Status start();

  // One non-blocking pass: completions, input into the ring, output rings into sends.
  // Returns the work done (0: idle). A failure that stops the server (the ring refused
  // requests) is reported by status() and ends input; poll keeps draining output.
  int poll();
  // The output half of poll(): the output rings into sends, submitted. For a thread that runs
  // the shards between its passes, so their answers leave in the pass that decided them.
  int send_outputs();

  // Parks the calling (agent) thread until network activity, wake(), or timeout_ns; returns at
  // once when work is already waiting. Call it when poll() found nothing to do.
  void wait(int64_t timeout_ns);
  // Ends a wait() early; from any thread. Cheap when the server is not parked (one atomic
  // read-modify-write, no system call), so a shard may call it after every batch it publishes
  // (or consumes: the input ring gaining space is news too when ingest holds input).
  void wake() noexcept;

  // The next published event carries kInputSnapshotAfter. From any thread.
  void request_snapshot() noexcept;

  // Closes the listeners and stops reading; queued and future answers are still sent, then
  // every connection gets ERROR SHUTTING_DOWN and is closed. From any thread.
  void stop_accepting() noexcept;
  // The journal failed: stop reading every socket, discard undecoded input, tell every client
  // ERROR INPUT_REFUSED (after the answers it is owed) and close it; new connections are told
  // the same. Events after journal sequence `answered_through` will never be answered (with
  // sync durability the shards only see durable events): the server stops waiting for their
  // decisions. From any thread.
  void refuse_input(std::string_view reason,
                    int64_t answered_through = std::numeric_limits<int64_t>::max());
  // After stop_accepting() (or refuse_input()): every connection has had its answers (or is
  // gone), its output flushed, and is closed; the listeners are closed. From any thread.
  bool drained() const noexcept;

  // Bound ports (0 when that listener is off).
  uint16_t port() const noexcept;
  uint16_t text_port() const noexcept;
  uint16_t udp_port() const noexcept;

  // The eventfd whose read ends a wait(): another io_uring can signal its completions to it
  // (io_uring_register_eventfd), so the parked thread also wakes for them.
  int wake_fd() const noexcept;

  // Uring::restrict_workers for the server's thread: its io_uring workers run on `cpus`. The
  // server's thread only, after start().
  absl::Status restrict_kernel_workers(std::span<const int> cpus);

  // Output ring k's consumer progress (the ring's gating sequence).
  const Sequence& output_sequence(size_t k) const noexcept;

  const NetworkCounters& counters() const noexcept;
  // Ingest-to-decision latency (receive to queued for send), ns. The server's thread only (or
  // after it stopped): Histogram is not thread-safe.
  const Histogram& latency() const noexcept;

  // The path taken, one line: setup flags, accept and receive modes, buffers, addresses.
  std::string describe() const;
  // OK, or why the server stopped taking input by itself (the ring refused requests).
  absl::Status status() const;

  // The journal sequence the next published event gets. The server's thread only.
  int64_t next_sequence() const noexcept;

  class Impl;

 private:
  explicit NetworkServer(std::unique_ptr<Impl> impl);

  std::unique_ptr<Impl> impl_;
};

}  // namespace sluice

#endif  // SLUICE_IO_NETWORK_SERVER_H_
