#include "io/alerts_log.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <string_view>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "core/absl_compat.h"
#include "core/wire_format.h"
#include "io/io_error.h"

namespace sluice {
namespace {

// The rule code of a rule name, 0 if unknown.
uint16_t rule_code(std::string_view name) {
  for (uint16_t r = 1; r <= 6; ++r) {
    if (wire::rule_name(static_cast<wire::Rule>(r)) == name) return r;
  }
  return 0;
}

}  // namespace

absl::StatusOr<std::unique_ptr<AlertsLog>> AlertsLog::open(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) return io_error(errno, "open alerts log", path);
  std::unique_ptr<AlertsLog> log(new AlertsLog(path, fd));
  struct stat st {};
  if (::fstat(fd, &st) != 0) return io_error(errno, "stat alerts log", path);
  // Read the tail: the last complete lines say what the log already holds.
  const off_t size = st.st_size;
  const off_t tail = size > 64 * 1024 ? size - 64 * 1024 : 0;
  std::string text(static_cast<size_t>(size - tail), '\0');
  if (!text.empty() && ::pread(fd, text.data(), text.size(), tail) != static_cast<ssize_t>(text.size())) {
    return io_error(errno, "read alerts log", path);
  }
  const size_t last_newline = text.rfind('\n');
  const off_t good_end = last_newline == std::string::npos ? tail : tail + static_cast<off_t>(last_newline) + 1;
  if (good_end != size && ::ftruncate(fd, good_end) != 0) {
    return io_error(errno, "cut the torn last line of alerts log", path);
  }
  if (last_newline != std::string::npos) {
    text.resize(last_newline);
    // Walk the complete lines of the tail (the first may be cut by the 64 KiB window: it only
    // matters if it has the last seq, and then a later line has it too, or it parses anyway).
    for (absl::string_view line : absl::StrSplit(text, '\n')) {
      std::vector<absl::string_view> f = absl::StrSplit(line, ',');
      int64_t seq = 0;
      if (f.size() != 6 || !absl::SimpleAtoi(f[0], &seq)) continue;
      const uint16_t rule = rule_code(to_std(f[3]));
      if (seq > log->last_seq_) {
        log->last_seq_ = seq;
        log->last_rules_ = 0;
      }
      if (seq == log->last_seq_ && rule != 0) log->last_rules_ |= 1u << (rule - 1);
    }
  }
  if (::lseek(fd, 0, SEEK_END) < 0) return io_error(errno, "seek alerts log", path);
  return log;
}

AlertsLog::~AlertsLog() {
  (void)flush();
  ::close(fd_);
}

void AlertsLog::add(const OutputEvent& a) {
  const uint32_t bit = a.rule >= 1 && a.rule <= 32 ? 1u << (a.rule - 1) : 0;
  if (a.seq < last_seq_) return;
  if (a.seq == last_seq_ && (last_rules_ & bit) != 0) return;
  if (a.seq > last_seq_) {
    last_seq_ = a.seq;
    last_rules_ = 0;
  }
  last_rules_ |= bit;
  absl::StrAppend(&buffer_, a.seq, ",", a.event_time_ns, ",", a.account_id, ",",
                  to_absl(wire::rule_name(static_cast<wire::Rule>(a.rule))), ",", a.value, ",",
                  a.threshold, "\n");
  ++lines_;
}

absl::Status AlertsLog::flush() {
  size_t done = 0;
  while (done < buffer_.size()) {
    const ssize_t n = ::write(fd_, buffer_.data() + done, buffer_.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      buffer_.erase(0, done);
      return io_error(errno, "write alerts log", path_);
    }
    done += static_cast<size_t>(n);
  }
  buffer_.clear();
  return absl::OkStatus();
}

absl::Status AlertsLog::sync() {
  if (::fdatasync(fd_) != 0) return io_error(errno, "fdatasync alerts log", path_);
  return absl::OkStatus();
}

}  // namespace sluice
