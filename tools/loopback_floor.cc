#include "tools/loopback_floor.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstring>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "core/cache_line.h"
#include "core/clock.h"
#include "tools/load_report.h"

namespace sluice::tools {
namespace {

class Fd {
 public:
  explicit Fd(int fd = -1) noexcept : fd_(fd) {}
  ~Fd() { reset(); }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const noexcept { return fd_; }
  void reset() noexcept {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }

 private:
  int fd_;
};

absl::Status socket_error(std::string_view op) {
  return absl::InternalError(absl::StrCat("loopback ", absl::string_view(op.data(), op.size()),
                                          ": ", std::strerror(errno)));
}

// Moves exactly n bytes; false on a closed socket or an error (errno says which, 0 if closed).
// `spin`: the socket is used with MSG_DONTWAIT and polled.
bool send_all(int fd, const std::byte* data, size_t n, bool spin) noexcept {
  while (n > 0) {
    const ssize_t r = ::send(fd, data, n, MSG_NOSIGNAL | (spin ? MSG_DONTWAIT : 0));
    if (r < 0) {
      if (errno == EINTR) continue;
      if (spin && (errno == EAGAIN || errno == EWOULDBLOCK)) {
        cpu_relax();
        continue;
      }
      return false;
    }
    data += r;
    n -= static_cast<size_t>(r);
  }
  return true;
}

bool recv_all(int fd, std::byte* data, size_t n, bool spin,
              const std::atomic<bool>* quit) noexcept {
  while (n > 0) {
    const ssize_t r = ::recv(fd, data, n, spin ? MSG_DONTWAIT : 0);
    if (r == 0) {
      errno = 0;
      return false;
    }
    if (r < 0) {
      if (errno == EINTR) continue;
      if (spin && (errno == EAGAIN || errno == EWOULDBLOCK)) {
        // Relaxed: only a hint to stop polling; the socket carries all data.
        if (quit != nullptr && quit->load(std::memory_order_relaxed)) return false;
        cpu_relax();
        continue;
      }
      return false;
    }
    data += r;
    n -= static_cast<size_t>(r);
  }
  return true;
}

void set_nodelay(int fd) {
  const int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

// Sleeps until the clock reads `when` (or polls, with spin).
void wait_until(const Clock& clock, int64_t when, bool spin) noexcept {
  while (true) {
    const int64_t left = when - clock.now_ns();
    if (left <= 0) return;
    if (spin) {
      cpu_relax();
      continue;
    }
    const timespec ts{static_cast<time_t>(left / 1'000'000'000),
                      static_cast<long>(left % 1'000'000'000)};
    ::nanosleep(&ts, nullptr);
  }
}

}  // namespace

namespace {

absl::Status check_options(const FloorOptions& options) {
  if (!(options.rate >= 0) || !std::isfinite(options.rate)) {
    return absl::InvalidArgumentError("--rate must be 0 (back to back) or more");
  }
  if (!(options.duration_s > 0) || !std::isfinite(options.duration_s)) {
    return absl::InvalidArgumentError("--duration must be above 0");
  }
  if (!(options.warmup_s >= 0) || !std::isfinite(options.warmup_s)) {
    return absl::InvalidArgumentError("--warmup must be 0 or more");
  }
  if (options.size < 8 || options.size > 65'536) {
    return absl::InvalidArgumentError("--size must be 8..65536 bytes");
  }
  return absl::OkStatus();
}

// Runs round trips on the options' schedule (paced, or back to back for the duration) and
// records them. `once(k)` performs round trip k and returns an empty string, or what went
// wrong; `fatal` (set by once) stops the run after a failure that cannot be retried.
template <typename F>
FloorResult run_round_trips(const FloorOptions& options, F&& once, bool* fatal) {
  const Clock& clock = default_clock();
  FloorResult result;
  result.rate_target = options.rate;
  const bool paced = options.rate > 0;
  const double interval = paced ? 1e9 / options.rate : 0.0;
  const int64_t warmup_ns = std::llround(options.warmup_s * 1e9);
  const int64_t duration_ns = std::llround(options.duration_s * 1e9);
  const int64_t warmup_count = paced ? std::llround(options.warmup_s * options.rate) : 0;
  const int64_t total =
      paced ? warmup_count + std::max<int64_t>(1, std::llround(options.duration_s * options.rate))
            : std::numeric_limits<int64_t>::max();

  const int64_t start = clock.now_ns() + 1'000'000;
  const int64_t measure_start =
      paced ? start + static_cast<int64_t>(static_cast<double>(warmup_count) * interval)
            : start + warmup_ns;
  const int64_t end = start + warmup_ns + duration_ns;  // back-to-back runs stop here
  int64_t next_progress = start + 1'000'000'000;
  int64_t last_measured_send = 0;
  int64_t first_measured_send = 0;
  for (int64_t k = 0; k < total; ++k) {
    // Relaxed: a request to stop early; nothing else is published through it.
    if (options.stop != nullptr && options.stop->load(std::memory_order_relaxed)) break;
    const int64_t intended =
        paced ? start + static_cast<int64_t>(static_cast<double>(k) * interval) : 0;
    if (paced) {
      wait_until(clock, intended, options.spin);
    } else if (k == 0) {
      wait_until(clock, start, options.spin);
    }
    const int64_t t0 = clock.now_ns();
    if (!paced && t0 >= end) break;
    const bool measured = paced ? k >= warmup_count : t0 >= measure_start;
    ++result.sent;
    const std::string error = once(k);
    const int64_t t1 = clock.now_ns();
    if (!error.empty()) {
      ++result.errors;
      if (result.error_messages.size() < 3) result.error_messages.push_back(error);
      if (*fatal) break;
      continue;
    }
    ++result.echoed;
    if (paced && t0 - intended > static_cast<int64_t>(interval)) ++result.late;
    if (measured) {
      result.rtt.record(t1 - t0);
      if (paced) result.send_lag.record(t0 - intended);
      ++result.measured;
      if (first_measured_send == 0) first_measured_send = t0;
      last_measured_send = t0;
    }
    if (options.progress && t1 >= next_progress) {
      options.progress(LoadProgress{.elapsed_s = static_cast<double>(t1 - start) * 1e-9,
                                    .sent = result.sent,
                                    .decided = result.echoed,
                                    .errors = result.errors});
      next_progress += 1'000'000'000;
    }
  }
  const int64_t finished = clock.now_ns();
  result.elapsed_s = static_cast<double>(finished - start) * 1e-9;
  if (result.measured > 0) {
    const double span =
        paced ? static_cast<double>(last_measured_send - measure_start) + interval
              : static_cast<double>(finished - std::max(measure_start, first_measured_send));
    if (span > 0) result.rate_achieved = static_cast<double>(result.measured) * 1e9 / span;
  }
  return result;
}

}  // namespace

absl::StatusOr<FloorResult> run_loopback_floor(const FloorOptions& options) {
  if (!options.fdatasync_dir.empty()) return run_disk_floor(options);
  if (absl::Status s = check_options(options); !s.ok()) return s;
  ::prctl(PR_SET_TIMERSLACK, 1UL, 0, 0, 0);

  Fd listener(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (listener.get() < 0) return socket_error("socket");
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  address.sin_port = 0;  // an ephemeral port: runs never collide
  socklen_t length = sizeof(address);
  if (::bind(listener.get(), reinterpret_cast<sockaddr*>(&address), sizeof(address)) != 0) {
    return socket_error("bind");
  }
  if (::listen(listener.get(), 1) != 0) return socket_error("listen");
  if (::getsockname(listener.get(), reinterpret_cast<sockaddr*>(&address), &length) != 0) {
    return socket_error("getsockname");
  }
  Fd client(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (client.get() < 0) return socket_error("socket");
  if (::connect(client.get(), reinterpret_cast<sockaddr*>(&address), sizeof(address)) != 0) {
    return socket_error("connect");
  }
  Fd served(::accept4(listener.get(), nullptr, nullptr, SOCK_CLOEXEC));
  if (served.get() < 0) return socket_error("accept");
  set_nodelay(client.get());
  set_nodelay(served.get());

  // The echo server: reads whole frames and sends each back, until the client closes.
  std::atomic<bool> quit{false};
  std::thread server([&served, &options, &quit] {
    ::prctl(PR_SET_TIMERSLACK, 1UL, 0, 0, 0);
    std::vector<std::byte> frame(options.size);
    while (recv_all(served.get(), frame.data(), frame.size(), options.spin, &quit) &&
           send_all(served.get(), frame.data(), frame.size(), options.spin)) {
    }
  });

  std::vector<std::byte> out(options.size);
  std::vector<std::byte> back(options.size);
  for (size_t i = 0; i < out.size(); ++i) out[i] = static_cast<std::byte>(i * 7 + 1);
  bool fatal = false;
  FloorResult result = run_round_trips(
      options,
      [&](int64_t k) -> std::string {
        std::memcpy(out.data(), &k, sizeof(k));  // each frame is told apart by its counter
        if (!send_all(client.get(), out.data(), out.size(), options.spin) ||
            !recv_all(client.get(), back.data(), back.size(), options.spin, nullptr)) {
          fatal = true;
          return absl::StrCat("loopback echo: ", errno == 0 ? "closed" : std::strerror(errno));
        }
        if (std::memcmp(out.data(), back.data(), out.size()) != 0) {
          return absl::StrCat("loopback echo of frame ", k, " differs");
        }
        return "";
      },
      &fatal);
  // Release: the server's relaxed poll only needs to see it eventually; shutdown wakes a
  // blocked recv with end-of-stream either way.
  quit.store(true, std::memory_order_release);
  ::shutdown(client.get(), SHUT_RDWR);
  server.join();
  return result;
}

absl::StatusOr<FloorResult> run_disk_floor(const FloorOptions& options) {
  if (absl::Status s = check_options(options); !s.ok()) return s;
  const std::string path = absl::StrCat(options.fdatasync_dir, "/sluice-floor-", ::getpid(), ".tmp");
  Fd fd(::open(path.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
  if (fd.get() < 0) return absl::InternalError(absl::StrCat("create ", path, ": ", std::strerror(errno)));
  // As big as a journal segment, preallocated as one is; the writes walk it once.
  constexpr off_t kFileSize = off_t{128} << 20;
  if (::fallocate(fd.get(), 0, 0, kFileSize) != 0) {
    const int err = errno;
    ::unlink(path.c_str());
    return absl::InternalError(absl::StrCat("fallocate ", path, ": ", std::strerror(err)));
  }
  std::vector<std::byte> block(options.size, std::byte{0x5A});
  off_t offset = 0;
  bool fatal = false;
  FloorResult result = run_round_trips(
      options,
      [&](int64_t) -> std::string {
        if (offset + static_cast<off_t>(block.size()) > kFileSize) offset = 0;
        if (::pwrite(fd.get(), block.data(), block.size(), offset) !=
                static_cast<ssize_t>(block.size()) ||
            ::fdatasync(fd.get()) != 0) {
          fatal = true;
          return absl::StrCat("pwrite + fdatasync ", path, ": ", std::strerror(errno));
        }
        offset += static_cast<off_t>(block.size());
        return "";
      },
      &fatal);
  ::unlink(path.c_str());
  return result;
}

std::string format_floor_json(const FloorOptions& options, const FloorResult& r) {
  std::string out = absl::StrFormat(
      "{\"rate_target\":%s,\"rate_achieved\":%.1f,\"sent\":%d,\"decided\":%d,\"errors\":%d,"
      "\"latency_ns\":%s,\"mode\":%s,\"size\":%d,\"measured\":%d,\"late\":%d,"
      "\"send_lag_ns\":%s,\"duration_s\":%g,\"warmup_s\":%g,\"elapsed_s\":%.3f,"
      "\"error_messages\":[",
      format_rate(r.rate_target), r.rate_achieved, r.sent, r.echoed, r.errors, latency_json(r.rtt),
      json_string(!options.fdatasync_dir.empty() ? "fdatasync"
                  : options.spin                 ? "spin"
                                                 : "blocking"),
      options.size, r.measured, r.late,
      latency_json(r.send_lag), options.duration_s, options.warmup_s, r.elapsed_s);
  for (size_t i = 0; i < r.error_messages.size(); ++i) {
    absl::StrAppend(&out, i == 0 ? "" : ",", json_string(r.error_messages[i]));
  }
  out += "]}";
  return out;
}

std::string format_floor_text(const FloorOptions& options, const FloorResult& r) {
  std::string out;
  if (!options.fdatasync_dir.empty()) {
    absl::StrAppendFormat(&out, "disk: %d-byte pwrite + fdatasync in %s, ", options.size,
                          options.fdatasync_dir);
  } else {
    absl::StrAppendFormat(&out, "loopback TCP echo, %d-byte frames, %s sockets, ", options.size,
                          options.spin ? "polled non-blocking" : "blocking");
  }
  if (options.rate > 0) {
    absl::StrAppendFormat(&out, "%s round trips/s for %g s\n", format_rate(options.rate),
                          options.duration_s);
  } else {
    absl::StrAppendFormat(&out, "back to back for %g s\n", options.duration_s);
  }
  absl::StrAppendFormat(&out,
                        "sent %d, echoed %d, errors %d, late %d; achieved %.1f round trips/s\n",
                        r.sent, r.echoed, r.errors, r.late, r.rate_achieved);
  absl::StrAppendFormat(&out, "round trip (%d measured):\n  %s\n", r.measured, latency_line(r.rtt));
  return out;
}

}  // namespace sluice::tools
