// Runs a built executable (sluice, sluiced) as a child process for the CLI and integration
// tests: argv, stdout and stderr captured through files in a scratch directory, the exit status
// (128 + signal when it was killed).
#ifndef SLUICE_TESTS_TOOLS_TOOL_RUN_H_
#define SLUICE_TESTS_TOOLS_TOOL_RUN_H_

#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>

#include <fstream>
#include <string>
#include <vector>

#include "tests/test_util.h"

extern char** environ;

namespace sluice::testing {

struct ToolRun {
  int exit_code = -1;
  std::string out;
  std::string err;
};

// Starts `program args...` with stdin from /dev/null and stdout and stderr going to the given
// files (appended to); returns the pid, or -1.
inline pid_t spawn_tool(const std::string& program, const std::vector<std::string>& args,
                        const std::string& out_path, const std::string& err_path) {
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&actions, 1, out_path.c_str(),
                                   O_WRONLY | O_CREAT | O_APPEND, 0644);
  posix_spawn_file_actions_addopen(&actions, 2, err_path.c_str(),
                                   O_WRONLY | O_CREAT | O_APPEND, 0644);
  std::vector<std::string> argv_strings = {program};
  argv_strings.insert(argv_strings.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (std::string& s : argv_strings) argv.push_back(s.data());
  argv.push_back(nullptr);
  pid_t pid = 0;
  const int rc = posix_spawn(&pid, program.c_str(), &actions, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  return rc == 0 ? pid : -1;
}

// The exit status of `pid` once it ends (128 + signal if killed), -1 if it cannot be waited.
inline int wait_tool(pid_t pid) {
  int status = 0;
  if (::waitpid(pid, &status, 0) != pid) return -1;
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return WEXITSTATUS(status);
}

// Runs `program args...` to completion; scratch_dir holds the captured output files.
inline ToolRun run_tool(const std::string& program, const std::vector<std::string>& args,
                        const std::string& scratch_dir) {
  const std::string out_path = scratch_dir + "/stdout";
  const std::string err_path = scratch_dir + "/stderr";
  std::ofstream(out_path, std::ios::trunc).close();
  std::ofstream(err_path, std::ios::trunc).close();
  ToolRun r;
  const pid_t pid = spawn_tool(program, args, out_path, err_path);
  if (pid > 0) r.exit_code = wait_tool(pid);
  r.out = read_file(out_path);
  r.err = read_file(err_path);
  return r;
}

}  // namespace sluice::testing

#endif  // SLUICE_TESTS_TOOLS_TOOL_RUN_H_
