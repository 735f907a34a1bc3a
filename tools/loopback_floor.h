// The kernel's loopback floor, measured the way perf scripts want it beside `sluice load`:
// an in-process TCP echo over 127.0.0.1 (a server thread and the calling thread as client)
// playing ping-pong with frames of one size (44 bytes by default, a TRANSACTION frame).
//
// Each round trip is one send() of the frame and recv() calls until the whole echo is back;
// its latency is from just before the send to just after the echo's last byte arrived. With a
// rate, round trips start at the slots of a constant-rate schedule (the client sleeps in
// between, as `sluice load` does when early); a round trip that cannot start in its slot
// because the previous one was still out starts at once and is counted as late. With rate 0
// they run back to back for the duration. Sockets block (the threads sleep in recv and are
// woken: the floor a sleeping server pays) unless `spin` makes both ends poll non-blocking
// sockets (the floor of a server that polls; it keeps both CPUs busy).
//
// Thread safety: run_loopback_floor() blocks the calling thread, starts and joins its server
// thread. options.stop may be set from any thread.
#ifndef SLUICE_TOOLS_LOOPBACK_FLOOR_H_
#define SLUICE_TOOLS_LOOPBACK_FLOOR_H_

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "core/histogram.h"
#include "tools/load_generator.h"

namespace sluice::tools {

struct FloorOptions {
  double rate = 10'000;   // round trips per second; 0 runs them back to back
  double duration_s = 5;  // the measured period; > 0
  double warmup_s = 0;    // round trips before the measured period, not recorded
  size_t size = 44;       // bytes per frame, 8 .. 65536
  bool spin = false;      // both ends poll non-blocking sockets instead of sleeping in recv
  // Not empty: measure the disk instead (run_disk_floor): each round trip is a `size`-byte
  // pwrite at the next offset of a preallocated file in this directory, then fdatasync.
  std::string fdatasync_dir;
  const std::atomic<bool>* stop = nullptr;
  // Called about once a second, between round trips, on the calling thread.
  std::function<void(const LoadProgress&)> progress;
};

struct FloorResult {
  double rate_target = 0;
  double rate_achieved = 0;  // measured round trips per second of the measured period
  int64_t sent = 0;          // frames sent (warm-up included)
  int64_t echoed = 0;        // frames whose echo came back intact
  int64_t errors = 0;        // echoes that came back wrong, socket errors
  int64_t measured = 0;      // round trips recorded in rtt
  int64_t late = 0;          // round trips that started after their slot had passed
  double elapsed_s = 0;
  Histogram rtt;       // ns, send -> the echo's last byte
  Histogram send_lag;  // ns, the slot's time -> the send (paced runs only)
  std::vector<std::string> error_messages;

  bool ok() const noexcept { return errors == 0 && echoed == sent; }
};

// InvalidArgument for options out of range; Internal when the loopback sockets cannot be set up.
absl::StatusOr<FloorResult> run_loopback_floor(const FloorOptions& options);

// The disk's floor, for the journal's durable latency: pwrite + fdatasync round trips into a
// fresh file in options.fdatasync_dir, fallocated up front like a journal segment (unwritten
// extents), removed afterwards. Same pacing, histograms and result as the loopback floor
// ("echoed" counts completed syncs). Errors name the file.
absl::StatusOr<FloorResult> run_disk_floor(const FloorOptions& options);

// `sluice floor --json`: the same shape as `sluice load --json` ("decided" counts the echoes,
// "latency_ns" is the round trip), plus "mode", "size", "late", "measured", "send_lag_ns".
std::string format_floor_json(const FloorOptions& options, const FloorResult& result);
std::string format_floor_text(const FloorOptions& options, const FloorResult& result);

}  // namespace sluice::tools

#endif  // SLUICE_TOOLS_LOOPBACK_FLOOR_H_
