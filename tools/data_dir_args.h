// What the `sluice` subcommands accept as DIR: a daemon's data directory (journal/,
// snapshots/, config.toml, stats: docs/daemon.md) or the journal or snapshot directory itself,
// and the processor thresholds a replay of it must use.
//
// Thread safety: pure functions over the file system.
#ifndef SLUICE_TOOLS_DATA_DIR_ARGS_H_
#define SLUICE_TOOLS_DATA_DIR_ARGS_H_

#include <string>

#include "absl/status/statusor.h"
#include "pipeline/processor.h"

namespace sluice::tools {

// DIR/journal when DIR is a data directory, else DIR.
std::string journal_dir_of(const std::string& dir);
// DIR/snapshots when DIR is a data directory holding one, else "".
std::string snapshot_dir_of(const std::string& dir);

// The thresholds a replay of DIR runs with, so it reproduces the daemon's decisions: those of
// `config_file` (a sluiced TOML config) when given, else those the daemon recorded in
// DIR/config.toml when it ran, else SPEC's defaults. *source says which, for the output.
absl::StatusOr<ProcessorConfig> processor_config_of(const std::string& dir,
                                                    const std::string& config_file,
                                                    std::string* source);

}  // namespace sluice::tools

#endif  // SLUICE_TOOLS_DATA_DIR_ARGS_H_
