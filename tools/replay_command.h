// `sluice replay DIR [--from SEQ] [--to SEQ] [--decisions-out FILE] [--shards N]` (SPEC 3).
#ifndef SLUICE_TOOLS_REPLAY_COMMAND_H_
#define SLUICE_TOOLS_REPLAY_COMMAND_H_

#include "CLI/CLI.hpp"
#include "tools/command.h"

namespace sluice::tools {

void add_replay_command(CLI::App& app, CommandAction* action);

}  // namespace sluice::tools

#endif  // SLUICE_TOOLS_REPLAY_COMMAND_H_
