// `sluice stat [DIR] [--once] [--json] [--interval SECONDS]`: a running daemon's counters and
// latency percentiles, read from the stats file in its data directory (io/stats_file.h).
#ifndef SLUICE_TOOLS_STAT_COMMAND_H_
#define SLUICE_TOOLS_STAT_COMMAND_H_

#include "CLI/CLI.hpp"
#include "tools/command.h"

namespace sluice::tools {

void add_stat_command(CLI::App& app, CommandAction* action);

}  // namespace sluice::tools

#endif  // SLUICE_TOOLS_STAT_COMMAND_H_
