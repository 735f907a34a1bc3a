#include "tools/data_dir_args.h"

#include <filesystem>

#include "io/data_dir.h"
#include "pipeline/daemon_config.h"

namespace sluice::tools {
namespace {

namespace fs = std::filesystem;

bool is_data_dir(const std::string& dir) {
  std::error_code ec;
  return fs::is_directory(fs::path(dir) / "journal", ec);
}

}  // namespace

std::string journal_dir_of(const std::string& dir) {
  return is_data_dir(dir) ? data_dir_paths(dir).journal : dir;
}

std::string snapshot_dir_of(const std::string& dir) {
  if (!is_data_dir(dir)) return "";
  std::error_code ec;
  const std::string snapshots = data_dir_paths(dir).snapshots;
  return fs::is_directory(snapshots, ec) ? snapshots : "";
}

absl::StatusOr<ProcessorConfig> processor_config_of(const std::string& dir,
                                                    const std::string& config_file,
                                                    std::string* source) {
  std::string path = config_file;
  if (path.empty() && is_data_dir(dir)) {
    std::error_code ec;
    const std::string recorded = data_dir_paths(dir).config;
    if (fs::is_regular_file(recorded, ec)) path = recorded;
  }
  if (path.empty()) {
    *source = "the built-in defaults";
    return ProcessorConfig{};
  }
  auto config = load_config_file(path, DaemonConfig{});
  if (!config.ok()) return config.status();
  *source = path;
  return config->processors;
}

}  // namespace sluice::tools
