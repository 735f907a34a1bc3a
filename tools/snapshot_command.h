// `sluice snapshot info|verify DIR` (docs/snapshots.md): look inside a snapshot directory.
//   info    one line per snapshot file (shard, count, sequence, maxT, entries, bytes, created,
//           ok or why not) and the complete set recovery would start from
//   verify  reads every file, checking header, CRCs and name; exit 0 all valid, 1 naming each
//           bad file and why ("sluice: snapshot verify: <file>: <why>" on stderr)
// DIR is a snapshot directory or a data directory holding one in snapshots/. A missing
// directory is bad usage (exit 2).
//
// Thread safety: single-threaded tool code.
#ifndef SLUICE_TOOLS_SNAPSHOT_COMMAND_H_
#define SLUICE_TOOLS_SNAPSHOT_COMMAND_H_

#include "CLI/CLI.hpp"
#include "tools/command.h"

namespace sluice::tools {

// Adds `snapshot` and its subcommands to `app`. REQUIRES: `action` outlives app.parse().
void add_snapshot_command(CLI::App& app, CommandAction* action);

}  // namespace sluice::tools

#endif  // SLUICE_TOOLS_SNAPSHOT_COMMAND_H_
