// Agent: a unit of work that a runner polls on some thread.
//
// do_work() does whatever is ready and returns how much it did (0 = idle); it must not block.
// A deployment maps agents to threads (AgentRunner for one, CompositeAgent for several on one
// thread), so the same stages run on 2 cores or 16.
//
// Thread safety: on_start, do_work and on_close are called from the one thread that runs the
// agent, in that order. A failure is reported by throwing from any of them: the runner catches
// it, reports it with the agent's name and stops (a fault is not control flow: hot paths return
// small enums, and an agent only throws when it cannot go on).
#ifndef SLUICE_PIPELINE_AGENT_H_
#define SLUICE_PIPELINE_AGENT_H_

#include <string_view>

namespace sluice {

class Agent {
 public:
  virtual ~Agent() = default;

  // Does the work that is ready now; returns the number of items handled, 0 when idle.
  virtual int do_work() = 0;
  virtual std::string_view name() const = 0;

  // Called once on the agent's thread before the first do_work / after the last.
  virtual void on_start() {}
  virtual void on_close() {}
};

}  // namespace sluice

#endif  // SLUICE_PIPELINE_AGENT_H_
