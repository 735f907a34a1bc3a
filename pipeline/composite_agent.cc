#include "pipeline/composite_agent.h"

#include <exception>

#include "absl/strings/str_join.h"

namespace sluice {

CompositeAgent::CompositeAgent(std::vector<Agent*> agents, std::string name)
    : agents_(std::move(agents)), name_(std::move(name)) {
  if (name_.empty()) {
    name_ = absl::StrJoin(agents_, "+", [](std::string* out, const Agent* agent) {
      out->append(agent->name());
    });
  }
}

int CompositeAgent::do_work() {
  int work = 0;
  for (Agent* agent : agents_) work += agent->do_work();
  return work;
}

void CompositeAgent::on_start() {
  try {
    for (; started_ < agents_.size(); ++started_) agents_[started_]->on_start();
  } catch (...) {
    close_started();
    throw;
  }
}

void CompositeAgent::on_close() { close_started(); }

void CompositeAgent::close_started() {
  std::exception_ptr first;
  while (started_ > 0) {
    --started_;
    try {
      agents_[started_]->on_close();
    } catch (...) {
      if (!first) first = std::current_exception();
    }
  }
  if (first) std::rethrow_exception(first);
}

}  // namespace sluice
