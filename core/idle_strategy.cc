#include "core/idle_strategy.h"

#include <sched.h>
#include <time.h>

#include <algorithm>
#include <string>

#include "absl/strings/str_cat.h"
#include "core/absl_compat.h"
#include "core/cache_line.h"

namespace sluice {

absl::StatusOr<IdleKind> parse_idle_kind(std::string_view name) {
  if (name == "busy" || name == "busy-spin") return IdleKind::kBusySpin;
  if (name == "yield") return IdleKind::kYield;
  if (name == "backoff") return IdleKind::kBackoff;
  return absl::InvalidArgumentError(
      absl::StrCat("idle strategy '", to_absl(name), "' is not one of busy, yield, backoff"));
}

std::string_view idle_kind_name(IdleKind kind) {
  switch (kind) {
    case IdleKind::kBusySpin:
      return "busy";
    case IdleKind::kYield:
      return "yield";
    case IdleKind::kBackoff:
      return "backoff";
  }
  return "?";
}

void IdleStrategy::idle() noexcept {
  switch (config_.kind) {
    case IdleKind::kBusySpin:
      cpu_relax();
      return;
    case IdleKind::kYield:
      sched_yield();
      return;
    case IdleKind::kBackoff:
      if (spins_ < config_.max_spins) {
        ++spins_;
        cpu_relax();
      } else if (yields_ < config_.max_yields) {
        ++yields_;
        sched_yield();
      } else if (config_.parker != nullptr) {
        config_.parker->park(park_ns_);
        park_ns_ = std::min(park_ns_ * 2, config_.max_park_ns);
      } else {
        timespec ts{static_cast<time_t>(park_ns_ / 1'000'000'000),
                    static_cast<long>(park_ns_ % 1'000'000'000)};
        nanosleep(&ts, nullptr);
        park_ns_ = std::min(park_ns_ * 2, config_.max_park_ns);
      }
      return;
  }
}

}  // namespace sluice
