// AgentRunner: one thread that runs an agent: on_start, then idle(do_work()) until stopped,
// then on_close.
//
// The thread is optionally named and pinned to a CPU. A failure (an exception from the agent,
// or a pin that the kernel refused) ends the loop, is kept as the runner's status and is passed
// to the error handler with the agent's name; the agent is still closed.
//
// Lifetime: the agent must outlive the runner. The destructor stops and joins.
// Thread safety: start, stop and the accessors are for the thread that owns the runner.
#ifndef SLUICE_PIPELINE_AGENT_RUNNER_H_
#define SLUICE_PIPELINE_AGENT_RUNNER_H_

#include <atomic>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>

#include "absl/status/status.h"
#include "core/idle_strategy.h"
#include "pipeline/agent.h"

namespace sluice {

struct RunnerOptions {
  IdleConfig idle;
  std::optional<int> cpu;   // pin the thread to this CPU
  std::string thread_name;  // defaults to the agent's name (the kernel keeps 15 characters)
};

// Called on the runner's thread when the agent fails.
using AgentErrorHandler = std::function<void(std::string_view agent, const absl::Status&)>;

// The default handler: one line on stderr.
void log_agent_error(std::string_view agent, const absl::Status& status);

class AgentRunner {
 public:
  AgentRunner(Agent& agent, RunnerOptions options = {},
              AgentErrorHandler on_error = log_agent_error);
  ~AgentRunner();
  AgentRunner(const AgentRunner&) = delete;
  AgentRunner& operator=(const AgentRunner&) = delete;

  // Starts the thread. FailedPrecondition if it was started before.
  absl::Status start();

  // Asks the loop to end after the current do_work, then joins. Idempotent.
  void stop();

  // True from start until the loop ended (stopped or failed).
  bool is_running() const { return running_.load(std::memory_order_acquire); }

  // OK, or the first failure. Final once the thread ended (after stop()).
  absl::Status status() const;

  Agent& agent() const { return agent_; }

 private:
  void run();
  void fail(absl::Status status);

  Agent& agent_;
  const RunnerOptions options_;
  const AgentErrorHandler on_error_;
  // Written by stop() (release), read by the loop (acquire) on every pass.
  std::atomic<bool> stop_requested_{false};
  std::atomic<bool> running_{false};
  std::thread thread_;
  mutable std::mutex status_mu_;
  absl::Status status_;
};

}  // namespace sluice

#endif  // SLUICE_PIPELINE_AGENT_RUNNER_H_
