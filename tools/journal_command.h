// `sluice journal info|dump|verify DIR` (docs/journal.md): look inside a journal directory.
//   info    segments, sequence range, record count, bytes, ingest time span, torn tail
//   dump    one record a line (key=value, pipe-friendly), optionally --from/--to a sequence
//   verify  reads everything, checking every CRC; exit 0 intact (a torn tail is a note),
//           1 corrupt ("sluice: journal corrupt: <segment> offset <N>: <what>" on stderr)
// A missing directory is bad usage (exit 2).
//
// Thread safety: single-threaded tool code.
#ifndef SLUICE_TOOLS_JOURNAL_COMMAND_H_
#define SLUICE_TOOLS_JOURNAL_COMMAND_H_

#include "CLI/CLI.hpp"
#include "tools/command.h"

namespace sluice::tools {

// Adds `journal` and its subcommands to `app`. When one is chosen, parsing sets *action to run
// it. REQUIRES: `action` outlives app.parse().
void add_journal_command(CLI::App& app, CommandAction* action);

}  // namespace sluice::tools

#endif  // SLUICE_TOOLS_JOURNAL_COMMAND_H_
