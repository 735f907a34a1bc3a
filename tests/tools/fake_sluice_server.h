// A fake sluice daemon for the load generator's tests: it speaks the binary protocol's server
// side (SPEC 1) just enough to be loaded and measured, with faults on request.
//
// It listens on 127.0.0.1 on an ephemeral port; an accept thread starts one thread per
// connection, each with blocking sockets: recv, then for every whole frame received a reply
// (HELLO -> HELLO_ACK{last_client_seq}, TRANSACTION / ORDER -> DECISION), all replies of one
// recv in one send. Verdicts follow client_seq: every tenth (client_seq % 10 == 0) is FLAG for a
// transaction and REJECT for an order, the rest ACCEPT, so counts can be checked exactly.
// Faults: drop every Nth decision, stall once (stop reading) for a while, close a connection
// after N events, answer with an ERROR frame, never answer HELLO.
//
// Thread safety: construct and destroy on one thread; log() may be called from any thread.
#ifndef SLUICE_TESTS_TOOLS_FAKE_SLUICE_SERVER_H_
#define SLUICE_TESTS_TOOLS_FAKE_SLUICE_SERVER_H_

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "core/clock.h"
#include "core/wire_format.h"

namespace sluice::testing {

struct FakeServerConfig {
  uint16_t port = 0;             // 0: an ephemeral port (tests always use 0)
  uint64_t last_client_seq = 0;  // answered in every HELLO_ACK
  bool answer_hello = true;      // false: HELLO is read and never answered
  int64_t drop_every = 0;        // > 0: the connection's every Nth event gets no DECISION
  int64_t stall_after = -1;      // >= 0: once, after this many events over all connections...
  int stall_ms = 0;              // ...stop reading and answering for this long
  int64_t close_after = -1;      // >= 0: close each connection after this many events
  int64_t reset_after = -1;      // >= 0: reset (RST) each connection after this many events
  int64_t error_after = -1;      // >= 0: after this many events send ERROR{7, "bad frame"}, close
  int receive_buffer = 0;        // SO_RCVBUF of the accepted sockets; 0 keeps the default
  bool log_events = true;        // false: keep no per-event log (perf runs of millions)
};

// What one connection sent, for the tests to check.
struct FakeConnectionLog {
  uint64_t client_id = 0;  // from HELLO; 0 without
  int hellos = 0;
  uint32_t subscribe_topics = 0;
  std::vector<uint64_t> client_seqs;  // in arrival order
  std::vector<int64_t> event_times;
  int64_t transactions = 0;
  int64_t orders = 0;
  int64_t invalid = 0;  // events that SPEC 1.5 would answer INVALID
};

class FakeSluiceServer {
 public:
  explicit FakeSluiceServer(FakeServerConfig config = {}) : config_(config) {
    listener_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (config_.receive_buffer > 0) {
      // On the listener, so accepted sockets start with it (and a window scale to match).
      ::setsockopt(listener_, SOL_SOCKET, SO_RCVBUF, &config_.receive_buffer,
                   sizeof(config_.receive_buffer));
    }
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    address.sin_port = htons(config_.port);
    socklen_t length = sizeof(address);
    ok_ = ::bind(listener_, reinterpret_cast<sockaddr*>(&address), sizeof(address)) == 0 &&
          ::listen(listener_, 64) == 0 &&
          ::getsockname(listener_, reinterpret_cast<sockaddr*>(&address), &length) == 0;
    port_ = ntohs(address.sin_port);
    if (ok_) accept_thread_ = std::thread([this] { accept_loop(); });
  }

  ~FakeSluiceServer() {
    stopping_.store(true, std::memory_order_release);
    ::shutdown(listener_, SHUT_RDWR);  // wakes the blocked accept()
    if (accept_thread_.joinable()) accept_thread_.join();
    {
      std::lock_guard<std::mutex> lock(mutex_);
      for (const auto& c : connections_) ::shutdown(c->fd, SHUT_RDWR);
    }
    for (auto& c : connections_) {
      if (c->thread.joinable()) c->thread.join();
      ::close(c->fd);
    }
    ::close(listener_);
  }

  FakeSluiceServer(const FakeSluiceServer&) = delete;
  FakeSluiceServer& operator=(const FakeSluiceServer&) = delete;

  bool ok() const { return ok_; }
  uint16_t port() const { return port_; }
  std::string target() const { return "127.0.0.1:" + std::to_string(port_); }

  // A copy of every connection's log, in accept order.
  std::vector<FakeConnectionLog> log() const {
    std::lock_guard<std::mutex> lock(mutex_);
    std::vector<FakeConnectionLog> out;
    for (const auto& c : connections_) out.push_back(c->log);
    return out;
  }

 private:
  struct Conn {
    int fd = -1;
    std::thread thread;
    FakeConnectionLog log;  // guarded by mutex_
  };

  void accept_loop() {
    while (!stopping_.load(std::memory_order_acquire)) {
      const int fd = ::accept4(listener_, nullptr, nullptr, SOCK_CLOEXEC);
      if (fd < 0) {
        if (errno == EINTR || errno == ECONNABORTED) continue;
        return;  // shut down
      }
      const int one = 1;
      ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
      std::lock_guard<std::mutex> lock(mutex_);
      auto conn = std::make_unique<Conn>();
      conn->fd = fd;
      Conn* raw = conn.get();
      connections_.push_back(std::move(conn));
      raw->thread = std::thread([this, raw] { serve(raw); });
    }
  }

  void serve(Conn* c) {
    std::vector<std::byte> in(256 * 1024);
    std::vector<std::byte> out;
    size_t have = 0;
    int64_t events = 0;
    while (true) {
      const ssize_t r = ::recv(c->fd, in.data() + have, in.size() - have, 0);
      if (r <= 0) return;
      have += static_cast<size_t>(r);
      size_t pos = 0;
      out.clear();
      while (have - pos >= wire::kHeaderSize) {
        const wire::FrameHeader h = wire::decode_header(in.data() + pos);
        if (h.length < wire::kHeaderSize) return;
        if (have - pos < h.length) break;
        const std::span<const std::byte> frame(in.data() + pos, h.length);
        pos += h.length;
        switch (static_cast<wire::FrameType>(h.type)) {
          case wire::FrameType::kHello: {
            const wire::Hello hello = wire::decode_hello(frame);
            {
              std::lock_guard<std::mutex> lock(mutex_);
              c->log.client_id = hello.client_id;
              ++c->log.hellos;
            }
            if (config_.answer_hello) {
              append(out, wire::HelloAck{hello.client_id, config_.last_client_seq});
            }
            break;
          }
          case wire::FrameType::kSubscribe: {
            std::lock_guard<std::mutex> lock(mutex_);
            c->log.subscribe_topics = wire::decode_subscribe(frame).topics;
            break;
          }
          case wire::FrameType::kTransaction:
          case wire::FrameType::kOrder: {
            const bool order = h.type == static_cast<uint8_t>(wire::FrameType::kOrder);
            uint64_t client_seq = 0;
            int64_t event_time = 0;
            bool valid = false;
            if (order) {
              const wire::Order o = wire::decode_order(frame);
              client_seq = o.client_seq;
              event_time = o.event_time_ns;
              valid = wire::is_valid(o);
            } else {
              const wire::Transaction t = wire::decode_transaction(frame);
              client_seq = t.client_seq;
              event_time = t.event_time_ns;
              valid = wire::is_valid(t);
            }
            ++events;
            if (config_.log_events) {
              std::lock_guard<std::mutex> lock(mutex_);
              c->log.client_seqs.push_back(client_seq);
              c->log.event_times.push_back(event_time);
              ++(order ? c->log.orders : c->log.transactions);
              if (!valid) ++c->log.invalid;
            }
            const bool drop = config_.drop_every > 0 && events % config_.drop_every == 0;
            if (!drop) {
              wire::Verdict verdict = wire::Verdict::kAccept;
              if (client_seq % 10 == 0)
                verdict = order ? wire::Verdict::kReject : wire::Verdict::kFlag;
              append(out, wire::Decision{
                              .client_seq = client_seq, .seq = client_seq, .verdict = verdict});
            }
            if (config_.error_after >= 0 && events == config_.error_after) {
              std::byte frame_out[wire::kHeaderSize + wire::kErrorMinPayload + wire::kErrorMaxText];
              const size_t n = wire::encode_error(7, "bad frame", frame_out);
              out.insert(out.end(), frame_out, frame_out + n);
              send_all(c->fd, out);
              ::shutdown(c->fd, SHUT_RDWR);
              return;
            }
            if (config_.close_after >= 0 && events == config_.close_after) {
              send_all(c->fd, out);
              ::shutdown(c->fd, SHUT_RDWR);
              return;
            }
            if (config_.reset_after >= 0 && events == config_.reset_after) {
              // A zero linger makes the close send RST. dup2 closes the connection in place of
              // a close(): the number stays a (new, unconnected) socket, so the destructor's
              // shutdown and close of c->fd stay valid.
              const linger abort{.l_onoff = 1, .l_linger = 0};
              ::setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &abort, sizeof(abort));
              const int placeholder = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
              ::dup2(placeholder, c->fd);
              ::close(placeholder);
              return;
            }
            if (config_.stall_after >= 0 &&
                total_events_.fetch_add(1, std::memory_order_relaxed) + 1 == config_.stall_after) {
              // Answer what came before the stall, then stop reading: the client's sends back
              // up once the socket buffers are full.
              send_all(c->fd, out);
              out.clear();
              std::this_thread::sleep_for(std::chrono::milliseconds(config_.stall_ms));
            }
            break;
          }
          default:
            break;
        }
      }
      std::memmove(in.data(), in.data() + pos, have - pos);
      have -= pos;
      if (!send_all(c->fd, out)) return;
    }
  }

  template <typename Message>
  static void append(std::vector<std::byte>& out, const Message& m) {
    std::byte frame[wire::kMaxFrameSize];
    const size_t n = wire::encode(m, frame);
    out.insert(out.end(), frame, frame + n);
  }

  static bool send_all(int fd, const std::vector<std::byte>& data) {
    size_t done = 0;
    while (done < data.size()) {
      const ssize_t r = ::send(fd, data.data() + done, data.size() - done, MSG_NOSIGNAL);
      if (r < 0 && errno == EINTR) continue;
      if (r <= 0) return false;
      done += static_cast<size_t>(r);
    }
    return true;
  }

  const FakeServerConfig config_;
  int listener_ = -1;
  uint16_t port_ = 0;
  bool ok_ = false;
  std::atomic<bool> stopping_{false};
  std::atomic<int64_t> total_events_{0};
  std::thread accept_thread_;
  mutable std::mutex mutex_;
  std::vector<std::unique_ptr<Conn>> connections_;  // guarded by mutex_ while accepting
};

}  // namespace sluice::testing

#endif  // SLUICE_TESTS_TOOLS_FAKE_SLUICE_SERVER_H_
