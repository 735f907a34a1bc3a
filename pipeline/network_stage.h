// NetworkStage: the network server (io/network_server.h) as an Agent, so a runner drives it
// on its thread, alone or in a CompositeAgent beside the journal stage.
//
// do_work() is one NetworkServer::poll(); on_start() binds the server's io_uring to the
// runner's thread (SINGLE_ISSUER) and arms the listeners.
//
// Parking. A runner's backoff idle strategy ends in sleeps, and a sleeping thread answers late.
// With park.idle_passes > 0 the stage parks the thread itself once that many passes in a row
// found nothing: NetworkServer::wait(park.park_ns) blocks in the io_uring until network
// activity, a wake() (a shard that published answers calls it), or park_ns. Run a parking
// stage under a busy-spin or yield idle strategy (the stage does the sleeping), and mind that
// composite partners wait up to park_ns while it is parked: they should call
// NetworkServer::wake() when they have something for it, or take a short park_ns.
//
// Shutdown is the owner's: NetworkServer::stop_accepting(), keep running until drained().
//
// Lifetime: the server outlives the stage. Thread safety: as Agent; parks() from any thread.
#ifndef SLUICE_PIPELINE_NETWORK_STAGE_H_
#define SLUICE_PIPELINE_NETWORK_STAGE_H_

#include <atomic>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <string_view>

#include "io/network_server.h"
#include "pipeline/agent.h"

namespace sluice {

struct NetworkParkOptions {
  uint32_t idle_passes = 0;     // 0: never park (the runner's idle strategy decides)
  int64_t park_ns = 1'000'000;  // the longest park
};

class NetworkStage final : public Agent {
 public:
  explicit NetworkStage(NetworkServer& server, NetworkParkOptions park = {})
      : server_(server), park_(park) {}

  std::string_view name() const override { return "network"; }

  void on_start() override {
    if (absl::Status s = server_.start(); !s.ok()) {
      throw std::runtime_error(std::string(s.message()));
    }
  }

  int do_work() override {
    const int work = server_.poll();
    if (work > 0 || park_.idle_passes == 0) {
      idle_passes_ = 0;
      return work;
    }
    if (++idle_passes_ >= park_.idle_passes) {
      idle_passes_ = 0;
      // Single writer: relaxed load + release store (a counter others only read).
      parks_.store(parks_.load(std::memory_order_relaxed) + 1, std::memory_order_release);
      server_.wait(park_.park_ns);
    }
    return 0;
  }

  // How often the stage parked (for tests and stats).
  int64_t parks() const noexcept { return parks_.load(std::memory_order_acquire); }

 private:
  NetworkServer& server_;
  const NetworkParkOptions park_;
  uint32_t idle_passes_ = 0;
  std::atomic<int64_t> parks_{0};
};

}  // namespace sluice

#endif  // SLUICE_PIPELINE_NETWORK_STAGE_H_
