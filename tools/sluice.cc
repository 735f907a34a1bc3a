// sluice: the command-line tool (SPEC section 3). main parses and dispatches; each subcommand
// lives in its own file (tools/journal_command.cc ...) and registers itself here.
#include <csignal>
#include <string>

#include "CLI/CLI.hpp"
#include "tools/command.h"
#include "tools/journal_command.h"
#include "tools/load_command.h"
#include "tools/replay_command.h"
#include "tools/snapshot_command.h"
#include "tools/stat_command.h"

namespace {

// "sluice journal dump": the subcommands the parser had entered when it failed, for the error.
std::string command_path(const CLI::App& app) {
  std::string path = "sluice";
  const CLI::App* at = &app;
  while (!at->get_subcommands().empty()) {
    at = at->get_subcommands().front();
    path += " " + at->get_name();
  }
  return path;
}

}  // namespace

int main(int argc, char** argv) {
  // Output goes to pipes (`sluice journal dump DIR | head`): a closed pipe must show up as
  // EPIPE from write, which the commands treat as "stop quietly", not as a fatal signal.
  std::signal(SIGPIPE, SIG_IGN);

  CLI::App app{"sluice: look inside a sluice data directory, replay it, load a daemon"};
  app.name("sluice");
  app.require_subcommand(1);
  sluice::tools::CommandAction action;
  sluice::tools::add_journal_command(app, &action);
  sluice::tools::add_replay_command(app, &action);
  sluice::tools::add_snapshot_command(app, &action);
  sluice::tools::add_stat_command(app, &action);
  sluice::tools::add_load_command(app, &action);
  sluice::tools::add_floor_command(app, &action);

  try {
    app.parse(argc, argv);
  } catch (const CLI::Success& e) {  // --help
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    const std::string where = command_path(app);
    const std::string prefix = where == "sluice" ? std::string() : where.substr(7) + ": ";
    sluice::tools::print_error(prefix + e.what() + " (see '" + where + " --help')");
    return sluice::tools::kExitUsage;
  }
  if (!action) {
    sluice::tools::print_error("no command given (see 'sluice --help')");
    return sluice::tools::kExitUsage;
  }
  return action();
}
