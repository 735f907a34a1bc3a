// Engine: sluiced assembled from one DaemonConfig (docs/daemon.md).
//
//   clients -> NetworkServer (ingest) -> input ring -+-> JournalStage -> JournalWriter
//                                                     +-> ShardStage 0..N-1 (gated on durable
//                                                     |     in sync mode) -> output ring k
//   clients <- NetworkServer (egress) <- output rings -+   alerts -> alerts log
//
// Threads (the 2-core default): "io" runs the network server and the journal stage, "shards"
// runs every shard stage; more shard threads (engine.shard_threads) spread the shards. --cpus
// pins them in that order. Idle threads spin, yield, then park: the io thread in its io_uring
// (woken by the network, by the journal's completions and by shards that answered), shard
// threads on a futex doorbell (rung by the io thread when it published or made input durable).
// A supervisor (the caller's thread, through tick()) refreshes the stats file and notices
// failures.
//
// Start-up: lock the data directory, open the journal (a torn tail is cut), recover the shards
// (newest valid snapshot set + the journal tail; the tail's alerts that the alerts log lacks are
// appended), then listen. Shutdown: stop accepting, let the pipeline answer everything it took,
// flush and fsync the journal, sync the alerts log, snapshot every shard, exit.
//
// Faults: a journal write or fsync failure makes ingest refuse input (clients get ERROR
// INPUT_REFUSED); tick() then reports the failure and the daemon shuts down with exit status 1
// after answering what it can. Any other stage failure is reported the same way.
//
// Thread safety: start, tick, shutdown and the accessors on one (the supervisor's) thread.
#ifndef SLUICE_PIPELINE_ENGINE_H_
#define SLUICE_PIPELINE_ENGINE_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "pipeline/daemon_config.h"

namespace sluice {

struct EngineEndpoints {
  std::string binary;   // HOST:PORT as bound
  std::string text;     // empty when off
  std::string udp;      // empty when off
  std::string metrics;  // empty when off
};

class Engine {
 public:
  // Everything up to listening. Errors name what failed (the lock, the journal, recovery, a
  // listen address); nothing is left running.
  static absl::StatusOr<std::unique_ptr<Engine>> start(const DaemonConfig& config);
  ~Engine();  // shutdown() if it was not called
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  // The supervisor's periodic step (every ~100 ms): heartbeat and gauges in the stats file, and
  // failure detection. Not OK once the engine cannot go on (journal or stage failure): call
  // shutdown().
  absl::Status tick();

  // Stops as described above. Returns the first error met (a failure that ended the run, or one
  // met while shutting down); OK for a clean stop.
  absl::Status shutdown();

  const EngineEndpoints& endpoints() const;

  class Impl;

 private:
  explicit Engine(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace sluice

#endif  // SLUICE_PIPELINE_ENGINE_H_
