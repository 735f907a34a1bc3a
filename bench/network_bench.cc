// network_bench: the network agent's decode throughput, its loopback round trip beside the
// kernel's floor, and pipelined throughput over 1 and 8 connections beside a plain epoll echo
// server, in one binary so --benchmark_enable_random_interleaving runs them all under the same
// conditions. perf/run_network_bench.sh runs it the way perf/RESULTS.md reports it.
//
// Frames: the client sends 44-byte TRANSACTION frames and gets 28-byte DECISION frames back;
// the echo servers answer every 44 bytes with 28 bytes, so every variant moves the same bytes.
//
// Names (Google Benchmark appends /manual_time: each run times itself with the TSC clock, so
// set-up and warm-up stay out of the numbers):
//
//   Decode/frames         FrameDecoder::peek/consume over 16 KiB receive buffers holding a mix
//                         of 44- and 60-byte frames (TRANSACTION, ORDER), frames cut at buffer
//                         edges as a stream would be. items_per_second = frames/s on one core.
//   Decode/inspect        the same plus inspect_client_frame() (the SPEC 1.5 value checks).
//   Decode/ingest         the same plus the copy into a 16Ki-slot array of InputEvents with the
//                         stamps ingest writes: ingest's CPU work per frame without the I/O.
//   Decode/text           LineDecoder + parse_client_line over the text form of the same events.
//
//   PingPong/<server>     one 44-byte frame out, its 28-byte answer back, one at a time; the
//                         client (the benchmark thread, CPU 0) uses blocking send/recv; the
//                         server thread runs on CPU 1. Accounts cycle over 1000 and event time
//                         advances 100 ms per event. Every round trip is timed with rdtsc into
//                         a sluice::Histogram: counters rtt_p50_ns, rtt_p99_ns, rtt_p999_ns,
//                         rtt_max_ns; items_per_second = round trips/s.
//     echo_blocking       blocking recv/send echo: the kernel's floor the targets refer to.
//     echo_busy_poll      non-blocking recv in a spin loop: a server that never sleeps.
//     uring_echo/<mode>   an io_uring echo server (one recv, then send + recv re-armed) that
//                         collects completions by polling, per setup mode:
//                           default     no flags; peeks the CQ only (the kernel interrupts the
//                                       thread to post completions);
//                           coop_peek   COOP_TASKRUN; peeks only, never enters to collect:
//                                       completions wait for the next interrupt (fewer round
//                                       trips: each may take a scheduler tick);
//                           coop_flag   COOP_TASKRUN + TASKRUN_FLAG: enters (get_events) only
//                                       when the SQ flags say task work is pending;
//                           defer_flag  SINGLE_ISSUER + DEFER_TASKRUN + TASKRUN_FLAG: the same;
//                                       this is what NetworkServer does;
//                           defer_wait  DEFER_TASKRUN, sleeping in submit_and_wait.
//     sluice              NetworkServer + StandInShards (the real Shard, one shard) polled in
//                         turn on CPU 1, busy: the full path (decode, input ring, shard, output
//                         ring, egress).
//     sluice_park         the same, but the server thread parks in NetworkServer::wait() after
//                         200 idle passes (what NetworkStage's parking does).
//
//   Pipelined/<server>/<connections>
//                         the client (CPU 0, one thread, non-blocking sockets and poll()) keeps
//                         up to 4096 events in flight per connection (the server's default
//                         max_in_flight), sending in batches of up to 256 frames, and counts every
//                         answer; an iteration is 1M events (all answered); items_per_second =
//                         events/s with every decision received. Accounts cycle over 100k, event
//                         times advance 100 us per event (the fraud rules run and sometimes fire).
//     sluice              NetworkServer + StandInShards (real Shard, one shard) on CPU 1, busy.
//     sluice_trivial      the same with a stand-in that answers ACCEPT without running rules:
//                         the network path's own ceiling.
//     sluice_journal      the real Shard and a JournalStage (durability none, a fresh journal in
//                         $NETWORK_BENCH_DIR, default ./network-bench-journal-tmp, removed after
//                         the run) on the server thread: the 2-core deployment's whole server
//                         side, minus fdatasync.
//     echo_epoll          one epoll thread on CPU 1 answering 28 bytes per 44 received: the
//                         kernel's ceiling for this traffic on one server core.
//
// Conditions, on every PingPong and Pipelined run: cl_rtt_before_ns / cl_rtt_after_ns (a
// cache-line round trip CPU 0 <-> CPU 1 measured just before and after: the host moves the two
// vCPUs between near and far placements) and foreign_cpu_pct (share of the machine's CPU time
// that went to other processes or the hypervisor during the run).
#include <benchmark/benchmark.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "bench/run_conditions.h"
#include "core/clock.h"
#include "core/cpu.h"
#include "core/histogram.h"
#include "core/input_event.h"
#include "core/wait_strategy.h"
#include "core/wire_format.h"
#include "io/frame_decoder.h"
#include "io/journal_writer.h"
#include "io/network_server.h"
#include "io/text_codec.h"
#include "io/uring.h"
#include "pipeline/journal_stage.h"
#include "tests/io/network_test_util.h"

namespace {

using sluice::NetworkServer;

constexpr int kClientCpu = 0;
constexpr int kServerCpu = 1;
constexpr size_t kRequest = 44;  // TRANSACTION
constexpr size_t kAnswer = 28;   // DECISION

// ------------------------------------------------------------------------------------------
// Conditions: placement probe and foreign CPU share.

// The client (this thread) on kClientCpu, probed against kServerCpu (bench/run_conditions.h).
class Conditions final : public sluice::bench::RunConditions {
 public:
  Conditions() : RunConditions(kClientCpu, kServerCpu) {}
};

// ------------------------------------------------------------------------------------------
// Sockets.

struct Listener {
  int fd = -1;
  uint16_t port = 0;
  Listener() {
    fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof(a);
    ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a));
    ::listen(fd, 64);
    ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
    port = ntohs(a.sin_port);
  }
  ~Listener() { ::close(fd); }
};

int connect_to(uint16_t port, bool nonblocking) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  const int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  timeval tv{10, 0};  // a stalled server fails the benchmark instead of hanging it
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(port);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0) {
    ::close(fd);
    return -1;
  }
  if (nonblocking) ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK);
  return fd;
}

bool send_all(int fd, const void* data, size_t n) {
  const auto* p = static_cast<const char*>(data);
  while (n > 0) {
    const ssize_t k = ::send(fd, p, n, MSG_NOSIGNAL);
    if (k <= 0) {
      if (k < 0 && errno == EINTR) continue;
      return false;
    }
    p += k;
    n -= static_cast<size_t>(k);
  }
  return true;
}

bool recv_all(int fd, void* data, size_t n) {
  auto* p = static_cast<char*>(data);
  while (n > 0) {
    const ssize_t k = ::recv(fd, p, n, 0);
    if (k <= 0) {
      if (k < 0 && errno == EINTR) continue;
      return false;
    }
    p += k;
    n -= static_cast<size_t>(k);
  }
  return true;
}

std::vector<std::byte> request_frame(uint64_t client_seq, uint64_t account, int64_t time) {
  return sluice::testing::transaction_frame(client_seq, account, 100, time);
}

// Fills `out` (a multiple of kAnswer bytes) with DECISION frames, for the echo servers.
void fill_answers(std::span<char> out) {
  const std::vector<std::byte> d = sluice::testing::frame_of(sluice::wire::Decision{});
  for (size_t pos = 0; pos + kAnswer <= out.size(); pos += kAnswer) {
    std::memcpy(out.data() + pos, d.data(), kAnswer);
  }
}

// ------------------------------------------------------------------------------------------
// Decode throughput.

constexpr size_t kDecodeBuffer = 16384;

// A stream of 64Ki frames (2/3 TRANSACTION, 1/3 ORDER) cut into 16 KiB receive buffers.
const std::vector<std::byte>& decode_stream() {
  static const std::vector<std::byte> stream = [] {
    std::vector<std::byte> s;
    for (uint64_t i = 0; i < 65536; ++i) {
      const auto f = i % 3 == 2 ? sluice::testing::order_frame(i + 1, i % 1000 + 1)
                                : request_frame(i + 1, i % 1000 + 1, 1'000'000'000'000);
      s.insert(s.end(), f.begin(), f.end());
    }
    return s;
  }();
  return stream;
}

enum class DecodeDepth { kFrames, kInspect, kIngest };

template <DecodeDepth D>
void BM_Decode(benchmark::State& state) {
  (void)sluice::pin_current_thread(kClientCpu);
  const std::vector<std::byte>& stream = decode_stream();
  std::vector<sluice::InputEvent> slots(16384);
  int64_t frames = 0;
  int64_t check = 0;
  for (auto _ : state) {
    const int64_t t0 = sluice::now_ns();
    sluice::FrameDecoder d;
    int64_t r = 0;
    for (size_t pos = 0; pos < stream.size(); pos += kDecodeBuffer) {
      std::span<const std::byte> input(stream.data() + pos,
                                       std::min(kDecodeBuffer, stream.size() - pos));
      while (d.peek(input) == sluice::DecodeStatus::kFrame) {
        const std::span<const std::byte> f = d.frame();
        if constexpr (D == DecodeDepth::kFrames) {
          check += f.size();
        } else {
          const sluice::ClientFrame c = sluice::inspect_client_frame(f);
          check += static_cast<int64_t>(c.client_seq) + c.valid;
          if constexpr (D == DecodeDepth::kIngest) {
            sluice::InputEvent& e = slots[r & 16383];
            e.sequence = r;
            e.ingest_ns = t0;
            e.client_id = 0;
            e.receive_ticks = t0;
            e.connection_id = 1;
            e.frame_length = static_cast<uint16_t>(f.size());
            e.flags = 0;
            std::memcpy(e.frame.data(), f.data(), f.size());
            ++r;
          }
        }
        d.consume(input);
        ++frames;
      }
    }
    state.SetIterationTime(static_cast<double>(sluice::now_ns() - t0) * 1e-9);
  }
  benchmark::DoNotOptimize(check);
  benchmark::DoNotOptimize(slots.data());
  state.SetItemsProcessed(frames);
}

void BM_DecodeText(benchmark::State& state) {
  (void)sluice::pin_current_thread(kClientCpu);
  static const std::string text = [] {
    std::string s;
    const std::vector<std::byte>& stream = decode_stream();
    for (size_t pos = 0; pos < stream.size();) {
      const uint16_t len = sluice::wire::decode_header(stream.data() + pos).length;
      s += sluice::text::format_client_line(std::span(stream).subspan(pos, len));
      s += '\n';
      pos += len;
    }
    return s;
  }();
  std::array<std::byte, sluice::wire::kMaxFrameSize> frame;
  int64_t lines = 0;
  int64_t check = 0;
  for (auto _ : state) {
    const int64_t t0 = sluice::now_ns();
    sluice::text::LineDecoder d;
    for (size_t pos = 0; pos < text.size(); pos += kDecodeBuffer) {
      std::span<const std::byte> input(reinterpret_cast<const std::byte*>(text.data()) + pos,
                                       std::min(kDecodeBuffer, text.size() - pos));
      while (d.peek(input) == sluice::DecodeStatus::kFrame) {
        check += static_cast<int64_t>(sluice::text::parse_client_line(d.line(), frame).frame_size);
        d.consume(input);
        ++lines;
      }
    }
    state.SetIterationTime(static_cast<double>(sluice::now_ns() - t0) * 1e-9);
  }
  benchmark::DoNotOptimize(check);
  state.SetItemsProcessed(lines);
}

BENCHMARK(BM_Decode<DecodeDepth::kFrames>)->Name("Decode/frames")->UseManualTime();
BENCHMARK(BM_Decode<DecodeDepth::kInspect>)->Name("Decode/inspect")->UseManualTime();
BENCHMARK(BM_Decode<DecodeDepth::kIngest>)->Name("Decode/ingest")->UseManualTime();
BENCHMARK(BM_DecodeText)->Name("Decode/text")->UseManualTime();

// ------------------------------------------------------------------------------------------
// Servers under test. Each runs on its own thread pinned to kServerCpu, serves until stop()
// or until its client goes away, and exposes a port.

class Server {
 public:
  virtual ~Server() = default;
  virtual uint16_t port() const = 0;
  virtual void stop() = 0;
  virtual std::string error() const { return ""; }
};

// Blocking or busy-polling echo: 28 bytes back for every 44 received, one connection.
class EchoServer final : public Server {
 public:
  explicit EchoServer(bool busy_poll) : busy_poll_(busy_poll) {
    thread_ = std::thread([this] { run(); });
  }
  ~EchoServer() override { stop(); }
  uint16_t port() const override { return listener_.port; }
  void stop() override {
    stop_.store(true);
    ::shutdown(listener_.fd, SHUT_RDWR);
    if (thread_.joinable()) thread_.join();
  }

 private:
  void run() {
    (void)sluice::pin_current_thread(kServerCpu);
    const int fd = ::accept4(listener_.fd, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) return;
    const int one = 1;
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    std::array<char, 4096> in;
    std::array<char, 4096 / kAnswer * kAnswer> out{};
    fill_answers(out);
    size_t have = 0;
    while (!stop_.load(std::memory_order_relaxed)) {
      const ssize_t n =
          ::recv(fd, in.data() + have, in.size() - have, busy_poll_ ? MSG_DONTWAIT : 0);
      if (n == 0) break;
      if (n < 0) {
        if (errno == EAGAIN || errno == EINTR) continue;
        break;
      }
      have += static_cast<size_t>(n);
      const size_t frames = have / kRequest;
      if (frames > 0 && !send_all(fd, out.data(), frames * kAnswer)) break;
      std::memmove(in.data(), in.data() + frames * kRequest, have - frames * kRequest);
      have -= frames * kRequest;
    }
    ::close(fd);
  }

  const bool busy_poll_;
  Listener listener_;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

enum class UringMode { kDefault, kCoopPeek, kCoopFlag, kDeferFlag, kDeferWait };

// An io_uring echo server: one recv at a time; on 44 bytes, a send of 28 and a new recv.
class UringEchoServer final : public Server {
 public:
  explicit UringEchoServer(UringMode mode) : mode_(mode) {
    thread_ = std::thread([this] { run(); });
  }
  ~UringEchoServer() override { stop(); }
  uint16_t port() const override { return listener_.port; }
  void stop() override {
    stop_.store(true);
    ::shutdown(listener_.fd, SHUT_RDWR);
    if (thread_.joinable()) thread_.join();
  }
  std::string error() const override { return error_; }

 private:
  void run() {
    (void)sluice::pin_current_thread(kServerCpu);
    const int fd = ::accept4(listener_.fd, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) return;
    const int one = 1;
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    sluice::UringOptions o{.entries = 16, .single_issuer = false, .coop_taskrun = false};
    switch (mode_) {
      case UringMode::kDefault: break;
      case UringMode::kCoopPeek: o.coop_taskrun = true; break;
      case UringMode::kCoopFlag:
        o.coop_taskrun = true;
        o.taskrun_flag = true;
        break;
      case UringMode::kDeferFlag:
        o.single_issuer = true;
        o.defer_taskrun = true;
        o.taskrun_flag = true;
        break;
      case UringMode::kDeferWait:
        o.single_issuer = true;
        o.defer_taskrun = true;
        break;
    }
    auto u = sluice::Uring::create(o);
    if (!u.ok()) {
      error_ = std::string(u.status().message());
      ::close(fd);
      return;
    }
    sluice::Uring& ring = **u;
    std::array<char, 4096> in;
    std::array<char, 4096 / kAnswer * kAnswer> out{};
    fill_answers(out);
    size_t have = 0;
    auto arm_recv = [&] {
      sluice::prep_recv(ring.get_sqe(), fd, in.data() + have, in.size() - have, 1);
    };
    arm_recv();
    ring.submit();
    bool done = false;
    while (!done && !stop_.load(std::memory_order_relaxed)) {
      if (mode_ == UringMode::kDeferWait) {
        ring.submit_and_wait(1);
      } else if (ring.cq_ready() == 0) {
        if ((mode_ == UringMode::kCoopFlag || mode_ == UringMode::kDeferFlag) &&
            ring.pending_kernel_work()) {
          ring.submit_and_get_events();
        }
        continue;
      }
      ring.drain([&](const io_uring_cqe& c) {
        if (sluice::user_data_id(c.user_data) != 1) return;  // a send
        if (c.res <= 0) {
          done = true;
          return;
        }
        have += static_cast<size_t>(c.res);
        const size_t frames = have / kRequest;
        if (frames > 0) {
          sluice::prep_send(ring.get_sqe(), fd, out.data(), frames * kAnswer, 2);
          std::memmove(in.data(), in.data() + frames * kRequest, have - frames * kRequest);
          have -= frames * kRequest;
        }
        arm_recv();
      });
      if (!done) ring.submit();
    }
    ::close(fd);
  }

  const UringMode mode_;
  Listener listener_;
  std::atomic<bool> stop_{false};
  std::thread thread_;
  std::string error_;
};

// A stand-in that answers every TRANSACTION / ORDER with ACCEPT, without rules.
class TrivialShard {
 public:
  TrivialShard(NetworkServer::InputRing& input, NetworkServer::OutputRing& output)
      : input_(input), output_(output) {}
  const sluice::Sequence& sequence() const { return progress_; }
  int poll() {
    const int64_t available = input_.cursor().get();
    if (available < next_) return 0;
    const int64_t hi = std::min(available, next_ + 4095);
    int64_t s = next_;
    for (; s <= hi; ++s) {
      const sluice::InputEvent& e = input_[s];
      const uint8_t type = static_cast<uint8_t>(e.frame[2]);
      if (type != 2 && type != 3) continue;
      int64_t o;
      if (output_.try_next(1, &o) != sluice::ClaimResult::kOk) break;
      sluice::OutputEvent& d = output_[o];
      d.kind = sluice::OutputEvent::Kind::kDecision;
      d.verdict = 0;
      d.reason = 0;
      d.flags = 0;
      d.connection_id = e.connection_id;
      d.seq = e.sequence;
      d.client_seq = sluice::wire::load<uint64_t>(e.frame.data() + 4);
      d.receive_ticks = e.receive_ticks;
      output_.publish(o);
    }
    const int64_t done = s - next_;
    if (done > 0) {
      next_ = s;
      progress_.set(s - 1);
    }
    return static_cast<int>(done);
  }

 private:
  NetworkServer::InputRing& input_;
  NetworkServer::OutputRing& output_;
  int64_t next_ = 0;
  sluice::Sequence progress_;
};

// What runs beside the NetworkServer on the server thread.
enum class Beside {
  kShard,         // StandInShards: the real Shard, one shard
  kTrivial,       // TrivialShard: ACCEPT without rules
  kShardJournal,  // the real Shard and a JournalStage (durability none): the 2-core deployment
};

// Scratch directory for the journal variant: $NETWORK_BENCH_DIR, by default
// ./network-bench-journal-tmp (run from the repo root by perf/run_network_bench.sh), removed
// after each run.
std::string journal_scratch() {
  const char* dir = std::getenv("NETWORK_BENCH_DIR");
  return dir != nullptr ? dir : "network-bench-journal-tmp";
}

// NetworkServer with what `beside` says, polled in turn on one thread.
class SluiceServer final : public Server {
 public:
  SluiceServer(Beside beside, bool park) : park_(park) {
    sluice::NetworkOptions o;
    o.listen = "127.0.0.1:0";
    o.text_listen = "";
    o.udp = false;
    o.max_in_flight = 4096;
    int64_t first_sequence = 1;
    if (beside == Beside::kShardJournal) {
      dir_ = journal_scratch() + "/run-" + std::to_string(sluice::now_ns());
      auto w = sluice::journal::JournalWriter::open(sluice::journal::WriterOptions{
          .dir = dir_, .durability = sluice::journal::Durability::kNone});
      if (!w.ok()) {
        set_error(std::string(w.status().message()));
        return;
      }
      writer_ = std::move(*w);
      first_sequence = writer_->next_sequence();
      journal_ = std::make_unique<sluice::JournalStage<>>(input_, *writer_);
      input_.add_gating_sequence(journal_->sequence());
    }
    auto s = NetworkServer::create(o, first_sequence, {}, input_, {&output_});
    if (!s.ok()) {
      set_error(std::string(s.status().message()));
      return;
    }
    server_ = std::move(*s);
    output_.add_gating_sequence(server_->output_sequence(0));
    if (beside == Beside::kTrivial) {
      trivial_ = std::make_unique<TrivialShard>(input_, output_);
      input_.add_gating_sequence(trivial_->sequence());
    } else {
      shards_ = std::make_unique<sluice::testing::StandInShards>(
          input_, std::vector{&output_}, sluice::ProcessorConfig{}, /*record=*/false);
      input_.add_gating_sequence(shards_->sequence());
    }
    thread_ = std::thread([this] { run(); });
  }
  ~SluiceServer() override {
    stop();
    if (!dir_.empty()) {
      std::error_code ec;
      std::filesystem::remove_all(dir_, ec);
    }
  }
  uint16_t port() const override { return server_ == nullptr ? 0 : server_->port(); }
  void stop() override {
    stop_.store(true);
    if (server_ != nullptr) server_->wake();
    if (thread_.joinable()) thread_.join();
  }
  std::string error() const override {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (!error_.empty() || server_ == nullptr) return error_;
    }
    const absl::Status s = server_->status();
    return s.ok() ? "" : std::string(s.message());
  }
  std::string describe() const { return server_ == nullptr ? "" : server_->describe(); }

 private:
  void set_error(std::string e) {
    std::lock_guard<std::mutex> lock(mu_);
    error_ = std::move(e);
  }

  void run() {
    (void)sluice::pin_current_thread(kServerCpu);
    (void)sluice::set_current_thread_name("sluice-net");
    if (absl::Status s = server_->start(); !s.ok()) {
      set_error(std::string(s.message()));
      return;
    }
    int idle = 0;
    try {
      while (!stop_.load(std::memory_order_relaxed)) {
        int work = server_->poll();
        work += trivial_ != nullptr ? trivial_->poll() : shards_->poll(4096);
        if (journal_ != nullptr) work += journal_->do_work();
        if (work > 0) {
          idle = 0;
        } else if (park_ && ++idle >= 200) {
          idle = 0;
          server_->wait(1'000'000);
        }
      }
      if (journal_ != nullptr) journal_->on_close();
    } catch (const std::exception& e) {
      set_error(e.what());
    }
  }

  const bool park_;
  sluice::IdleWaitStrategy wait_{sluice::IdleConfig{.kind = sluice::IdleKind::kBusySpin}};
  NetworkServer::InputRing input_{65536, wait_};
  NetworkServer::OutputRing output_{65536, wait_};
  std::string dir_;
  std::unique_ptr<sluice::journal::JournalWriter> writer_;
  std::unique_ptr<sluice::JournalStage<>> journal_;
  std::unique_ptr<NetworkServer> server_;
  std::unique_ptr<TrivialShard> trivial_;
  std::unique_ptr<sluice::testing::StandInShards> shards_;
  std::atomic<bool> stop_{false};
  std::thread thread_;
  mutable std::mutex mu_;
  std::string error_;
};

// One epoll thread answering 28 bytes per 44 received, over any number of connections.
class EpollEchoServer final : public Server {
 public:
  EpollEchoServer() {
    thread_ = std::thread([this] { run(); });
  }
  ~EpollEchoServer() override { stop(); }
  uint16_t port() const override { return listener_.port; }
  void stop() override {
    stop_.store(true);
    if (thread_.joinable()) thread_.join();
  }

 private:
  struct Conn {
    int fd = -1;
    size_t have = 0;   // request bytes not yet a whole frame
    size_t owed = 0;   // answer bytes not yet sent
    size_t phase = 0;  // bytes of a partly sent answer
  };

  // Sends what `c` is owed, from where the last send stopped inside an answer.
  static void send_owed(Conn& c, const std::vector<char>& out) {
    while (c.owed > 0) {
      const size_t n = std::min(c.owed, out.size() - c.phase);
      const ssize_t k = ::send(c.fd, out.data() + c.phase, n, MSG_NOSIGNAL);
      if (k <= 0) break;
      c.owed -= static_cast<size_t>(k);
      c.phase = (c.phase + static_cast<size_t>(k)) % kAnswer;
    }
  }

  void run() {
    (void)sluice::pin_current_thread(kServerCpu);
    const int ep = epoll_create1(EPOLL_CLOEXEC);
    ::fcntl(listener_.fd, F_SETFL, ::fcntl(listener_.fd, F_GETFL) | O_NONBLOCK);
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.u64 = UINT64_MAX;
    epoll_ctl(ep, EPOLL_CTL_ADD, listener_.fd, &ev);
    std::vector<Conn> conns;
    std::vector<char> in(1 << 16), out((1 << 16) / kAnswer * kAnswer);
    fill_answers(out);
    std::array<epoll_event, 64> events;
    while (!stop_.load(std::memory_order_relaxed)) {
      const int n = epoll_wait(ep, events.data(), events.size(), 0);  // busy: it has the core
      for (int i = 0; i < n; ++i) {
        if (events[i].data.u64 == UINT64_MAX) {
          for (;;) {
            const int fd = ::accept4(listener_.fd, nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
            if (fd < 0) break;
            const int one = 1;
            ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
            conns.push_back(Conn{fd});
            epoll_event cev{};
            cev.events = EPOLLIN;
            cev.data.u64 = conns.size() - 1;
            epoll_ctl(ep, EPOLL_CTL_ADD, fd, &cev);
          }
          continue;
        }
        Conn& c = conns[events[i].data.u64];
        for (;;) {
          const ssize_t k = ::recv(c.fd, in.data(), in.size(), 0);
          if (k <= 0) break;
          c.have += static_cast<size_t>(k);
          c.owed += c.have / kRequest * kAnswer;
          c.have %= kRequest;
        }
        send_owed(c, out);
      }
      // Answers the kernel had no room for: retry each pass (the client keeps reading).
      for (Conn& c : conns) send_owed(c, out);
    }
    for (Conn& c : conns) ::close(c.fd);
    ::close(ep);
  }

  Listener listener_;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

// ------------------------------------------------------------------------------------------
// PingPong.

constexpr int kPingPongWarmup = 2000;

template <typename Make>
void ping_pong(benchmark::State& state, Make&& make, int round_trips) {
  Conditions conditions;
  if (!conditions.start(state)) return;
  std::unique_ptr<Server> server = make();
  if (!server->error().empty() || server->port() == 0) {
    state.SkipWithError(("server: " + server->error()).c_str());
    return;
  }
  const int fd = connect_to(server->port(), false);
  if (fd < 0) {
    state.SkipWithError("connect failed");
    return;
  }
  const sluice::Clock& clock = sluice::default_clock();
  sluice::Histogram rtt;
  std::array<std::byte, 64> answer;
  // Accounts cycle over 1000 and event time advances 100 ms per event: each account sees an
  // event every 100 s of event time, so the shard's per-account history stays small (as with
  // real traffic) instead of growing with every round trip of one account.
  int64_t seq = 0;
  auto frame = [](int64_t n) {
    return request_frame(static_cast<uint64_t>(n), static_cast<uint64_t>(n % 1000 + 1),
                         1'000'000'000'000 + n * 100'000'000);
  };
  auto one = [&]() -> bool {
    const std::vector<std::byte> f = frame(++seq);
    return send_all(fd, f.data(), f.size()) && recv_all(fd, answer.data(), kAnswer);
  };
  bool ok = true;
  for (int i = 0; i < kPingPongWarmup && ok; ++i) ok = one();
  // The request frames are built outside the timed section, enough for every iteration.
  std::vector<std::vector<std::byte>> frames;
  for (int64_t i = 0; i < int64_t{round_trips} * 4; ++i) frames.push_back(frame(++seq));
  size_t next_frame = 0;
  for (auto _ : state) {
    if (!ok) break;
    int64_t total = 0;
    for (int i = 0; i < round_trips; ++i) {
      const std::vector<std::byte>& f = frames[next_frame++ % frames.size()];
      const int64_t t0 = clock.now_ticks();
      if (!send_all(fd, f.data(), f.size()) || !recv_all(fd, answer.data(), kAnswer)) {
        ok = false;
        break;
      }
      const int64_t ns = clock.ticks_to_ns(clock.now_ticks()) - clock.ticks_to_ns(t0);
      rtt.record(ns);
      total += ns;
    }
    state.SetIterationTime(static_cast<double>(total) * 1e-9);
  }
  ::close(fd);
  server->stop();
  if (!ok) {
    state.SkipWithError(("a round trip failed; server: " + server->error()).c_str());
    return;
  }
  state.SetItemsProcessed(rtt.total_count());
  state.counters["rtt_p50_ns"] = static_cast<double>(rtt.value_at_percentile(50));
  state.counters["rtt_p99_ns"] = static_cast<double>(rtt.value_at_percentile(99));
  state.counters["rtt_p999_ns"] = static_cast<double>(rtt.value_at_percentile(99.9));
  state.counters["rtt_max_ns"] = static_cast<double>(rtt.max());
  conditions.finish(state);
}

constexpr int kRoundTrips = 5000;

void BM_PingPongEchoBlocking(benchmark::State& state) {
  ping_pong(
      state, [] { return std::make_unique<EchoServer>(false); }, kRoundTrips);
}
void BM_PingPongEchoBusyPoll(benchmark::State& state) {
  ping_pong(
      state, [] { return std::make_unique<EchoServer>(true); }, kRoundTrips);
}
template <UringMode M>
void BM_PingPongUring(benchmark::State& state) {
  // Peeking without entering under COOP_TASKRUN waits for an interrupt per round trip.
  const int n = M == UringMode::kCoopPeek ? 200 : kRoundTrips;
  ping_pong(
      state, [] { return std::make_unique<UringEchoServer>(M); }, n);
}
void BM_PingPongSluice(benchmark::State& state) {
  ping_pong(
      state, [] { return std::make_unique<SluiceServer>(Beside::kShard, false); }, kRoundTrips);
}
void BM_PingPongSluicePark(benchmark::State& state) {
  ping_pong(
      state, [] { return std::make_unique<SluiceServer>(Beside::kShard, true); }, kRoundTrips);
}

BENCHMARK(BM_PingPongEchoBlocking)->Name("PingPong/echo_blocking")->UseManualTime()->Iterations(4);
BENCHMARK(BM_PingPongEchoBusyPoll)->Name("PingPong/echo_busy_poll")->UseManualTime()->Iterations(4);
BENCHMARK(BM_PingPongUring<UringMode::kDefault>)
    ->Name("PingPong/uring_echo/default")
    ->UseManualTime()
    ->Iterations(4);
BENCHMARK(BM_PingPongUring<UringMode::kCoopPeek>)
    ->Name("PingPong/uring_echo/coop_peek")
    ->UseManualTime()
    ->Iterations(1);
BENCHMARK(BM_PingPongUring<UringMode::kCoopFlag>)
    ->Name("PingPong/uring_echo/coop_flag")
    ->UseManualTime()
    ->Iterations(4);
BENCHMARK(BM_PingPongUring<UringMode::kDeferFlag>)
    ->Name("PingPong/uring_echo/defer_flag")
    ->UseManualTime()
    ->Iterations(4);
BENCHMARK(BM_PingPongUring<UringMode::kDeferWait>)
    ->Name("PingPong/uring_echo/defer_wait")
    ->UseManualTime()
    ->Iterations(4);
BENCHMARK(BM_PingPongSluice)->Name("PingPong/sluice")->UseManualTime()->Iterations(4);
BENCHMARK(BM_PingPongSluicePark)->Name("PingPong/sluice_park")->UseManualTime()->Iterations(4);

// ------------------------------------------------------------------------------------------
// Pipelined throughput.

constexpr int64_t kPipelineEvents = 1'000'000;
constexpr int64_t kPipelineWarmup = 200'000;
constexpr int64_t kWindow = 4096;
constexpr int64_t kBatch = 256;
constexpr int64_t kStreamFrames = 65536;  // per connection, sent cyclically

struct PipeConn {
  int fd = -1;
  std::vector<std::byte> stream;  // kStreamFrames request frames
  size_t send_offset = 0;         // bytes of the stream sent (mod its size)
  int64_t sent = 0;               // whole frames sent
  int64_t answered = 0;
  size_t partial = 0;  // bytes of an answer received so far
};

// Sends `events` more events over the connections (spread evenly) and waits for every answer.
// False on a socket error or a 10 s stall.
bool pump(std::vector<PipeConn>& conns, int64_t events, int64_t* bad_answers) {
  std::vector<int64_t> target(conns.size());
  for (size_t i = 0; i < conns.size(); ++i) {
    target[i] = conns[i].sent + events / static_cast<int64_t>(conns.size()) +
                (static_cast<int64_t>(i) < events % static_cast<int64_t>(conns.size()) ? 1 : 0);
  }
  std::vector<pollfd> fds(conns.size());
  std::vector<std::byte> rbuf(1 << 16);
  int64_t last_progress = sluice::now_ns();
  for (;;) {
    bool progress = false;
    bool all_done = true;
    for (size_t i = 0; i < conns.size(); ++i) {
      PipeConn& c = conns[i];
      // Send while the window has room.
      while (c.sent < target[i] && c.sent - c.answered < kWindow) {
        const int64_t frames =
            std::min({kBatch, target[i] - c.sent, kWindow - (c.sent - c.answered)});
        const size_t frame_off = c.send_offset % kRequest;  // inside a partly sent frame
        const size_t start = c.send_offset % c.stream.size();
        size_t bytes = static_cast<size_t>(frames) * kRequest - frame_off;
        bytes = std::min(bytes, c.stream.size() - start);
        const ssize_t k = ::send(c.fd, c.stream.data() + start, bytes, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (k < 0) {
          if (errno == EAGAIN || errno == EWOULDBLOCK) break;
          return false;
        }
        const int64_t before = static_cast<int64_t>(c.send_offset / kRequest);
        c.send_offset += static_cast<size_t>(k);
        c.sent += static_cast<int64_t>(c.send_offset / kRequest) - before;
        progress = true;
        if (static_cast<size_t>(k) < bytes) break;
      }
      // Read every answer that is there.
      for (;;) {
        const ssize_t k = ::recv(c.fd, rbuf.data(), rbuf.size(), MSG_DONTWAIT);
        if (k == 0) return false;
        if (k < 0) {
          if (errno == EAGAIN || errno == EWOULDBLOCK) break;
          return false;
        }
        // Check the type byte of every answer that starts in this read.
        size_t pos = 0;
        size_t n = static_cast<size_t>(k);
        if (c.partial > 0) {
          const size_t rest = std::min(kAnswer - c.partial, n);
          pos = rest;
          c.partial += rest;
          if (c.partial == kAnswer) {
            c.partial = 0;
            ++c.answered;
          }
        }
        while (pos < n) {
          if (pos + 3 <= n && rbuf[pos + 2] != std::byte{0x82}) ++*bad_answers;
          const size_t take = std::min(kAnswer, n - pos);
          pos += take;
          if (take == kAnswer) {
            ++c.answered;
          } else {
            c.partial = take;
          }
        }
        progress = true;
      }
      if (c.answered < target[i]) all_done = false;
    }
    if (all_done) return true;
    const int64_t now = sluice::now_ns();
    if (progress) {
      last_progress = now;
      continue;
    }
    if (now - last_progress > 10'000'000'000) return false;
    for (size_t i = 0; i < conns.size(); ++i) {
      fds[i].fd = conns[i].fd;
      fds[i].events = POLLIN;
      fds[i].revents = 0;
    }
    ::poll(fds.data(), fds.size(), 1);
  }
}

template <typename Make>
void pipelined(benchmark::State& state, Make&& make) {
  const auto connections = static_cast<size_t>(state.range(0));
  Conditions conditions;
  if (!conditions.start(state)) return;
  std::unique_ptr<Server> server = make();
  if (!server->error().empty() || server->port() == 0) {
    state.SkipWithError(("server: " + server->error()).c_str());
    return;
  }
  std::vector<PipeConn> conns(connections);
  for (size_t i = 0; i < connections; ++i) {
    conns[i].fd = connect_to(server->port(), true);
    if (conns[i].fd < 0) {
      state.SkipWithError("connect failed");
      return;
    }
    for (int64_t j = 0; j < kStreamFrames; ++j) {
      const int64_t n = static_cast<int64_t>(i) * kStreamFrames + j;
      const std::vector<std::byte> f =
          request_frame(static_cast<uint64_t>(n + 1), static_cast<uint64_t>(n % 100'000 + 1),
                        1'000'000'000'000 + n * 100'000);
      conns[i].stream.insert(conns[i].stream.end(), f.begin(), f.end());
    }
  }
  int64_t bad = 0;
  bool ok = pump(conns, kPipelineWarmup, &bad);
  int64_t events = 0;
  for (auto _ : state) {
    if (!ok) break;
    const int64_t t0 = sluice::now_ns();
    ok = pump(conns, kPipelineEvents, &bad);
    state.SetIterationTime(static_cast<double>(sluice::now_ns() - t0) * 1e-9);
    events += kPipelineEvents;
  }
  for (PipeConn& c : conns) ::close(c.fd);
  server->stop();
  if (!ok) {
    state.SkipWithError(
        ("the pipeline stalled or a socket failed; server: " + server->error()).c_str());
    return;
  }
  if (bad != 0) {
    state.SkipWithError("answers that are not DECISION frames arrived");
    return;
  }
  state.SetItemsProcessed(events);
  conditions.finish(state);
}

void BM_PipelinedSluice(benchmark::State& state) {
  pipelined(state, [] { return std::make_unique<SluiceServer>(Beside::kShard, false); });
}
void BM_PipelinedSluiceTrivial(benchmark::State& state) {
  pipelined(state, [] { return std::make_unique<SluiceServer>(Beside::kTrivial, false); });
}
void BM_PipelinedSluiceJournal(benchmark::State& state) {
  pipelined(state, [] { return std::make_unique<SluiceServer>(Beside::kShardJournal, false); });
}
void BM_PipelinedEcho(benchmark::State& state) {
  pipelined(state, [] { return std::make_unique<EpollEchoServer>(); });
}

BENCHMARK(BM_PipelinedSluice)
    ->Name("Pipelined/sluice")
    ->Arg(1)
    ->Arg(8)
    ->UseManualTime()
    ->Iterations(3);
BENCHMARK(BM_PipelinedSluiceTrivial)
    ->Name("Pipelined/sluice_trivial")
    ->Arg(1)
    ->Arg(8)
    ->UseManualTime()
    ->Iterations(3);
BENCHMARK(BM_PipelinedSluiceJournal)
    ->Name("Pipelined/sluice_journal")
    ->Arg(1)
    ->Arg(8)
    ->UseManualTime()
    ->Iterations(3);
BENCHMARK(BM_PipelinedEcho)
    ->Name("Pipelined/echo_epoll")
    ->Arg(1)
    ->Arg(8)
    ->UseManualTime()
    ->Iterations(3);

}  // namespace

int main(int argc, char** argv) {
  (void)sluice::now_ns();  // calibrate the clock before anything is timed
  benchmark::AddCustomContext("io_uring", sluice::probe_uring().describe());
  {
    SluiceServer probe(Beside::kShard, false);
    benchmark::AddCustomContext("sluice_path", probe.describe());
  }
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
