// What every `sluice` subcommand shares: the exit statuses of SPEC section 3, the action a
// subcommand leaves to run once the whole command line parsed, and the one-line error format.
//
// A subcommand lives in its own source file (tools/journal_command.cc ...) with an
// add_<name>_command(CLI::App&, CommandAction*) that registers its options; tools/sluice.cc
// parses, turns parse errors into exit status 2 in one place, then runs the chosen action.
//
// Thread safety: single-threaded tool code.
#ifndef SLUICE_TOOLS_COMMAND_H_
#define SLUICE_TOOLS_COMMAND_H_

#include <algorithm>
#include <cstdio>
#include <functional>
#include <string>
#include <string_view>

namespace sluice::tools {

inline constexpr int kExitOk = 0;
inline constexpr int kExitFailed = 1;  // the check or run failed (e.g. a corrupt journal)
inline constexpr int kExitUsage = 2;   // bad command line, or a path that is not there

// Runs the subcommand chosen on the command line; returns the exit status.
using CommandAction = std::function<int()>;

// "sluice: <message>" as one line on stderr (newlines in the message become spaces, so each
// error stays one line for whoever greps the output).
inline void print_error(std::string_view message) {
  std::string line = "sluice: ";
  line.append(message);
  std::replace(line.begin(), line.end(), '\n', ' ');
  line.push_back('\n');
  std::fwrite(line.data(), 1, line.size(), stderr);
}

}  // namespace sluice::tools

#endif  // SLUICE_TOOLS_COMMAND_H_
