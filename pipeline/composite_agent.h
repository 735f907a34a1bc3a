// CompositeAgent: several agents polled in turn on one thread.
//
// Lifetime: the composite does not own its agents; they must outlive it.
// Thread safety: as Agent (one thread calls everything).
#ifndef SLUICE_PIPELINE_COMPOSITE_AGENT_H_
#define SLUICE_PIPELINE_COMPOSITE_AGENT_H_

#include <string>
#include <string_view>
#include <vector>

#include "pipeline/agent.h"

namespace sluice {

class CompositeAgent final : public Agent {
 public:
  // The name defaults to the members' names joined with '+'.
  explicit CompositeAgent(std::vector<Agent*> agents, std::string name = "");

  // Polls every member once; the work done is the sum, so the runner idles only when all are.
  int do_work() override;
  std::string_view name() const override { return name_; }

  // Starts members in order. If one throws, those already started are closed (reverse order)
  // before the exception goes on to the runner.
  void on_start() override;
  // Closes the started members in reverse order; every one is closed even if another throws,
  // and the first exception is rethrown afterwards.
  void on_close() override;

  const std::vector<Agent*>& agents() const { return agents_; }

 private:
  void close_started();

  std::vector<Agent*> agents_;
  std::string name_;
  size_t started_ = 0;
};

}  // namespace sluice

#endif  // SLUICE_PIPELINE_COMPOSITE_AGENT_H_
