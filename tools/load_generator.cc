#include "tools/load_generator.h"

#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sched.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstring>
#include <memory>
#include <span>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "core/absl_compat.h"
#include "core/cache_line.h"
#include "core/clock.h"
#include "core/counter.h"
#include "core/wire_format.h"

namespace sluice::tools {
namespace {

constexpr size_t kSendBufferSize = 64 * 1024;
constexpr size_t kRecvBufferSize = 256 * 1024;
// Shorter waits yield instead of entering ppoll: the syscall and wake-up cost about as much.
constexpr int64_t kMinSleepNs = 2'000;
// Bounds of the learned wake-up latency (see Worker::wait): a first guess, and a cap so one
// long preemption cannot turn sleeping into yielding for good.
constexpr int64_t kInitialWakeLatencyNs = 10'000;
constexpr int64_t kMaxWakeLatencyNs = 200'000;
// The longest single sleep, so a stop request is seen promptly.
constexpr int64_t kMaxSleepNs = 50'000'000;
// At most this many error lines are kept per connection (the count is always exact).
constexpr size_t kMaxMessagesPerConnection = 3;
// The decided bitmap takes one bit per event: 2^33 events is 1 GiB.
constexpr int64_t kMaxEvents = int64_t{1} << 33;
// Event time stays far inside int64 for runs of days; the senders' jitter (~ms) times the scale
// stays under the default allowed lateness (5 s).
constexpr double kMaxTimeScale = 1000;

int64_t seconds_to_ns(double s) { return static_cast<int64_t>(std::llround(s * 1e9)); }

std::string errno_text(int e) { return std::strerror(e); }

// When each event is due. Global event k goes to connection k % connections at
// start + k * interval; the first `warmup` global events are not measured.
struct Schedule {
  int64_t start_ns = 0;
  double interval_ns = 0;
  uint32_t connections = 1;
  int64_t total = 0;
  int64_t warmup = 0;
  // Event time: the wall clock, or with a time scale, origin + (wall clock - origin) * scale.
  int64_t event_time_origin_ns = 0;
  double time_scale = 1;

  int64_t event_time(int64_t realtime) const noexcept {
    if (time_scale == 1) return realtime;
    return event_time_origin_ns +
           std::llround(static_cast<double>(realtime - event_time_origin_ns) * time_scale);
  }
  int64_t global(uint32_t connection, int64_t j) const noexcept {
    return j * connections + connection;
  }
  int64_t intended(uint32_t connection, int64_t j) const noexcept {
    return start_ns +
           static_cast<int64_t>(static_cast<double>(global(connection, j)) * interval_ns);
  }
  int64_t per_connection(uint32_t connection) const noexcept {
    return total > connection ? (total - connection + connections - 1) / connections : 0;
  }
  int64_t measure_start_ns() const noexcept {
    return start_ns + static_cast<int64_t>(static_cast<double>(warmup) * interval_ns);
  }
  int64_t last_ns() const noexcept {
    return start_ns +
           static_cast<int64_t>(static_cast<double>(std::max<int64_t>(total - 1, 0)) * interval_ns);
  }
};

// One TCP connection and everything the worker that owns it knows about it.
struct Connection {
  Connection(uint32_t index_in, const WorkloadOptions& workload_options)
      : index(index_in),
        workload(workload_options, index_in),
        out(kSendBufferSize),
        in(kRecvBufferSize) {}
  ~Connection() {
    if (fd >= 0) ::close(fd);
  }
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  bool done() const noexcept { return failed || decided >= scheduled; }
  size_t free_space() const noexcept { return out.size() - (out_tail - out_scan); }

  uint32_t index;
  int fd = -1;
  uint64_t client_id = 0;
  uint64_t last_client_seq = 0;
  int64_t scheduled = 0;
  int64_t next = 0;  // events encoded into `out` so far
  int64_t sent = 0;  // events whose last byte the kernel accepted
  int64_t measured_sent = 0;
  int64_t decided = 0;
  int64_t last_send_ns = 0;      // when the last measured event left
  int64_t last_decision_ns = 0;  // when the last measured decision arrived
  bool want_write = false;       // the socket buffer is full: wait for POLLOUT
  bool failed = false;
  int64_t errors = 0;
  std::vector<std::string> messages;
  std::vector<uint64_t> decided_bits;
  LoadWorkload workload;
  // out: [out_scan, out_head) was sent but ends inside a frame not yet complete;
  // [out_head, out_tail) is still to send. Frames are contiguous from out_scan.
  std::vector<std::byte> out;
  size_t out_scan = 0;
  size_t out_head = 0;
  size_t out_tail = 0;
  std::vector<std::byte> in;
  size_t in_len = 0;
};

std::string connection_prefix(const Connection& c, const std::string& target) {
  std::string prefix = absl::StrCat("connection ", c.index, " to ", target);
  if (c.client_id != 0) absl::StrAppend(&prefix, " (client_id ", c.client_id, ")");
  return prefix + ": ";
}

// Drives a set of connections on one thread: the send/receive loop of the whole run.
class Worker {
 public:
  Worker(const LoadOptions& options, const Schedule& schedule, std::vector<Connection*> connections)
      : options_(options),
        schedule_(schedule),
        connections_(std::move(connections)),
        fds_(connections_.size()) {}

  void run() noexcept {
    // ppoll timeouts are microseconds apart at high rates; the default 50 us slack would make
    // every short sleep overshoot by that much.
    ::prctl(PR_SET_TIMERSLACK, 1UL, 0, 0, 0);
    const Clock& clock = default_clock();
    const int64_t drain_ns = seconds_to_ns(options_.drain_timeout_s);
    int64_t deadline = schedule_.last_ns() + drain_ns;
    bool stopping = false;
    while (true) {
      const int64_t now = clock.now_ns();
      // Acquire: pairs with the release store of whoever asked us to stop (only the flag is
      // read, but a stronger order costs nothing here and keeps the reasoning simple).
      if (!stopping && options_.stop != nullptr && options_.stop->load(std::memory_order_acquire)) {
        stopping = true;
        for (Connection* c : connections_) c->scheduled = c->next;
        deadline = std::min(deadline, now + drain_ns);
      }
      int work = 0;
      for (Connection* c : connections_) {
        if (c->done()) continue;
        work += fill(*c, now);
        work += flush(*c);
      }
      for (Connection* c : connections_) {
        if (!c->done()) work += receive(*c, clock);
      }
      publish_progress();
      if (std::all_of(connections_.begin(), connections_.end(),
                      [](const Connection* c) { return c->done(); })) {
        break;
      }
      if (now >= deadline) break;
      if (work == 0) wait(clock, deadline);
    }
    publish_progress();
    // Release: the caller's acquire load of finished_ then sees every result this thread wrote.
    finished_.store(true, std::memory_order_release);
  }

  bool finished() const noexcept { return finished_.load(std::memory_order_acquire); }
  int64_t sent() const noexcept { return sent_.get(); }
  int64_t decided() const noexcept { return decided_.get(); }
  int64_t errors() const noexcept { return errors_.get(); }

  // Read after the thread is joined.
  const Histogram& latency() const noexcept { return latency_; }
  const Histogram& send_lag() const noexcept { return send_lag_; }
  int64_t measured() const noexcept { return measured_; }
  int64_t alerts() const noexcept { return alerts_; }
  const std::array<int64_t, 6>& verdicts() const noexcept { return verdicts_; }

 private:
  // Encodes every event of c that is due by now, as far as the buffer allows.
  int fill(Connection& c, int64_t now) noexcept {
    if (c.next >= c.scheduled || schedule_.intended(c.index, c.next) > now) return 0;
    if (c.out.size() - c.out_tail < LoadWorkload::kMaxEventSize && c.out_scan > 0) {
      // Move the unsent tail to the front; frames before out_scan are gone for good.
      std::memmove(c.out.data(), c.out.data() + c.out_scan, c.out_tail - c.out_scan);
      c.out_head -= c.out_scan;
      c.out_tail -= c.out_scan;
      c.out_scan = 0;
    }
    // One wall-clock read per pass: events encoded together carry the same event time.
    const int64_t event_time = schedule_.event_time(realtime_ns());
    int n = 0;
    while (c.next < c.scheduled && c.out.size() - c.out_tail >= LoadWorkload::kMaxEventSize &&
           schedule_.intended(c.index, c.next) <= now) {
      const uint64_t client_seq = c.last_client_seq + 1 + static_cast<uint64_t>(c.next);
      c.out_tail += c.workload.encode_next(
          client_seq, event_time,
          std::span<std::byte>(c.out.data() + c.out_tail, LoadWorkload::kMaxEventSize));
      ++c.next;
      ++n;
    }
    return n;
  }

  // One send() of everything c has pending.
  int flush(Connection& c) noexcept {
    if (c.out_head == c.out_tail || c.want_write || c.failed) return 0;
    const size_t pending = c.out_tail - c.out_head;
    // Send lag is how late the generator got to send, so it is stamped before the call: on
    // loopback the send itself runs the receiver's TCP input and wakes it, which takes
    // microseconds and belongs to the round trip, not to the generator's lateness.
    const int64_t send_ns = default_clock().now_ns();
    const ssize_t r = ::send(c.fd, c.out.data() + c.out_head, pending, MSG_DONTWAIT | MSG_NOSIGNAL);
    if (r < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK) {
        c.want_write = true;
      } else if (errno != EINTR) {
        fail_io(c, "send", errno);
      }
      return 0;
    }
    c.out_head += static_cast<size_t>(r);
    // Count the frames this send completed (each frame's length is in its header).
    while (c.out_head - c.out_scan >= wire::kHeaderSize) {
      const size_t length = wire::load<uint16_t>(c.out.data() + c.out_scan);
      if (c.out_scan + length > c.out_head) break;
      c.out_scan += length;
      const int64_t j = c.sent++;
      if (schedule_.global(c.index, j) >= schedule_.warmup) {
        send_lag_.record(send_ns - schedule_.intended(c.index, j));
        ++c.measured_sent;
        c.last_send_ns = send_ns;
      }
    }
    if (c.out_head == c.out_tail) c.out_scan = c.out_head = c.out_tail = 0;
    // A short send means the socket buffer is full; another send would only say EAGAIN.
    if (static_cast<size_t>(r) < pending) c.want_write = true;
    return 1;
  }

  // One recv() on c, and every whole frame it completes.
  int receive(Connection& c, const Clock& clock) noexcept {
    const ssize_t r = ::recv(c.fd, c.in.data() + c.in_len, c.in.size() - c.in_len, MSG_DONTWAIT);
    if (r < 0) {
      if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) fail_io(c, "recv", errno);
      return 0;
    }
    if (r == 0) {
      fail(c, "closed by the server");
      return 1;
    }
    const int64_t arrival = clock.now_ns();
    c.in_len += static_cast<size_t>(r);
    size_t pos = 0;
    while (c.in_len - pos >= wire::kHeaderSize && !c.failed) {
      const std::byte* frame = c.in.data() + pos;
      const wire::FrameHeader h = wire::decode_header(frame);
      const size_t min_length = wire::kHeaderSize + wire::min_payload(h.type);
      if (h.length < min_length || h.length > wire::kMaxFrameSize || h.version == 0) {
        fail(c, absl::StrFormat("malformed frame from the server (length %d, type 0x%02x, "
                                "version %d)",
                                h.length, h.type, h.version));
        break;
      }
      if (c.in_len - pos < h.length) break;
      const std::span<const std::byte> span(frame, h.length);
      switch (static_cast<wire::FrameType>(h.type)) {
        case wire::FrameType::kDecision:
          on_decision(c, wire::decode_decision(span), arrival);
          break;
        case wire::FrameType::kAlert:
          ++alerts_;
          break;
        case wire::FrameType::kError: {
          const auto code = wire::load<uint16_t>(frame + wire::kHeaderSize);
          const auto* text = reinterpret_cast<const char*>(frame + wire::kHeaderSize + 4);
          fail(c, absl::StrCat("the server sent ERROR ", code, ": ",
                               absl::string_view(text, h.length - wire::kHeaderSize - 4)));
          break;
        }
        case wire::FrameType::kHelloAck:
          note(c, "unexpected HELLO_ACK after the handshake");
          break;
        default:
          break;  // unknown types are skipped by their length (SPEC 1.5)
      }
      pos += h.length;
    }
    std::memmove(c.in.data(), c.in.data() + pos, c.in_len - pos);
    c.in_len -= pos;
    return 1;
  }

  void on_decision(Connection& c, const wire::Decision& d, int64_t arrival) noexcept {
    if (d.client_seq <= c.last_client_seq ||
        d.client_seq - c.last_client_seq > static_cast<uint64_t>(c.next)) {
      note(c, absl::StrCat("DECISION for client_seq ", d.client_seq, ", which was never sent"));
      return;
    }
    const auto j = static_cast<int64_t>(d.client_seq - c.last_client_seq - 1);
    uint64_t& word = c.decided_bits[static_cast<size_t>(j >> 6)];
    const uint64_t bit = uint64_t{1} << (j & 63);
    if ((word & bit) != 0) {
      note(c, absl::StrCat("a second DECISION for client_seq ", d.client_seq));
      return;
    }
    word |= bit;
    ++c.decided;
    const auto verdict = static_cast<size_t>(d.verdict);
    if (verdict < verdicts_.size()) {
      ++verdicts_[verdict];
    } else {
      note(c, absl::StrCat("unknown verdict ", verdict, " for client_seq ", d.client_seq));
    }
    if (schedule_.global(c.index, j) >= schedule_.warmup) {
      latency_.record(arrival - schedule_.intended(c.index, j));
      ++measured_;
      c.last_decision_ns = arrival;
    }
  }

  // Sleeps until the next event is due, a decision arrives, a full socket drains, or the
  // deadline, whichever is first.
  //
  // A thread woken from ppoll() runs some microseconds after its timeout (tens on a VM), and
  // that lateness would be charged to every event as latency. So the worker learns how late
  // its timed wake-ups run (a moving average) and asks to be woken that much before the event
  // is due; what is left of the wait it yields away. Waits shorter than the wake-up latency
  // are yielded entirely: at high rates the thread stays runnable but gives its CPU to any
  // other thread that wants it.
  void wait(const Clock& clock, int64_t deadline) noexcept {
    const int64_t now = clock.now_ns();
    int64_t wake = deadline;
    bool event_due = false;
    for (const Connection* c : connections_) {
      if (c->done() || c->next >= c->scheduled) continue;
      if (c->free_space() >= LoadWorkload::kMaxEventSize) {
        const int64_t due = schedule_.intended(c->index, c->next);
        if (due < wake) {
          wake = due;
          event_due = true;
        }
      }
    }
    const int64_t timeout = wake - now;
    if (timeout <= 0) return;
    if (options_.spin) {
      cpu_relax();
      return;
    }
    const int64_t early = event_due ? wake_latency_ns_ : 0;
    if (timeout < early + kMinSleepNs) {
      sched_yield();
      return;
    }
    for (size_t i = 0; i < connections_.size(); ++i) {
      const Connection* c = connections_[i];
      fds_[i].fd = c->done() ? -1 : c->fd;
      fds_[i].events = static_cast<short>(POLLIN | (c->want_write ? POLLOUT : 0));
      fds_[i].revents = 0;
    }
    const int64_t sleep_ns = std::min(timeout - early, kMaxSleepNs);
    const timespec ts{static_cast<time_t>(sleep_ns / 1'000'000'000),
                      static_cast<long>(sleep_ns % 1'000'000'000)};
    const int ready = ::ppoll(fds_.data(), fds_.size(), &ts, nullptr);
    if (ready == 0 && event_due && sleep_ns < kMaxSleepNs) {
      // Timed out: how late did it wake? Moving average over ~8 wake-ups.
      const int64_t late =
          std::clamp<int64_t>(clock.now_ns() - now - sleep_ns, 0, kMaxWakeLatencyNs);
      wake_latency_ns_ += (late - wake_latency_ns_) / 8;
    }
    if (ready <= 0) return;
    for (size_t i = 0; i < connections_.size(); ++i) {
      if ((fds_[i].revents & (POLLOUT | POLLERR | POLLHUP)) != 0) {
        connections_[i]->want_write = false;
      }
    }
  }

  void fail(Connection& c, const std::string& what, const std::string& detail = "") noexcept {
    if (c.failed) return;
    c.failed = true;
    note(c, absl::StrCat(what, " after ", c.sent, " of ", c.scheduled, " events sent, ", c.decided,
                         " decided", detail.empty() ? "" : absl::StrCat(" (", detail, ")")));
  }

  // A failed send or recv. A server that closes a connection shows as EOF from recv, or, when a
  // send or its reset gets there first, as EPIPE / ECONNRESET: the same event, reported alike.
  void fail_io(Connection& c, const char* call, int error) noexcept {
    const std::string detail = absl::StrCat(call, ": ", errno_text(error));
    if (error == EPIPE || error == ECONNRESET) {
      fail(c, "closed by the server", detail);
    } else {
      fail(c, detail);
    }
  }

  void note(Connection& c, std::string what) noexcept {
    ++c.errors;
    ++errors_count_;
    if (c.messages.size() < kMaxMessagesPerConnection) c.messages.push_back(std::move(what));
  }

  void publish_progress() noexcept {
    int64_t sent = 0;
    int64_t decided = 0;
    for (const Connection* c : connections_) {
      sent += c->sent;
      decided += c->decided;
    }
    sent_.set(sent);
    decided_.set(decided);
    errors_.set(errors_count_);
  }

  const LoadOptions& options_;
  const Schedule schedule_;
  std::vector<Connection*> connections_;
  std::vector<pollfd> fds_;
  Histogram latency_;
  Histogram send_lag_;
  int64_t measured_ = 0;
  int64_t alerts_ = 0;
  int64_t errors_count_ = 0;
  int64_t wake_latency_ns_ = kInitialWakeLatencyNs;  // how late timed ppoll wake-ups run
  std::array<int64_t, 6> verdicts_{};
  // Read by the caller's thread for progress lines; written only by this worker.
  alignas(kCacheLineSize) Counter sent_;
  Counter decided_;
  Counter errors_;
  std::atomic<bool> finished_{false};
};

absl::Status check_options(const LoadOptions& o) {
  auto bad = [](auto&&... parts) { return absl::InvalidArgumentError(absl::StrCat(parts...)); };
  if (!(o.rate > 0) || !std::isfinite(o.rate)) return bad("--rate must be above 0");
  if (!(o.duration_s > 0) || !std::isfinite(o.duration_s)) return bad("--duration must be above 0");
  if (!(o.warmup_s >= 0) || !std::isfinite(o.warmup_s)) return bad("--warmup must be 0 or more");
  if (!(o.drain_timeout_s >= 0) || !std::isfinite(o.drain_timeout_s)) {
    return bad("--drain-timeout must be 0 or more");
  }
  if (!(o.connect_timeout_s > 0)) return bad("the connect timeout must be above 0");
  if (o.connections < 1 || o.connections > 65'536) return bad("--connections must be 1..65536");
  if (o.threads < 1 || o.threads > o.connections) {
    return bad("--threads must be 1..connections (", o.connections, ")");
  }
  if (o.workload.accounts < 1) return bad("--accounts must be at least 1");
  if (!(o.workload.skew >= 0) || !std::isfinite(o.workload.skew)) {
    return bad("--skew must be 0 or more");
  }
  if (!(o.workload.rule_rate >= 0 && o.workload.rule_rate <= 1)) {
    return bad("--rule-rate must be in 0..1");
  }
  if (!(o.time_scale > 0 && o.time_scale <= kMaxTimeScale)) {
    return bad("--time-scale must be above 0 and at most ", kMaxTimeScale);
  }
  if (o.port == 0) return bad("the target port must be 1..65535");
  const double events = (o.duration_s + o.warmup_s) * o.rate;
  if (events > static_cast<double>(kMaxEvents)) {
    return bad("rate x (duration + warmup) is ", events, " events; at most ", kMaxEvents);
  }
  if (std::llround(o.duration_s * o.rate) < 1) return bad("rate x duration is less than one event");
  return absl::OkStatus();
}

std::string target_name(const std::string& host, uint16_t port) {
  if (host.find(':') != std::string::npos) return absl::StrCat("[", host, "]:", port);
  return absl::StrCat(host, ":", port);
}

absl::Status unavailable(const Connection& c, const std::string& target, std::string_view what) {
  return absl::UnavailableError(absl::StrCat(connection_prefix(c, target), to_absl(what)));
}

// Starts a non-blocking connect of c to address.
absl::Status start_connect(const LoadOptions& options, const std::string& target, Connection& c,
                           const addrinfo& address) {
  if (c.fd >= 0) ::close(c.fd);
  c.fd = ::socket(address.ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (c.fd < 0) return unavailable(c, target, absl::StrCat("socket: ", errno_text(errno)));
  const int one = 1;
  // Nagle would hold small batches back for up to 40 ms; batching is done explicitly here.
  ::setsockopt(c.fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  if (options.send_buffer_bytes > 0) {
    ::setsockopt(c.fd, SOL_SOCKET, SO_SNDBUF, &options.send_buffer_bytes,
                 sizeof(options.send_buffer_bytes));
  }
  if (::connect(c.fd, address.ai_addr, address.ai_addrlen) != 0 && errno != EINPROGRESS) {
    return unavailable(c, target, absl::StrCat("connect: ", errno_text(errno)));
  }
  return absl::OkStatus();
}

// Waits until every started connect completed, or the first failure, or the timeout.
absl::Status finish_connects(const LoadOptions& options, const std::string& target,
                             std::span<const std::unique_ptr<Connection>> connections) {
  const Clock& clock = default_clock();
  const int64_t deadline = clock.now_ns() + seconds_to_ns(options.connect_timeout_s);
  std::vector<pollfd> fds;
  for (const auto& c : connections) fds.push_back(pollfd{c->fd, POLLOUT, 0});
  size_t pending = connections.size();
  while (pending > 0) {
    const int64_t left = deadline - clock.now_ns();
    if (left <= 0) break;
    const int r = ::poll(fds.data(), fds.size(), static_cast<int>((left + 999'999) / 1'000'000));
    if (r < 0 && errno != EINTR) {
      return absl::UnavailableError(absl::StrCat("poll: ", errno_text(errno)));
    }
    for (size_t i = 0; i < fds.size(); ++i) {
      if (fds[i].fd < 0 || fds[i].revents == 0) continue;
      int error = 0;
      socklen_t length = sizeof(error);
      ::getsockopt(fds[i].fd, SOL_SOCKET, SO_ERROR, &error, &length);
      if (error != 0) {
        return unavailable(*connections[i], target, absl::StrCat("connect: ", errno_text(error)));
      }
      fds[i].fd = -1;
      --pending;
    }
  }
  for (size_t i = 0; i < fds.size(); ++i) {
    if (fds[i].fd >= 0) {
      return unavailable(
          *connections[i], target,
          absl::StrFormat("connect: no answer within %g s", options.connect_timeout_s));
    }
  }
  return absl::OkStatus();
}

// Connects every connection within the connect timeout. The host may resolve to several
// addresses ("localhost": ::1 and 127.0.0.1); connection 0 tries them in order and the others
// then connect, in parallel, to the first that answered.
absl::Status connect_all(const LoadOptions& options, const std::string& target,
                         std::vector<std::unique_ptr<Connection>>& connections) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  const std::string port = std::to_string(options.port);
  const int rc = ::getaddrinfo(options.host.c_str(), port.c_str(), &hints, &found);
  if (rc != 0) {
    return absl::UnavailableError(
        absl::StrCat("cannot resolve ", target, ": ", ::gai_strerror(rc)));
  }
  std::unique_ptr<addrinfo, decltype(&::freeaddrinfo)> addresses(found, &::freeaddrinfo);
  const addrinfo* chosen = nullptr;
  absl::Status first_error;
  for (const addrinfo* a = addresses.get(); a != nullptr && chosen == nullptr; a = a->ai_next) {
    absl::Status s = start_connect(options, target, *connections[0], *a);
    if (s.ok()) s = finish_connects(options, target, std::span(connections).first(1));
    if (s.ok()) {
      chosen = a;
    } else if (first_error.ok()) {
      first_error = std::move(s);
    }
  }
  if (chosen == nullptr) return first_error;
  for (size_t i = 1; i < connections.size(); ++i) {
    if (absl::Status s = start_connect(options, target, *connections[i], *chosen); !s.ok()) {
      return s;
    }
  }
  return finish_connects(options, target, std::span(connections).subspan(1));
}

// Sends HELLO{client_id} on every connection and waits for each HELLO_ACK (SPEC 1.7).
absl::Status handshake_all(const LoadOptions& options, const std::string& target,
                           std::vector<std::unique_ptr<Connection>>& connections) {
  for (auto& c : connections) {
    std::byte frame[wire::kHeaderSize + wire::kHelloPayload];
    const size_t n = wire::encode(wire::Hello{.client_id = c->client_id}, frame);
    // A fresh socket's buffer always takes 20 bytes whole.
    if (::send(c->fd, frame, n, MSG_NOSIGNAL) != static_cast<ssize_t>(n)) {
      return unavailable(*c, target, absl::StrCat("send HELLO: ", errno_text(errno)));
    }
  }
  const Clock& clock = default_clock();
  const int64_t deadline = clock.now_ns() + seconds_to_ns(options.connect_timeout_s);
  std::vector<pollfd> fds;
  for (auto& c : connections) fds.push_back(pollfd{c->fd, POLLIN, 0});
  size_t pending = connections.size();
  while (pending > 0) {
    const int64_t left = deadline - clock.now_ns();
    if (left <= 0) break;
    const int r = ::poll(fds.data(), fds.size(), static_cast<int>((left + 999'999) / 1'000'000));
    if (r < 0 && errno != EINTR)
      return absl::UnavailableError(absl::StrCat("poll: ", errno_text(errno)));
    for (size_t i = 0; i < fds.size(); ++i) {
      if (fds[i].fd < 0 || fds[i].revents == 0) continue;
      Connection& c = *connections[i];
      const ssize_t got = ::recv(c.fd, c.in.data() + c.in_len, c.in.size() - c.in_len, 0);
      if (got < 0) {
        if (errno == EAGAIN || errno == EINTR) continue;
        return unavailable(c, target, absl::StrCat("recv HELLO_ACK: ", errno_text(errno)));
      }
      if (got == 0) return unavailable(c, target, "closed by the server before HELLO_ACK");
      c.in_len += static_cast<size_t>(got);
      if (c.in_len < wire::kHeaderSize) continue;
      const wire::FrameHeader h = wire::decode_header(c.in.data());
      if (h.length < wire::kHeaderSize || h.length > wire::kMaxFrameSize) {
        return unavailable(
            c, target,
            absl::StrCat("malformed frame of length ", h.length, " instead of HELLO_ACK"));
      }
      if (c.in_len < h.length) continue;
      const std::span<const std::byte> frame(c.in.data(), h.length);
      if (h.type == static_cast<uint8_t>(wire::FrameType::kError) &&
          h.length >= wire::kHeaderSize + wire::kErrorMinPayload) {
        const auto* text = reinterpret_cast<const char*>(c.in.data() + wire::kHeaderSize + 4);
        return unavailable(c, target,
                           absl::StrCat("the server answered HELLO with ERROR ",
                                        wire::load<uint16_t>(c.in.data() + wire::kHeaderSize), ": ",
                                        absl::string_view(text, h.length - wire::kHeaderSize - 4)));
      }
      if (h.type != static_cast<uint8_t>(wire::FrameType::kHelloAck) ||
          h.length < wire::kHeaderSize + wire::kHelloAckPayload) {
        return unavailable(
            c, target,
            absl::StrCat("expected HELLO_ACK, got ", to_absl(wire::frame_type_name(h.type)),
                         " (length ", h.length, ")"));
      }
      const wire::HelloAck ack = wire::decode_hello_ack(frame);
      if (ack.client_id != c.client_id) {
        return unavailable(c, target, absl::StrCat("HELLO_ACK names client_id ", ack.client_id));
      }
      c.last_client_seq = ack.last_client_seq;
      std::memmove(c.in.data(), c.in.data() + h.length, c.in_len - h.length);
      c.in_len -= h.length;
      fds[i].fd = -1;
      --pending;
    }
  }
  for (size_t i = 0; i < fds.size(); ++i) {
    if (fds[i].fd >= 0) {
      return unavailable(*connections[i], target,
                         absl::StrFormat("no HELLO_ACK within %g s", options.connect_timeout_s));
    }
  }
  return absl::OkStatus();
}

// The first event of c without a decision, as a client_seq (0 if there is none).
uint64_t first_missing(const Connection& c) {
  for (int64_t j = 0; j < c.scheduled; ++j) {
    if ((c.decided_bits[static_cast<size_t>(j >> 6)] & (uint64_t{1} << (j & 63))) == 0) {
      return c.last_client_seq + 1 + static_cast<uint64_t>(j);
    }
  }
  return 0;
}

}  // namespace

absl::Status parse_target(std::string_view target, std::string* host, uint16_t* port) {
  const size_t colon = target.rfind(':');
  if (colon == std::string_view::npos || colon == 0 || colon + 1 == target.size()) {
    return absl::InvalidArgumentError(
        absl::StrCat("--target '", to_absl(target), "' is not HOST:PORT"));
  }
  std::string_view h = target.substr(0, colon);
  if (h.size() >= 2 && h.front() == '[' && h.back() == ']') h = h.substr(1, h.size() - 2);
  const std::string_view p = target.substr(colon + 1);
  unsigned value = 0;
  const auto [end, ec] = std::from_chars(p.data(), p.data() + p.size(), value);
  if (ec != std::errc() || end != p.data() + p.size() || value == 0 || value > 65535 || h.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("--target '", to_absl(target), "' is not HOST:PORT (port 1..65535)"));
  }
  *host = std::string(h);
  *port = static_cast<uint16_t>(value);
  return absl::OkStatus();
}

absl::StatusOr<LoadResult> run_load(const LoadOptions& options) {
  if (absl::Status s = check_options(options); !s.ok()) return s;
  const Clock& clock = default_clock();  // calibrates the TSC (~20 ms) before anything is timed
  const std::string target = target_name(options.host, options.port);

  Schedule schedule;
  schedule.interval_ns = 1e9 / options.rate;
  schedule.connections = options.connections;
  schedule.warmup = std::llround(options.warmup_s * options.rate);
  schedule.total = schedule.warmup + std::llround(options.duration_s * options.rate);
  schedule.time_scale = options.time_scale;

  std::vector<std::unique_ptr<Connection>> connections;
  for (uint32_t i = 0; i < options.connections; ++i) {
    auto c = std::make_unique<Connection>(i, options.workload);
    c->client_id = options.client_id_base == 0 ? 0 : options.client_id_base + i;
    c->scheduled = schedule.per_connection(i);
    c->decided_bits.assign(static_cast<size_t>((c->scheduled + 63) / 64), 0);
    connections.push_back(std::move(c));
  }
  if (absl::Status s = connect_all(options, target, connections); !s.ok()) return s;
  if (options.client_id_base != 0) {
    if (absl::Status s = handshake_all(options, target, connections); !s.ok()) return s;
  }
  if (options.subscribe) {
    std::byte frame[wire::kHeaderSize + wire::kSubscribePayload];
    const size_t n = wire::encode(wire::Subscribe{.topics = 1}, frame);
    if (::send(connections[0]->fd, frame, n, MSG_NOSIGNAL) != static_cast<ssize_t>(n)) {
      return unavailable(*connections[0], target,
                         absl::StrCat("send SUBSCRIBE: ", errno_text(errno)));
    }
  }

  // A small lead so every worker is up before its first event is due.
  schedule.start_ns = clock.now_ns() + 2'000'000;
  schedule.event_time_origin_ns = realtime_ns();
  std::vector<std::unique_ptr<Worker>> workers;
  for (uint32_t t = 0; t < options.threads; ++t) {
    std::vector<Connection*> mine;
    for (uint32_t i = t; i < options.connections; i += options.threads) {
      mine.push_back(connections[i].get());
    }
    workers.push_back(std::make_unique<Worker>(options, schedule, std::move(mine)));
  }
  std::vector<std::thread> threads;
  for (auto& w : workers) threads.emplace_back([&w] { w->run(); });

  // Progress once a second; otherwise sleep in short steps until every worker is done.
  int64_t next_progress = schedule.start_ns + 1'000'000'000;
  while (
      !std::all_of(workers.begin(), workers.end(), [](const auto& w) { return w->finished(); })) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
    const int64_t now = clock.now_ns();
    if (options.progress && now >= next_progress) {
      LoadProgress p{.elapsed_s = static_cast<double>(now - schedule.start_ns) * 1e-9};
      for (const auto& w : workers) {
        p.sent += w->sent();
        p.decided += w->decided();
        p.errors += w->errors();
      }
      options.progress(p);
      next_progress += 1'000'000'000;
    }
  }
  for (std::thread& t : threads) t.join();
  const int64_t end_ns = clock.now_ns();

  LoadResult result;
  result.rate_target = options.rate;
  result.scheduled = schedule.total;
  result.elapsed_s = static_cast<double>(end_ns - schedule.start_ns) * 1e-9;
  for (const auto& w : workers) {
    (void)result.latency.merge(w->latency());    // same range: cannot fail
    (void)result.send_lag.merge(w->send_lag());  // same range: cannot fail
    result.measured += w->measured();
    result.alerts += w->alerts();
    for (size_t v = 0; v < result.verdicts.size(); ++v) result.verdicts[v] += w->verdicts()[v];
  }
  int64_t measured_sent = 0;
  int64_t last_send = 0;
  int64_t last_decision = 0;
  // The schedule may have been cut short by options.stop.
  result.scheduled = 0;
  for (const auto& c : connections) {
    result.scheduled += c->scheduled;
    result.sent += c->sent;
    result.decided += c->decided;
    result.errors += c->errors;
    measured_sent += c->measured_sent;
    last_send = std::max(last_send, c->last_send_ns);
    last_decision = std::max(last_decision, c->last_decision_ns);
    result.connections.push_back(ConnectionReport{.index = c->index,
                                                  .client_id = c->client_id,
                                                  .last_client_seq = c->last_client_seq,
                                                  .scheduled = c->scheduled,
                                                  .sent = c->sent,
                                                  .decided = c->decided,
                                                  .failed = c->failed});
    const std::string prefix = connection_prefix(*c, target);
    for (const std::string& m : c->messages) result.error_messages.push_back(prefix + m);
    if (c->errors > static_cast<int64_t>(c->messages.size())) {
      result.error_messages.push_back(absl::StrCat(
          prefix, c->errors - static_cast<int64_t>(c->messages.size()), " more errors"));
    }
    if (!c->failed && c->decided < c->scheduled) {
      std::string line = absl::StrFormat(
          "%s%d of %d events got no DECISION within the %g s drain timeout (first missing "
          "client_seq %d)",
          prefix, c->scheduled - c->decided, c->scheduled, options.drain_timeout_s,
          first_missing(*c));
      if (c->sent < c->scheduled)
        absl::StrAppend(&line, "; ", c->scheduled - c->sent, " never sent");
      result.error_messages.push_back(std::move(line));
    }
  }
  const int64_t measure_start = schedule.measure_start_ns();
  const double interval = schedule.interval_ns;
  if (measured_sent > 0) {
    result.rate_achieved = static_cast<double>(measured_sent) * 1e9 /
                           (static_cast<double>(last_send - measure_start) + interval);
  }
  if (result.measured > 0) {
    result.decided_rate = static_cast<double>(result.measured) * 1e9 /
                          (static_cast<double>(last_decision - measure_start) + interval);
  }
  return result;
}

}  // namespace sluice::tools
