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

absl::StatusOr<std::unique_ptr<AlertsLog>> AlertsLog::open(const std::string& path,
                                                         int64_t max_sequence) {
  const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) return io_error(errno, "open alerts log", path);
  std::unique_ptr<AlertsLog> log(new AlertsLog(path, fd));
  struct stat st {};
  if (::fstat(fd, &st) != 0) return io_error(errno, "stat alerts log", path);
  const off_t size = st.st_size;

  // Lines are in sequence order, so what goes (a torn last line, the lines of events after
  // max_sequence) is a suffix. Read a window at the end, growing it until it holds the last line
  // that stays and every line before it with the same sequence.
  off_t keep_end = 0;  // the log is cut here
  for (off_t window = 64 * 1024;; window *= 2) {
    const off_t start = size > window ? size - window : 0;
    std::string text(static_cast<size_t>(size - start), '\0');
    if (!text.empty() &&
        ::pread(fd, text.data(), text.size(), start) != static_cast<ssize_t>(text.size())) {
      return io_error(errno, "read alerts log", path);
    }
    // Complete lines: [begin, newline). The first line of a window that does not start the
    // file may be cut: it is not used.
    struct Line {
      size_t begin;
      size_t newline;
    };
    std::vector<Line> lines;
    size_t begin = 0;
    if (start > 0) {
      const size_t first = text.find('\n');
      begin = first == std::string::npos ? text.size() : first + 1;
    }
    for (size_t nl; (nl = text.find('\n', begin)) != std::string::npos; begin = nl + 1) {
      lines.push_back({begin, nl});
    }
    log->last_seq_ = 0;
    log->last_rules_ = 0;
    log->dropped_ = 0;
    bool found = false;
    bool complete = false;  // every line of the kept sequence was seen
    keep_end = start == 0 ? 0 : -1;
    for (size_t k = lines.size(); k-- > 0;) {
      const absl::string_view line(text.data() + lines[k].begin,
                                   lines[k].newline - lines[k].begin);
      std::vector<absl::string_view> f = absl::StrSplit(line, ',');
      int64_t seq = 0;
      const bool parsed = f.size() == 6 && absl::SimpleAtoi(f[0], &seq);
      if (!found) {
        if (!parsed || seq > max_sequence) {
          if (parsed) ++log->dropped_;
          continue;
        }
        found = true;
        keep_end = start + static_cast<off_t>(lines[k].newline) + 1;
        log->last_seq_ = seq;
      }
      if (!parsed || seq != log->last_seq_) {
        complete = true;
        break;
      }
      const uint16_t rule = rule_code(to_std(f[3]));
      if (rule != 0) log->last_rules_ |= 1u << (rule - 1);
    }
    if (start == 0) complete = true;  // the window is the whole file
    if (complete) break;
  }
  if (keep_end < 0) keep_end = 0;
  if (keep_end != size && ::ftruncate(fd, keep_end) != 0) {
    return io_error(errno, "cut the alerts log", path);
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
