// `sluice load --target HOST:PORT --rate N --duration SECONDS --connections N
//  --mix fraud|risk|both [--accounts N] [--json] [--hgrm FILE] ...` (SPEC 3), and
// `sluice floor [--rate N] [--duration S] [--size BYTES] [--json] [--hgrm FILE]`, the loopback
// floor measured beside it. docs/load.md describes both.
#ifndef SLUICE_TOOLS_LOAD_COMMAND_H_
#define SLUICE_TOOLS_LOAD_COMMAND_H_

#include "CLI/CLI.hpp"
#include "tools/command.h"

namespace sluice::tools {

void add_load_command(CLI::App& app, CommandAction* action);
void add_floor_command(CLI::App& app, CommandAction* action);

}  // namespace sluice::tools

#endif  // SLUICE_TOOLS_LOAD_COMMAND_H_
