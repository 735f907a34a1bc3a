#include "io/data_dir.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <filesystem>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "io/io_error.h"

namespace sluice {

DataDirPaths data_dir_paths(const std::string& root) {
  const std::filesystem::path r(root);
  return DataDirPaths{.root = root,
                      .lock = (r / "LOCK").string(),
                      .journal = (r / "journal").string(),
                      .snapshots = (r / "snapshots").string(),
                      .alerts_log = (r / "alerts.log").string(),
                      .stats = (r / "stats").string(),
                      .config = (r / "config.toml").string()};
}

absl::StatusOr<std::unique_ptr<DataDirLock>> DataDirLock::acquire(const std::string& root) {
  std::error_code ec;
  std::filesystem::create_directories(root, ec);
  if (ec) return io_error(ec.value(), "create data directory", root);
  const std::string path = data_dir_paths(root).lock;
  const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) return io_error(errno, "open lock file", path);
  if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    const int err = errno;
    char buf[32] = {};
    const ssize_t n = ::pread(fd, buf, sizeof(buf) - 1, 0);
    ::close(fd);
    if (err != EWOULDBLOCK) return io_error(err, "lock", path);
    const std::string holder(
        n > 0 ? absl::StripAsciiWhitespace(absl::string_view(buf, static_cast<size_t>(n)))
              : absl::string_view());
    return absl::FailedPreconditionError(absl::StrCat(
        "data directory ", root, " is in use by another sluiced",
        holder.empty() ? std::string() : absl::StrCat(" (pid ", holder, ")"), "; lock file ", path));
  }
  const std::string pid = absl::StrCat(::getpid(), "\n");
  if (::ftruncate(fd, 0) != 0 || ::pwrite(fd, pid.data(), pid.size(), 0) != static_cast<ssize_t>(pid.size())) {
    const int err = errno;
    ::close(fd);
    return io_error(err, "write pid to", path);
  }
  return std::unique_ptr<DataDirLock>(new DataDirLock(fd));
}

DataDirLock::~DataDirLock() {
  // Closing releases the flock; the file stays (removing it would race with a new daemon that
  // already opened it).
  ::close(fd_);
}

}  // namespace sluice
