// Test (and benchmark) helpers for the network server: a stand-in for the shard stages that
// runs the real Shard over the input ring, and a blocking loopback client.
//
// StandInShards plays the part the daemon's ShardStages will: it reads every event of the
// input ring, runs N real Shards (pipeline/keyed_processors.h) over it, and publishes each
// shard's decisions and alerts into that shard's output ring, copying connection_id and
// receive_ticks from the event. poll() never blocks: when an output ring is full it keeps the
// event's answers and retries on the next poll, so it can share the server's thread (the
// benchmarks) or run on its own (the tests).
//
// Thread safety: poll() from one thread; pause()/resume() and the accessors from any thread.
#ifndef SLUICE_TESTS_IO_NETWORK_TEST_UTIL_H_
#define SLUICE_TESTS_IO_NETWORK_TEST_UTIL_H_

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "core/input_event.h"
#include "core/output_event.h"
#include "core/ring_buffer.h"
#include "core/sequence.h"
#include "core/wire_format.h"
#include "io/network_server.h"
#include "pipeline/keyed_processors.h"
#include "pipeline/processor.h"

namespace sluice::testing {

using InputRing = NetworkServer::InputRing;
using OutputRing = NetworkServer::OutputRing;

// One event as the stand-in saw it in the input ring.
struct SeenEvent {
  int64_t sequence = 0;
  uint64_t client_id = 0;
  uint32_t connection_id = 0;
  uint8_t flags = 0;
  std::vector<std::byte> frame;
};

class StandInShards {
 public:
  // REQUIRES: outputs.size() >= 1; the input ring gates on sequence() and output ring k on the
  // server's output_sequence(k) before anything runs.
  StandInShards(InputRing& input, std::vector<OutputRing*> outputs,
                const ProcessorConfig& config = {}, bool record = true)
      : input_(input), outputs_(std::move(outputs)), record_(record) {
    const auto n = static_cast<uint32_t>(outputs_.size());
    for (uint32_t k = 0; k < n; ++k) {
      sinks_.push_back(std::make_unique<Sink>());
      shards_.push_back(std::make_unique<Shard>(config, k, n, *sinks_.back()));
    }
  }

  const Sequence& sequence() const noexcept { return progress_; }
  void set_server(NetworkServer* server) { server_ = server; }

  // Stops / restarts taking input (a slow shard, for backpressure tests).
  void pause() { paused_.store(true, std::memory_order_release); }
  void resume() { paused_.store(false, std::memory_order_release); }

  // One pass over at most max_events events; returns the work done.
  int poll(int64_t max_events = 256) {
    int work = 0;
    if (!flush_pending()) return work;
    if (paused_.load(std::memory_order_acquire)) return work;
    const int64_t available = input_.cursor().get();
    int64_t s = next_;
    const int64_t hi = std::min(available, next_ + max_events - 1);
    for (; s <= hi; ++s) {
      const InputEvent& e = input_[s];
      if (record_) {
        std::lock_guard<std::mutex> lock(mu_);
        seen_.push_back(SeenEvent{e.sequence,
                                  e.client_id,
                                  e.connection_id,
                                  e.flags,
                                  {e.frame.begin(), e.frame.begin() + e.frame_length}});
      }
      for (size_t k = 0; k < shards_.size(); ++k) {
        sinks_[k]->current = &e;
        shards_[k]->on_event(e.sequence, e.client_id, e.connection_id, e.frame_bytes());
      }
      ++work;
      if (!flush_pending()) {
        ++s;
        break;
      }
    }
    if (s > next_) {
      next_ = s;
      progress_.set(s - 1);
      events_.store(s, std::memory_order_release);
    }
    if (work > 0 && server_ != nullptr) server_->wake();
    return work;
  }

  // Events consumed so far.
  int64_t events() const noexcept { return events_.load(std::memory_order_acquire); }
  std::vector<SeenEvent> seen() const {
    std::lock_guard<std::mutex> lock(mu_);
    return seen_;
  }

 private:
  struct Sink final : DecisionSink {
    const InputEvent* current = nullptr;
    std::vector<OutputEvent> pending;
    void on_decision(const DecisionRecord& d) override {
      pending.push_back(to_output_event(d, current->receive_ticks));
    }
    void on_alert(const AlertRecord& a) override { pending.push_back(to_output_event(a, 0)); }
  };

  // Publishes every shard's pending answers; false if some output ring had no room (what fit
  // is published, the rest stays pending).
  bool flush_pending() {
    bool all = true;
    for (size_t k = 0; k < sinks_.size(); ++k) {
      std::vector<OutputEvent>& p = sinks_[k]->pending;
      size_t done = 0;
      while (done < p.size()) {
        int64_t hi;
        if (outputs_[k]->try_next(1, &hi) != ClaimResult::kOk) break;
        (*outputs_[k])[hi] = p[done++];
        outputs_[k]->publish(hi);
      }
      p.erase(p.begin(), p.begin() + static_cast<std::ptrdiff_t>(done));
      if (!p.empty()) all = false;
    }
    return all;
  }

  InputRing& input_;
  std::vector<OutputRing*> outputs_;
  std::vector<std::unique_ptr<Sink>> sinks_;
  std::vector<std::unique_ptr<Shard>> shards_;
  NetworkServer* server_ = nullptr;
  const bool record_;
  int64_t next_ = 0;
  Sequence progress_;
  std::atomic<int64_t> events_{0};
  std::atomic<bool> paused_{false};
  mutable std::mutex mu_;
  std::vector<SeenEvent> seen_;
};

// Frame builders.
inline std::vector<std::byte> frame_of(auto message) {
  std::vector<std::byte> b(wire::kMaxFrameSize);
  b.resize(wire::encode(message, b));
  return b;
}
inline std::vector<std::byte> transaction_frame(uint64_t client_seq, uint64_t account,
                                                int64_t amount = 100,
                                                int64_t event_time_ns = 1'000'000'000'000) {
  return frame_of(wire::Transaction{.client_seq = client_seq,
                                    .event_time_ns = event_time_ns,
                                    .account_id = account,
                                    .amount_minor = amount,
                                    .merchant_id = 1,
                                    .currency = 978,
                                    .channel = 1});
}
inline std::vector<std::byte> order_frame(uint64_t client_seq, uint64_t account, uint8_t side = 1,
                                          int64_t quantity = 10, int64_t price = 100,
                                          int64_t event_time_ns = 1'000'000'000'000) {
  return frame_of(wire::Order{.client_seq = client_seq,
                              .event_time_ns = event_time_ns,
                              .account_id = account,
                              .order_id = client_seq,
                              .instrument_id = 7,
                              .side = side,
                              .quantity = quantity,
                              .price = price});
}
inline std::vector<std::byte> hello_frame(uint64_t client_id) {
  return frame_of(wire::Hello{.client_id = client_id});
}
inline std::vector<std::byte> subscribe_frame(uint32_t topics) {
  return frame_of(wire::Subscribe{.topics = topics});
}
inline std::vector<std::byte> watermark_frame(int64_t t) {
  return frame_of(wire::Watermark{.event_time_ns = t});
}
inline void append(std::vector<std::byte>& to, const std::vector<std::byte>& bytes) {
  to.insert(to.end(), bytes.begin(), bytes.end());
}

// A frame the server sent.
struct Frame {
  uint8_t type = 0;
  std::vector<std::byte> bytes;

  wire::Decision decision() const { return wire::decode_decision(bytes); }
  wire::HelloAck hello_ack() const { return wire::decode_hello_ack(bytes); }
  wire::Alert alert() const { return wire::decode_alert(bytes); }
  uint16_t error_code() const { return wire::load<uint16_t>(bytes.data() + wire::kHeaderSize); }
  std::string error_text() const {
    return std::string(reinterpret_cast<const char*>(bytes.data()) + wire::kHeaderSize + 4,
                       bytes.size() - wire::kHeaderSize - 4);
  }
  bool is(wire::FrameType t) const { return type == static_cast<uint8_t>(t); }
};

// A blocking loopback TCP client whose reads give up after a generous timeout (so a broken
// server fails a test instead of hanging it).
class TestClient {
 public:
  static constexpr int kTimeoutSeconds = 30;

  TestClient() = default;
  explicit TestClient(uint16_t port, int rcvbuf = 0) { connect(port, rcvbuf); }
  TestClient(TestClient&& o) noexcept : fd_(std::exchange(o.fd_, -1)), buf_(std::move(o.buf_)) {}
  TestClient& operator=(TestClient&& o) noexcept {
    close();
    fd_ = std::exchange(o.fd_, -1);
    buf_ = std::move(o.buf_);
    return *this;
  }
  ~TestClient() { close(); }

  bool connect(uint16_t port, int rcvbuf = 0) {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (rcvbuf > 0) ::setsockopt(fd_, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
    timeval tv{kTimeoutSeconds, 0};
    ::setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    ::setsockopt(fd_, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    const int one = 1;
    ::setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = htons(port);
    return ::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
  }
  int fd() const { return fd_; }

  bool send(std::span<const std::byte> bytes) {
    size_t done = 0;
    while (done < bytes.size()) {
      const ssize_t n = ::send(fd_, bytes.data() + done, bytes.size() - done, MSG_NOSIGNAL);
      if (n <= 0) {
        if (n < 0 && errno == EINTR) continue;
        return false;
      }
      done += static_cast<size_t>(n);
    }
    return true;
  }
  bool send(std::string_view text) {
    return send(std::span(reinterpret_cast<const std::byte*>(text.data()), text.size()));
  }

  // The next frame, or nullopt on EOF, error or timeout.
  std::optional<Frame> read_frame() {
    if (!fill(wire::kHeaderSize)) return std::nullopt;
    const wire::FrameHeader h = wire::decode_header(buf_.data());
    if (h.length < wire::kHeaderSize || !fill(h.length)) return std::nullopt;
    Frame f{h.type, {buf_.begin(), buf_.begin() + h.length}};
    buf_.erase(buf_.begin(), buf_.begin() + h.length);
    return f;
  }
  // The next line without its '\n', or nullopt.
  std::optional<std::string> read_line() {
    for (;;) {
      for (size_t i = 0; i < buf_.size(); ++i) {
        if (buf_[i] == std::byte{'\n'}) {
          std::string line(reinterpret_cast<const char*>(buf_.data()), i);
          buf_.erase(buf_.begin(), buf_.begin() + static_cast<std::ptrdiff_t>(i) + 1);
          return line;
        }
      }
      if (!fill(buf_.size() + 1)) return std::nullopt;
    }
  }
  // True when the server closed the connection (EOF or reset) with nothing more to read.
  bool at_eof() {
    if (!buf_.empty()) return false;
    std::byte b;
    const ssize_t n = ::recv(fd_, &b, 1, 0);
    if (n == 1) {
      buf_.push_back(b);
      return false;
    }
    return n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK);
  }
  // Bytes ready to read right now without waiting.
  size_t ready_bytes() {
    std::byte tmp[4096];
    for (;;) {
      const ssize_t n = ::recv(fd_, tmp, sizeof(tmp), MSG_DONTWAIT);
      if (n <= 0) break;
      buf_.insert(buf_.end(), tmp, tmp + n);
    }
    return buf_.size();
  }

  void shutdown_write() { ::shutdown(fd_, SHUT_WR); }
  // Closes with a reset (SO_LINGER 0): the abrupt close.
  void reset() {
    linger l{1, 0};
    ::setsockopt(fd_, SOL_SOCKET, SO_LINGER, &l, sizeof(l));
    close();
  }
  void close() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }

 private:
  bool fill(size_t want) {
    std::byte tmp[65536];
    while (buf_.size() < want) {
      const ssize_t n = ::recv(fd_, tmp, sizeof(tmp), 0);
      if (n <= 0) {
        if (n < 0 && errno == EINTR) continue;
        return false;
      }
      buf_.insert(buf_.end(), tmp, tmp + n);
    }
    return true;
  }

  int fd_ = -1;
  std::vector<std::byte> buf_;
};

}  // namespace sluice::testing

#endif  // SLUICE_TESTS_IO_NETWORK_TEST_UTIL_H_
