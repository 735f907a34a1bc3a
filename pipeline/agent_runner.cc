#include "pipeline/agent_runner.h"

#include <cstdio>
#include <exception>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "core/absl_compat.h"
#include "core/cpu.h"

namespace sluice {
namespace {

absl::Status status_from_current_exception(std::string_view agent, std::string_view phase) {
  try {
    throw;
  } catch (const std::exception& e) {
    return absl::InternalError(absl::StrCat("agent '", to_absl(agent), "' failed in ", to_absl(phase), ": ", e.what()));
  } catch (...) {
    return absl::InternalError(
        absl::StrCat("agent '", to_absl(agent), "' failed in ", to_absl(phase), ": unknown exception"));
  }
}

}  // namespace

void log_agent_error(std::string_view agent, const absl::Status& status) {
  std::fprintf(stderr, "sluice: error: agent %.*s: %s\n", static_cast<int>(agent.size()),
               agent.data(), std::string(status.message()).c_str());
}

AgentRunner::AgentRunner(Agent& agent, RunnerOptions options, AgentErrorHandler on_error)
    : agent_(agent), options_(std::move(options)), on_error_(std::move(on_error)) {}

AgentRunner::~AgentRunner() { stop(); }

absl::Status AgentRunner::start() {
  if (thread_.joinable() || running_.load(std::memory_order_acquire)) {
    return absl::FailedPreconditionError(
        absl::StrCat("agent runner for '", to_absl(agent_.name()), "' was already started"));
  }
  stop_requested_.store(false, std::memory_order_release);
  running_.store(true, std::memory_order_release);
  thread_ = std::thread([this] { run(); });
  return absl::OkStatus();
}

void AgentRunner::stop() {
  stop_requested_.store(true, std::memory_order_release);
  if (thread_.joinable()) thread_.join();
}

absl::Status AgentRunner::status() const {
  std::lock_guard<std::mutex> lock(status_mu_);
  return status_;
}

void AgentRunner::fail(absl::Status status) {
  {
    std::lock_guard<std::mutex> lock(status_mu_);
    if (status_.ok()) status_ = status;
  }
  if (on_error_) on_error_(agent_.name(), status);
}

void AgentRunner::run() {
  const std::string thread_name =
      options_.thread_name.empty() ? std::string(agent_.name()) : options_.thread_name;
  (void)set_current_thread_name(thread_name);  // cosmetic: a failure changes nothing
  if (options_.idle.kind == IdleKind::kBackoff) {
    (void)set_current_thread_timer_slack_ns(1'000);  // parks of 1 us must not become 50 us
  }
  if (options_.cpu.has_value()) {
    if (absl::Status pinned = pin_current_thread(*options_.cpu); !pinned.ok()) {
      fail(absl::Status(pinned.code(), absl::StrCat("agent '", to_absl(agent_.name()), "': ",
                                                    pinned.message())));
      running_.store(false, std::memory_order_release);
      return;
    }
  }

  try {
    agent_.on_start();
  } catch (...) {
    fail(status_from_current_exception(agent_.name(), "on_start"));
    running_.store(false, std::memory_order_release);
    return;
  }

  IdleStrategy idle(options_.idle);
  try {
    while (!stop_requested_.load(std::memory_order_acquire)) idle.idle(agent_.do_work());
  } catch (...) {
    fail(status_from_current_exception(agent_.name(), "do_work"));
  }

  try {
    agent_.on_close();
  } catch (...) {
    fail(status_from_current_exception(agent_.name(), "on_close"));
  }
  running_.store(false, std::memory_order_release);
}

}  // namespace sluice
