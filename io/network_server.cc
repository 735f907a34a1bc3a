#include "io/network_server.h"

#include <linux/sockios.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <limits>
#include <mutex>
#include <utility>

#include "absl/hash/hash.h"
#include "absl/strings/str_cat.h"
#include "core/absl_compat.h"
#include "core/clock.h"
#include "core/wire_errors.h"
#include "io/frame_decoder.h"
#include "io/io_error.h"
#include "io/net_socket.h"
#include "io/text_codec.h"
#include "io/uring.h"

namespace sluice {
namespace {

// user_data kinds; each has its handler in Impl::handle_cqe.
enum Op : uint8_t {
  kOpAccept = 1,       // id: listener index
  kOpRecv = 2,         // id: connection id
  kOpSend = 3,         // id: connection id
  kOpCancel = 4,       // id: connection id (a cancel of its receive)
  kOpCancelOther = 5,  // a cancel of a listener's accept or a UDP receive
  kOpWake = 6,         // the wake eventfd's read
  kOpUdp = 7,          // id: UDP receive slot
};

constexpr uint16_t kRecvGroup = 1;
constexpr uint16_t kOwnBuffer = 0xFFFF;  // a chunk in the connection's own buffer
constexpr size_t kUdpBufferSize = 65536;
constexpr int64_t kMaxOutputBatch = 4096;  // output-ring events per ring per pass
constexpr int64_t kAcceptRetryNs = 10'000'000;
constexpr int kListenBacklog = 1024;
constexpr int kUdpReceiveBuffer = 4 << 20;
constexpr size_t kMaxReplyBytes = 256;  // the longest reply a connection gets (an ERROR)

// Control requests from other threads (control_ bits).
constexpr uint32_t kControlSnapshot = 1u << 0;
constexpr uint32_t kControlStop = 1u << 1;
constexpr uint32_t kControlRefuse = 1u << 2;

// A FIFO over a power-of-two array that grows and never shrinks: steady state allocates
// nothing.
template <typename T>
class Fifo {
 public:
  bool empty() const noexcept { return size_ == 0; }
  size_t size() const noexcept { return size_; }
  T& front() noexcept { return buf_[head_]; }
  T& back() noexcept { return buf_[(head_ + size_ - 1) & mask_]; }
  T& operator[](size_t i) noexcept { return buf_[(head_ + i) & mask_]; }
  void push_back(const T& v) {
    if (size_ == capacity_) grow();
    buf_[(head_ + size_) & mask_] = v;
    ++size_;
  }
  void push_front(const T& v) {
    if (size_ == capacity_) grow();
    head_ = (head_ + capacity_ - 1) & mask_;
    buf_[head_] = v;
    ++size_;
  }
  void pop_front() noexcept {
    head_ = (head_ + 1) & mask_;
    --size_;
  }
  void pop_back() noexcept { --size_; }
  void clear() noexcept {
    head_ = 0;
    size_ = 0;
  }

 private:
  void grow() {
    const size_t capacity = capacity_ == 0 ? 8 : capacity_ * 2;
    auto next = std::make_unique<T[]>(capacity);
    for (size_t i = 0; i < size_; ++i) next[i] = (*this)[i];
    buf_ = std::move(next);
    capacity_ = capacity;
    mask_ = capacity - 1;
    head_ = 0;
  }

  std::unique_ptr<T[]> buf_;
  size_t capacity_ = 0;
  size_t mask_ = 0;
  size_t head_ = 0;
  size_t size_ = 0;
};

// A growable byte buffer that keeps its allocation when cleared.
class ByteBuffer {
 public:
  std::byte* data() noexcept { return data_.get(); }
  size_t size() const noexcept { return size_; }
  bool empty() const noexcept { return size_ == 0; }
  // Extends the buffer by n bytes and returns where they go.
  std::byte* extend(size_t n) {
    if (size_ + n > capacity_) grow(size_ + n);
    std::byte* p = data_.get() + size_;
    size_ += n;
    return p;
  }
  void shrink_to(size_t n) noexcept { size_ = n; }
  void append(const std::byte* p, size_t n) { std::memcpy(extend(n), p, n); }
  void clear() noexcept { size_ = 0; }
  void swap(ByteBuffer& o) noexcept {
    std::swap(data_, o.data_);
    std::swap(size_, o.size_);
    std::swap(capacity_, o.capacity_);
  }

 private:
  void grow(size_t need) {
    size_t capacity = capacity_ == 0 ? 4096 : capacity_;
    while (capacity < need) capacity *= 2;
    auto next = std::make_unique<std::byte[]>(capacity);
    if (size_ > 0) std::memcpy(next.get(), data_.get(), size_);
    data_ = std::move(next);
    capacity_ = capacity;
  }

  std::unique_ptr<std::byte[]> data_;
  size_t size_ = 0;
  size_t capacity_ = 0;
};

enum class Protocol : uint8_t { kBinary, kText };

enum class ConnState : uint8_t {
  kFree,       // the slot is unused
  kOpen,       // reading and answering
  kDraining,   // input is over (the client's EOF, an ERROR, a stop): answering what is owed
  kLingering,  // answered and write side shut: discarding input until the client closes
  kClosing,    // shut both ways; freed once its requests have completed
};

// Received bytes not decoded yet: a provided buffer (or the connection's own) from an offset.
struct InputChunk {
  const std::byte* data = nullptr;
  uint32_t size = 0;
  uint16_t buffer = kOwnBuffer;
  int64_t receive_ticks = 0;
};

// Replies held behind owed decisions: bytes [previous mark's end, end) of `held` go out once
// every event the connection published up to journal sequence after_seq is answered.
struct HeldMark {
  int64_t after_seq = 0;
  size_t end = 0;
};

struct Connection {
  uint32_t id = 0;  // (generation << 16) | slot; 0 while free
  uint16_t generation = 0;
  ConnState state = ConnState::kFree;
  Protocol protocol = Protocol::kBinary;
  int fd = -1;
  bool shut = false;  // shutdown(SHUT_RDWR) done

  uint64_t client_id = 0;
  bool seen_frame = false;  // a known frame has arrived (HELLO must be the first)
  bool subscribed = false;

  FrameDecoder frames;
  text::LineDecoder lines;
  Fifo<InputChunk> pending;
  size_t pending_bytes = 0;
  std::unique_ptr<std::byte[]> own_buffer;  // without a provided-buffer ring
  bool recv_armed = false;
  bool cancel_sent = false;
  bool eof = false;
  bool blocked_in_flight = false;

  // Journal sequences of the events it published, in order, until answered (negated once
  // answered while an older one is still owed).
  Fifo<int64_t> outstanding;
  uint64_t in_flight = 0;
  int64_t last_published = 0;
  ByteBuffer held;
  size_t held_released = 0;
  Fifo<HeldMark> held_marks;

  ByteBuffer out;      // filling
  ByteBuffer sending;  // the send in flight
  size_t sent = 0;
  bool send_in_flight = false;
  int ops = 0;  // requests in flight that name this connection
  int64_t linger_deadline_ns = 0;
  int64_t linger_limit_ns = 0;  // past this, lingering ends even with output unacknowledged

  // List memberships (a slot is in each list at most once; stale entries are skipped).
  bool in_ready = false;
  bool in_flush = false;
  bool in_recv_check = false;
  bool in_buffer_wait = false;
  bool in_linger = false;
};

struct Listener {
  int fd = -1;
  Protocol protocol = Protocol::kBinary;
  bool armed = false;
  bool closing = false;
  int64_t retry_at_ns = 0;
  SocketAddress address;
};

struct UdpSlot {
  std::unique_ptr<std::byte[]> buffer;
  msghdr msg{};
  iovec iov{};
  sockaddr_storage from{};
  bool armed = false;
  bool holding = false;  // a datagram accepted and not fully published yet
  size_t offset = 0;
  size_t size = 0;
  int64_t receive_ticks = 0;
};

struct SenderKey {
  std::array<uint8_t, 16> addr{};
  uint16_t port = 0;
  uint8_t family = 0;
  bool operator==(const SenderKey&) const = default;
  template <typename H>
  friend H AbslHashValue(H h, const SenderKey& k) {
    return H::combine(std::move(h), k.addr, k.port, k.family);
  }
};

SenderKey sender_key(const sockaddr_storage& from) {
  SenderKey k;
  k.family = static_cast<uint8_t>(from.ss_family);
  if (from.ss_family == AF_INET) {
    const auto* a = reinterpret_cast<const sockaddr_in*>(&from);
    std::memcpy(k.addr.data(), &a->sin_addr, 4);
    k.port = a->sin_port;
  } else if (from.ss_family == AF_INET6) {
    const auto* a = reinterpret_cast<const sockaddr_in6*>(&from);
    std::memcpy(k.addr.data(), &a->sin6_addr, 16);
    k.port = a->sin6_port;
  }
  return k;
}

enum class Step : uint8_t {
  kOk,        // consumed; go on
  kRingFull,  // the input ring has no free slot: stop everything, keep the input
  kInFlight,  // this connection is at max_in_flight: stop it, keep its input
  kClosed,    // the connection's input is over (an error closed it)
};

}  // namespace

class NetworkServer::Impl {
 public:
  Impl(NetworkOptions options, int64_t first_sequence, ClientSeqTable client_seqs, InputRing& input,
       std::vector<OutputRing*> outputs, NetworkCounters* counters)
      : options_(std::move(options)),
        counters_(counters != nullptr ? counters : &own_counters_),
        input_(input),
        outputs_(std::move(outputs)),
        client_seqs_(std::move(client_seqs)),
        first_sequence_(first_sequence) {
    for (size_t k = 0; k < outputs_.size(); ++k) {
      output_progress_.push_back(std::make_unique<Sequence>());
      next_output_.push_back(0);
    }
  }
  ~Impl();

  absl::Status init();
  absl::Status start();
  int poll();
  int send_outputs();
  void wait(int64_t timeout_ns);
  void wake() noexcept;
  void request(uint32_t bits) noexcept {
    // Release: the refusal reason written before is visible to the pass that sees the bit.
    control_.fetch_or(bits, std::memory_order_release);
    wake();
  }
  void refuse_input(std::string_view reason, int64_t answered_through) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (refuse_reason_.empty()) refuse_reason_ = std::string(reason);
      refuse_answered_through_ = std::min(refuse_answered_through_, answered_through);
    }
    request(kControlRefuse);
  }
  absl::Status status() const {
    std::lock_guard<std::mutex> lock(mu_);
    return status_;
  }
  int64_t next_sequence() const noexcept { return first_sequence_ + next_; }
  int wake_fd() const noexcept { return wake_fd_; }
  absl::Status restrict_kernel_workers(std::span<const int> cpus) {
    return uring_->restrict_workers(cpus);
  }

  NetworkOptions options_;
  NetworkCounters own_counters_;
  NetworkCounters* counters_;
  InputRing& input_;
  std::vector<OutputRing*> outputs_;
  std::vector<std::unique_ptr<Sequence>> output_progress_;
  std::vector<int64_t> next_output_;
  ClientSeqTable client_seqs_;
  const int64_t first_sequence_;
  Histogram latency_;
  std::atomic<bool> drained_{false};
  std::string describe_;
  uint16_t port_ = 0, text_port_ = 0, udp_port_ = 0;

 private:
  // Set-up.
  void arm_accept(Listener& l, size_t index);
  void arm_wake();
  void arm_udp(size_t index);

  // Completions.
  void handle_cqe(const io_uring_cqe& cqe);
  void on_accept(size_t index, const io_uring_cqe& cqe);
  void on_recv(uint32_t id, const io_uring_cqe& cqe);
  void on_send(uint32_t id, const io_uring_cqe& cqe);
  void on_udp(size_t index, const io_uring_cqe& cqe);

  // Connections.
  Connection* lookup(uint32_t id) noexcept {
    const uint32_t slot = id & 0xFFFF;
    if (id == 0 || slot >= slots_.size()) return nullptr;
    Connection& c = slots_[slot];
    return c.id == id && c.state != ConnState::kFree ? &c : nullptr;
  }
  uint32_t slot_of(const Connection& c) const noexcept { return c.id & 0xFFFF; }
  void open_connection(int fd, Protocol protocol);
  void refuse_connection(int fd, Protocol protocol, wire::ErrorCode code, std::string_view text);
  void begin_drain(Connection& c);
  void check_drain_done(Connection& c);
  void close_connection(Connection& c);
  void drop(Connection& c, Counter& why);
  void after_ops(Connection& c);
  void free_slot(Connection& c);
  void discard_input(Connection& c);
  void release_chunk(const InputChunk& chunk);

  // Input.
  int process_ready();
  Step process_connection(Connection& c);
  Step decode_binary(Connection& c, std::span<const std::byte>& input, int64_t ticks);
  Step decode_text(Connection& c, std::span<const std::byte>& input, int64_t ticks);
  Step handle_frame(Connection& c, std::span<const std::byte> frame, int64_t ticks);
  int process_udp();
  bool publish(std::span<const std::byte> frame, uint64_t client_id, uint32_t connection_id,
               int64_t ticks);
  void publish_cursor();
  bool recv_wanted(const Connection& c) const noexcept;
  void arm_recv(Connection& c);
  void check_recv(Connection& c);
  void maintain_receives();

  // Replies and output.
  void queue_reply(Connection& c, const std::byte* bytes, size_t size);
  void reply_decision(Connection& c, uint64_t client_seq, wire::Verdict verdict);
  void reply_error(Connection& c, wire::ErrorCode code, std::string_view text);
  void reply_hello_ack(Connection& c, uint64_t client_id, uint64_t last);
  void release_held(Connection& c);
  void abandon_after(Connection& c, int64_t through);
  bool mark_answered(Connection& c, int64_t seq);
  bool check_output_bound(Connection& c);
  void mark_flush(Connection& c);
  void mark_ready(Connection& c);
  void mark_recv_check(Connection& c);
  int process_outputs();
  void submit_pass();
  void route(const OutputEvent& e, int64_t now_ns);
  void flush_sends();
  void set_subscribed(Connection& c, bool on);

  // Control.
  void apply_control(uint32_t bits);
  void stop_input();
  void close_listener(Listener& l);
  void close_udp();
  void check_deadlines();
  int unacknowledged_output(const Connection& c) const;
  void update_drained();
  bool outputs_pending() const noexcept;
  void fail(absl::Status status);
  io_uring_sqe* sqe();
  int64_t pass_ticks() noexcept {
    if (pass_ticks_ == 0) pass_ticks_ = now_ticks();
    return pass_ticks_;
  }
  int64_t pass_now_ns() noexcept {
    if (pass_now_ns_ == 0) pass_now_ns_ = now_ns();
    return pass_now_ns_;
  }

  std::unique_ptr<Uring> uring_;
  std::unique_ptr<ProvidedBufferRing> buffers_;
  bool multishot_accept_ = false;
  bool multishot_recv_ = false;
  bool started_ = false;
  // A connection stopped at max_in_flight is read again once this few are in flight.
  uint64_t resume_in_flight_ = 0;

  std::array<Listener, 2> listeners_;  // 0 binary, 1 text
  int udp_fd_ = -1;
  bool udp_closing_ = false;
  std::vector<UdpSlot> udp_;
  Fifo<uint32_t> udp_ready_;
  absl::flat_hash_map<SenderKey, uint64_t> udp_senders_;

  std::vector<Connection> slots_;
  Fifo<uint32_t> free_;
  uint32_t open_count_ = 0;
  Fifo<uint32_t> ready_;
  Fifo<uint32_t> flush_;
  Fifo<uint32_t> recv_check_;
  Fifo<uint32_t> buffer_wait_;
  std::vector<uint32_t> lingering_;
  std::vector<uint32_t> subscribers_;
  std::array<std::byte, wire::kMaxFrameSize> text_frame_{};

  // Input ring: ring sequences [0, next_) are filled, [0, claimed_] claimed.
  int64_t next_ = 0;
  int64_t claimed_ = -1;
  int64_t published_ = -1;
  bool ring_full_ = false;
  int64_t ring_full_since_ns_ = 0;
  bool input_stopped_ = false;  // stop or refusal: nothing more is decoded

  bool snapshot_due_ = false;
  bool snapshot_deferred_ = false;  // a due barrier is waiting for options_.snapshot_gate
  // True unless the gate holds a due barrier back; counts each time it starts to.
  bool snapshot_gate_open() noexcept {
    if (options_.snapshot_gate == nullptr ||
        options_.snapshot_gate->load(std::memory_order_acquire)) {
      snapshot_deferred_ = false;
      return true;
    }
    if (!snapshot_deferred_) counters_->snapshot_barriers_deferred.add();
    snapshot_deferred_ = true;
    return false;
  }
  int64_t events_since_snapshot_ = 0;
  int64_t last_snapshot_ns_ = 0;

  int64_t pass_ticks_ = 0;
  int64_t pass_now_ns_ = 0;
  int64_t pass_realtime_ns_ = 0;

  std::atomic<uint32_t> control_{0};
  uint32_t applied_ = 0;
  int64_t drain_deadline_ns_ = 0;
  std::string refuse_reason_;  // guarded by mu_ until kControlRefuse is applied
  // Events after this journal sequence will never be answered (guarded by mu_ likewise).
  int64_t refuse_answered_through_ = std::numeric_limits<int64_t>::max();

  int wake_fd_ = -1;
  uint64_t wake_value_ = 0;
  bool wake_armed_ = false;
  // kParked while wait() sleeps (or is about to); kNotified once a wake() came since.
  static constexpr uint32_t kParked = 1u << 0;
  static constexpr uint32_t kNotified = 1u << 1;
  std::atomic<uint32_t> park_state_{0};

  mutable std::mutex mu_;
  absl::Status status_;
  bool failed_ = false;
};

// ---------------------------------------------------------------------------------------------
// Set-up and teardown.

absl::Status NetworkServer::Impl::init() {
  const NetworkOptions& o = options_;
  if (first_sequence_ < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("network: first sequence ", first_sequence_, " must be >= 1"));
  }
  if (o.max_connections < 1 || o.max_connections > 65536) {
    return absl::InvalidArgumentError(
        absl::StrCat("network: max_connections ", o.max_connections, " must be in 1..65536"));
  }
  if (o.max_in_flight < 1 || o.max_output_bytes < 4096 || o.max_input_bytes < 1 ||
      o.recv_buffer_size < 64) {
    return absl::InvalidArgumentError(
        "network: max_in_flight >= 1, max_output_bytes >= 4096, max_input_bytes >= 1 and "
        "recv_buffer_size >= 64 are required");
  }
  if (o.listen.empty() && o.text_listen.empty()) {
    return absl::InvalidArgumentError("network: no listener (listen and text_listen are empty)");
  }
  const UringFeatures& f = probe_uring();
  if (!f.available) return absl::UnavailableError(absl::StrCat("network: ", f.describe()));

  listeners_[0].protocol = Protocol::kBinary;
  listeners_[1].protocol = Protocol::kText;
  const std::string* addresses[2] = {&o.listen, &o.text_listen};
  uint16_t* ports[2] = {&port_, &text_port_};
  for (size_t i = 0; i < 2; ++i) {
    if (addresses[i]->empty()) continue;
    absl::StatusOr<SocketAddress> a = parse_socket_address(*addresses[i]);
    if (!a.ok()) return a.status();
    absl::StatusOr<int> fd = listen_tcp(*a, kListenBacklog);
    if (!fd.ok()) return fd.status();
    listeners_[i].fd = *fd;
    absl::StatusOr<SocketAddress> bound = local_address(*fd);
    if (!bound.ok()) return bound.status();
    listeners_[i].address = *bound;
    *ports[i] = bound->port();
  }
  if (o.udp && listeners_[0].fd >= 0) {
    absl::StatusOr<int> fd = bind_udp(listeners_[0].address, kUdpReceiveBuffer);
    if (!fd.ok()) return fd.status();
    udp_fd_ = *fd;
    udp_port_ = port_;
    udp_.resize(std::max<uint32_t>(1, o.udp_receives));
    for (UdpSlot& s : udp_) s.buffer = std::make_unique<std::byte[]>(kUdpBufferSize);
  }

  // The ring is set up here and bound to the agent's thread by start() (SINGLE_ISSUER binds
  // it to the thread that enables it). Without disabled start, no SINGLE_ISSUER either.
  const bool bind_later = f.start_disabled;
  absl::StatusOr<std::unique_ptr<Uring>> uring =
      Uring::create(UringOptions{.entries = 1024,
                                 .cq_entries = 16384,
                                 .single_issuer = bind_later,
                                 .coop_taskrun = true,
                                 .defer_taskrun = bind_later && o.allow_defer_taskrun,
                                 .taskrun_flag = true,
                                 .start_disabled = bind_later});
  if (!uring.ok()) return uring.status();
  uring_ = std::move(*uring);

  const bool buffer_ring = o.allow_buffer_ring && f.buf_ring;
  if (buffer_ring) {
    absl::StatusOr<std::unique_ptr<ProvidedBufferRing>> b =
        ProvidedBufferRing::create(*uring_, kRecvGroup, o.recv_buffers, o.recv_buffer_size);
    if (!b.ok()) return b.status();
    buffers_ = std::move(*b);
  }
  multishot_accept_ = o.allow_multishot && f.multishot_accept;
  multishot_recv_ = o.allow_multishot && f.multishot_recv && buffers_ != nullptr;

  resume_in_flight_ = o.max_in_flight - std::max<uint32_t>(1, o.max_in_flight / 4);
  slots_ = std::vector<Connection>(o.max_connections);
  for (uint32_t i = 0; i < o.max_connections; ++i) free_.push_back(i);

  wake_fd_ = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (wake_fd_ < 0) return io_error(errno, "eventfd", "(network wake)");

  describe_ = absl::StrCat(
      "io_uring (", uring_->describe_flags(), "); ",
      multishot_accept_ ? "multishot accept" : "single-shot accept", "; ",
      multishot_recv_ ? "multishot recv" : "single-shot recv", " into ",
      buffers_ != nullptr
          ? absl::StrCat(o.recv_buffers, " x ", o.recv_buffer_size, " B provided buffers")
          : absl::StrCat("a ", o.recv_buffer_size, " B buffer per connection"),
      "; binary ", listeners_[0].fd >= 0 ? listeners_[0].address.to_string() : "off", ", text ",
      listeners_[1].fd >= 0 ? listeners_[1].address.to_string() : "off", ", udp ",
      udp_fd_ >= 0
          ? absl::StrCat(listeners_[0].address.to_string(), " (", udp_.size(), " receives)")
          : "off");
  return absl::OkStatus();
}

NetworkServer::Impl::~Impl() {
  for (Connection& c : slots_) {
    if (c.fd >= 0) ::close(c.fd);
  }
  for (Listener& l : listeners_) {
    if (l.fd >= 0) ::close(l.fd);
  }
  if (udp_fd_ >= 0) ::close(udp_fd_);
  // The buffer ring unregisters from the ring, so it goes first; closing the ring cancels
  // whatever is still in flight.
  buffers_.reset();
  uring_.reset();
  if (wake_fd_ >= 0) ::close(wake_fd_);
}

absl::Status NetworkServer::Impl::start() {
  if (started_) return absl::OkStatus();
  if (absl::Status s = uring_->enable(); !s.ok()) return s;
  started_ = true;
  last_snapshot_ns_ = now_ns();
  for (size_t i = 0; i < listeners_.size(); ++i) {
    if (listeners_[i].fd >= 0) arm_accept(listeners_[i], i);
  }
  for (size_t i = 0; i < udp_.size(); ++i) arm_udp(i);
  arm_wake();
  const int rc = uring_->submit();
  if (rc < 0) return io_error(rc, "io_uring_submit", "(network start)");
  return absl::OkStatus();
}

void NetworkServer::Impl::fail(absl::Status status) {
  if (failed_) return;
  failed_ = true;
  {
    std::lock_guard<std::mutex> lock(mu_);
    status_ = status;
    if (refuse_reason_.empty()) refuse_reason_ = std::string(status.message());
  }
  control_.fetch_or(kControlRefuse, std::memory_order_release);
}

io_uring_sqe* NetworkServer::Impl::sqe() {
  io_uring_sqe* s = uring_->get_sqe();
  if (s == nullptr) fail(absl::ResourceExhaustedError("network: the io_uring refused requests"));
  return s;
}

void NetworkServer::Impl::arm_accept(Listener& l, size_t index) {
  if (l.armed || l.closing || l.fd < 0) return;
  io_uring_sqe* s = sqe();
  if (s == nullptr) return;
  const uint64_t ud = make_user_data(kOpAccept, index);
  if (multishot_accept_) {
    prep_multishot_accept(s, l.fd, ud);
  } else {
    prep_accept(s, l.fd, ud);
  }
  l.armed = true;
}

void NetworkServer::Impl::arm_wake() {
  if (wake_armed_) return;
  io_uring_sqe* s = sqe();
  if (s == nullptr) return;
  io_uring_prep_read(s, wake_fd_, &wake_value_, sizeof(wake_value_), 0);
  io_uring_sqe_set_data64(s, make_user_data(kOpWake, 0));
  wake_armed_ = true;
}

void NetworkServer::Impl::arm_udp(size_t index) {
  UdpSlot& u = udp_[index];
  if (u.armed || u.holding || udp_closing_ || udp_fd_ < 0) return;
  io_uring_sqe* s = sqe();
  if (s == nullptr) return;
  u.iov = iovec{u.buffer.get(), kUdpBufferSize};
  u.msg = msghdr{};
  u.msg.msg_name = &u.from;
  u.msg.msg_namelen = sizeof(u.from);
  u.msg.msg_iov = &u.iov;
  u.msg.msg_iovlen = 1;
  io_uring_prep_recvmsg(s, udp_fd_, &u.msg, 0);
  io_uring_sqe_set_data64(s, make_user_data(kOpUdp, index));
  u.armed = true;
}

// ---------------------------------------------------------------------------------------------
// The pass.

int NetworkServer::Impl::poll() {
  if (!started_) {
    if (absl::Status s = start(); !s.ok()) {
      fail(std::move(s));
      return 0;
    }
  }
  pass_ticks_ = 0;
  pass_now_ns_ = 0;
  pass_realtime_ns_ = 0;
  int work = 0;

  // Acquire: pairs with request()'s release (the refusal reason).
  if (const uint32_t bits = control_.load(std::memory_order_acquire); bits != applied_) {
    apply_control(bits);
    ++work;
  }

  // Completions: enter the kernel only when it holds some (deferred task work, overflow).
  if (uring_->cq_ready() == 0 && uring_->pending_kernel_work()) {
    (void)uring_->submit_and_get_events();
  }
  if (uring_->cq_ready() > 0) {
    pass_ticks();
    work += static_cast<int>(uring_->drain([this](const io_uring_cqe& c) { handle_cqe(c); }));
  }

  // Input: decode what was received into the input ring, then let the shards see it.
  if (options_.snapshot_interval_ns > 0 && !snapshot_due_ &&
      pass_now_ns() - last_snapshot_ns_ >= options_.snapshot_interval_ns) {
    snapshot_due_ = true;
  }
  work += process_ready();
  work += process_udp();
  publish_cursor();

  // Output: the shards' answers into connection buffers, then one send per connection.
  work += process_outputs();
  flush_sends();

  maintain_receives();
  if (!lingering_.empty() || drain_deadline_ns_ != 0) check_deadlines();
  for (size_t i = 0; i < listeners_.size(); ++i) {
    Listener& l = listeners_[i];
    if (!l.armed && !l.closing && l.fd >= 0 && pass_now_ns() >= l.retry_at_ns) {
      arm_accept(l, i);
    }
  }
  arm_wake();
  if (applied_ & kControlStop) update_drained();

  submit_pass();
  return work;
}

int NetworkServer::Impl::send_outputs() {
  pass_ticks_ = 0;
  pass_now_ns_ = 0;
  pass_realtime_ns_ = 0;
  const int work = process_outputs();
  flush_sends();
  submit_pass();
  return work;
}

void NetworkServer::Impl::submit_pass() {
  // One system call submits what the pass queued and collects the completions it caused (a
  // send that went out at once), so the next pass finds them without entering.
  if (uring_->sq_pending() > 0) {
    const int rc = uring_->submit_and_get_events();
    if (rc < 0 && rc != -EINTR && rc != -EAGAIN && rc != -EBUSY) {
      fail(io_error(rc, "io_uring_submit", "(network)"));
    }
  }
}

void NetworkServer::Impl::handle_cqe(const io_uring_cqe& cqe) {
  const uint64_t id = user_data_id(cqe.user_data);
  switch (user_data_op(cqe.user_data)) {
    case kOpAccept: on_accept(static_cast<size_t>(id), cqe); break;
    case kOpRecv: on_recv(static_cast<uint32_t>(id), cqe); break;
    case kOpSend: on_send(static_cast<uint32_t>(id), cqe); break;
    case kOpCancel:
      if (Connection* c = lookup(static_cast<uint32_t>(id))) {
        --c->ops;
        c->cancel_sent = false;
        after_ops(*c);
      }
      break;
    case kOpCancelOther: break;
    case kOpWake: wake_armed_ = false; break;
    case kOpUdp: on_udp(static_cast<size_t>(id), cqe); break;
    default: break;
  }
}

bool NetworkServer::Impl::outputs_pending() const noexcept {
  for (size_t k = 0; k < outputs_.size(); ++k) {
    if (outputs_[k]->cursor().get() >= next_output_[k]) return true;
  }
  return false;
}

void NetworkServer::Impl::wait(int64_t timeout_ns) {
  if (!started_) {
    if (absl::Status s = start(); !s.ok()) {
      fail(std::move(s));
      return;
    }
  }
  if (uring_->cq_ready() > 0 || uring_->pending_kernel_work() || outputs_pending() ||
      control_.load(std::memory_order_acquire) != applied_) {
    return;
  }
  const bool holding = !ready_.empty() || !udp_ready_.empty();
  if (holding && input_.remaining_capacity() > 0) return;
  arm_wake();
  // The park handshake with wake(): both sides read-modify-write park_state_, and RMWs on one
  // atomic are totally ordered. Either wake()'s fetch_or came first (we see kNotified and,
  // through acq_rel, what the waker published before it: no sleep), or ours did (wake() sees
  // kParked and writes the eventfd, whose armed read ends the sleep). No wake-up is lost.
  const uint32_t prev = park_state_.exchange(kParked, std::memory_order_acq_rel);
  if ((prev & kNotified) != 0 || outputs_pending() ||
      control_.load(std::memory_order_acquire) != applied_) {
    park_state_.store(0, std::memory_order_relaxed);
    return;
  }
  int64_t t = timeout_ns;
  if (holding) t = std::min(t, options_.held_input_wait_ns);
  if (!lingering_.empty() || drain_deadline_ns_ != 0) t = std::min<int64_t>(t, 1'000'000);
  (void)uring_->wait(t);
  // Relaxed: a wake() racing with this store either saw kParked (and wrote the eventfd: the
  // next wait returns at once) or finds us awake, about to poll anyway.
  park_state_.store(0, std::memory_order_relaxed);
}

void NetworkServer::Impl::wake() noexcept {
  // acq_rel RMW: ordered after the caller's publication, and against wait()'s exchange.
  if ((park_state_.fetch_or(kNotified, std::memory_order_acq_rel) & kParked) != 0) {
    const uint64_t one = 1;
    // EAGAIN means the counter is full: the server has a wake-up pending anyway.
    (void)!::write(wake_fd_, &one, sizeof(one));
  }
}

// ---------------------------------------------------------------------------------------------
// Accepting and closing connections.

void NetworkServer::Impl::on_accept(size_t index, const io_uring_cqe& cqe) {
  Listener& l = listeners_[index];
  if (!cqe_more(cqe)) l.armed = false;
  if (cqe.res < 0) {
    if (cqe.res != -ECANCELED && !l.closing) l.retry_at_ns = pass_now_ns() + kAcceptRetryNs;
  } else {
    const int fd = cqe.res;
    if (l.closing || (applied_ & kControlStop)) {
      refuse_connection(fd, l.protocol, wire::ErrorCode::kShuttingDown, "shutting down");
    } else if (open_count_ >= options_.max_connections) {
      refuse_connection(
          fd, l.protocol, wire::ErrorCode::kTooManyConnections,
          absl::StrCat("the server is at its limit of ", options_.max_connections, " connections"));
    } else {
      open_connection(fd, l.protocol);
    }
  }
  if (l.closing && !l.armed && l.fd >= 0) {
    ::close(l.fd);
    l.fd = -1;
  }
}

void NetworkServer::Impl::refuse_connection(int fd, Protocol protocol, wire::ErrorCode code,
                                            std::string_view text) {
  counters_->connections_refused.add();
  std::array<std::byte, kMaxReplyBytes> buf;
  size_t n;
  if (protocol == Protocol::kBinary) {
    n = wire::encode_error(static_cast<uint16_t>(code), text, buf);
  } else {
    n = text::format_error(static_cast<uint16_t>(code), text,
                           std::span(reinterpret_cast<char*>(buf.data()), buf.size()));
  }
  // Best effort: a fresh socket's send buffer is empty, so this does not block or come short.
  (void)!::send(fd, buf.data(), n, MSG_DONTWAIT | MSG_NOSIGNAL);
  ::shutdown(fd, SHUT_WR);
  ::close(fd);
}

void NetworkServer::Impl::open_connection(int fd, Protocol protocol) {
  const uint32_t slot = free_.front();
  free_.pop_front();
  Connection& c = slots_[slot];
  c.generation = c.generation == 0xFFFF ? 1 : static_cast<uint16_t>(c.generation + 1);
  c.id = (static_cast<uint32_t>(c.generation) << 16) | slot;
  c.state = ConnState::kOpen;
  c.protocol = protocol;
  c.fd = fd;
  c.shut = false;
  c.client_id = 0;
  c.seen_frame = false;
  c.subscribed = false;
  c.frames.reset();
  c.lines.reset();
  c.pending.clear();
  c.pending_bytes = 0;
  if (buffers_ == nullptr && c.own_buffer == nullptr) {
    c.own_buffer = std::make_unique<std::byte[]>(options_.recv_buffer_size);
  }
  c.recv_armed = false;
  c.cancel_sent = false;
  c.eof = false;
  c.blocked_in_flight = false;
  c.outstanding.clear();
  c.in_flight = 0;
  c.last_published = 0;
  c.held.clear();
  c.held_released = 0;
  c.held_marks.clear();
  c.out.clear();
  c.sending.clear();
  c.sent = 0;
  c.send_in_flight = false;
  c.ops = 0;
  c.linger_deadline_ns = 0;
  const int one = 1;
  (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  if (options_.send_buffer_bytes > 0) {
    (void)setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &options_.send_buffer_bytes,
                     sizeof(options_.send_buffer_bytes));
  }
  ++open_count_;
  counters_->connections_accepted.add();
  counters_->connections_open.set(open_count_);
  if (applied_ & kControlRefuse) {
    std::string reason;
    {
      std::lock_guard<std::mutex> lock(mu_);
      reason = refuse_reason_;
    }
    reply_error(c, wire::ErrorCode::kInputRefused, absl::StrCat("input refused: ", reason));
    begin_drain(c);
  }
  mark_recv_check(c);
}

void NetworkServer::Impl::release_chunk(const InputChunk& chunk) {
  if (chunk.buffer != kOwnBuffer) buffers_->recycle(chunk.buffer);
}

void NetworkServer::Impl::discard_input(Connection& c) {
  while (!c.pending.empty()) {
    release_chunk(c.pending.front());
    c.pending.pop_front();
  }
  c.pending_bytes = 0;
}

void NetworkServer::Impl::begin_drain(Connection& c) {
  if (c.state != ConnState::kOpen) return;
  c.state = ConnState::kDraining;
  // A closing connection gets what it is owed, not new alerts (they could keep it open).
  if (c.subscribed) set_subscribed(c, false);
  discard_input(c);
  mark_recv_check(c);  // the receive stays armed to discard what still comes
  check_drain_done(c);
}

void NetworkServer::Impl::check_drain_done(Connection& c) {
  if (c.state != ConnState::kDraining) return;
  if (!c.outstanding.empty() || !c.held_marks.empty() || !c.out.empty() || c.send_in_flight) {
    return;
  }
  if (c.eof) {  // the client has nothing more to send: close now
    close_connection(c);
    return;
  }
  // Shut our side (the client reads what we sent, then EOF) and read on, discarding, until the
  // client closes: closing with its data unread would reset the connection and could destroy
  // the last frames before the client reads them.
  ::shutdown(c.fd, SHUT_WR);
  c.state = ConnState::kLingering;
  c.linger_deadline_ns = pass_now_ns() + options_.linger_ns;
  c.linger_limit_ns = pass_now_ns() + std::max(options_.linger_ns, options_.linger_limit_ns);
  if (!c.in_linger) {
    c.in_linger = true;
    lingering_.push_back(slot_of(c));
  }
  mark_recv_check(c);
}

void NetworkServer::Impl::close_connection(Connection& c) {
  if (c.state == ConnState::kClosing || c.state == ConnState::kFree) return;
  if (c.subscribed) set_subscribed(c, false);
  c.state = ConnState::kClosing;
  discard_input(c);
  c.out.clear();
  c.held.clear();
  c.held_marks.clear();
  c.held_released = 0;
  // Wakes the armed receive (it completes with EOF) and fails a stuck send, so the requests
  // that name this connection finish and its slot can be freed.
  if (!c.shut) {
    ::shutdown(c.fd, SHUT_RDWR);
    c.shut = true;
  }
  counters_->connections_closed.add();
  after_ops(c);
}

void NetworkServer::Impl::drop(Connection& c, Counter& why) {
  if (c.state == ConnState::kClosing || c.state == ConnState::kFree) return;
  why.add();
  close_connection(c);
}

void NetworkServer::Impl::after_ops(Connection& c) {
  if (c.state == ConnState::kClosing && c.ops == 0) free_slot(c);
}

void NetworkServer::Impl::free_slot(Connection& c) {
  ::close(c.fd);
  c.fd = -1;
  c.state = ConnState::kFree;
  c.id = 0;
  c.outstanding.clear();
  c.in_flight = 0;
  c.sending.clear();
  --open_count_;
  counters_->connections_open.set(open_count_);
  free_.push_back(static_cast<uint32_t>(&c - slots_.data()));
}

void NetworkServer::Impl::set_subscribed(Connection& c, bool on) {
  if (c.subscribed == on) return;
  c.subscribed = on;
  const uint32_t slot = slot_of(c);
  if (on) {
    subscribers_.push_back(slot);
  } else {
    auto it = std::find(subscribers_.begin(), subscribers_.end(), slot);
    if (it != subscribers_.end()) {
      *it = subscribers_.back();
      subscribers_.pop_back();
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Receiving.

bool NetworkServer::Impl::recv_wanted(const Connection& c) const noexcept {
  if (c.eof || c.recv_armed) return false;
  switch (c.state) {
    case ConnState::kDraining:
    case ConnState::kLingering: return true;  // reading only to discard
    case ConnState::kOpen:
      return !input_stopped_ && c.pending_bytes < options_.max_input_bytes &&
             c.in_flight <= resume_in_flight_ && (buffers_ != nullptr || c.pending.empty());
    default: return false;
  }
}

void NetworkServer::Impl::arm_recv(Connection& c) {
  io_uring_sqe* s = sqe();
  if (s == nullptr) return;
  const uint64_t ud = make_user_data(kOpRecv, c.id);
  if (buffers_ == nullptr) {
    prep_recv(s, c.fd, c.own_buffer.get(), options_.recv_buffer_size, ud);
  } else if (multishot_recv_) {
    prep_multishot_recv(s, c.fd, kRecvGroup, ud);
  } else {
    prep_recv_select(s, c.fd, kRecvGroup, ud);
  }
  c.recv_armed = true;
  ++c.ops;
}

void NetworkServer::Impl::check_recv(Connection& c) {
  if (c.state == ConnState::kFree || c.state == ConnState::kClosing) return;
  if (!c.recv_armed) {
    if (!recv_wanted(c)) return;
    if (buffers_ == nullptr || buffers_->available() > 0) {
      arm_recv(c);
    } else if (!c.in_buffer_wait) {  // wait in line for buffers (maintain_receives)
      c.in_buffer_wait = true;
      buffer_wait_.push_back(slot_of(c));
    }
    return;
  }
  // An armed multishot receive on a connection that must not be read for now: cancel it.
  // (The receives of a full input ring stop by themselves when the buffers run out.)
  if (c.state == ConnState::kOpen && multishot_recv_ && !c.cancel_sent &&
      (input_stopped_ || c.pending_bytes >= options_.max_input_bytes ||
       c.in_flight >= options_.max_in_flight)) {
    io_uring_sqe* s = sqe();
    if (s == nullptr) return;
    prep_cancel(s, make_user_data(kOpRecv, c.id), make_user_data(kOpCancel, c.id));
    c.cancel_sent = true;
    ++c.ops;
  }
}

void NetworkServer::Impl::mark_recv_check(Connection& c) {
  if (c.in_recv_check) return;
  c.in_recv_check = true;
  recv_check_.push_back(slot_of(c));
}

void NetworkServer::Impl::maintain_receives() {
  if (buffers_ != nullptr) {
    buffers_->publish();
    // Connections whose receive ended for want of buffers, in turn, as many as there are
    // buffers to give.
    size_t budget = buffers_->available();
    while (budget > 0 && !buffer_wait_.empty()) {
      Connection& c = slots_[buffer_wait_.front()];
      buffer_wait_.pop_front();
      c.in_buffer_wait = false;
      mark_recv_check(c);
      --budget;
    }
  }
  const size_t n = recv_check_.size();
  for (size_t i = 0; i < n; ++i) {
    Connection& c = slots_[recv_check_.front()];
    recv_check_.pop_front();
    c.in_recv_check = false;
    check_recv(c);
  }
}

void NetworkServer::Impl::on_recv(uint32_t id, const io_uring_cqe& cqe) {
  const bool has_buffer = buffers_ != nullptr && cqe_has_buffer(cqe);
  if (has_buffer) buffers_->taken();
  Connection* cp = lookup(id);
  if (cp == nullptr) {  // cannot happen (a slot outlives its requests), but never leak a buffer
    if (has_buffer) buffers_->recycle(buffer_id(cqe));
    return;
  }
  Connection& c = *cp;
  if (!cqe_more(cqe)) {
    c.recv_armed = false;
    --c.ops;
  }
  if (cqe.res > 0) {
    counters_->bytes_in.add(cqe.res);
    InputChunk chunk;
    chunk.size = static_cast<uint32_t>(cqe.res);
    chunk.receive_ticks = pass_ticks();
    if (has_buffer) {
      chunk.buffer = buffer_id(cqe);
      chunk.data = buffers_->buffer(chunk.buffer);
    } else {
      chunk.data = c.own_buffer.get();
    }
    if (c.state == ConnState::kOpen && !input_stopped_) {
      c.pending.push_back(chunk);
      c.pending_bytes += chunk.size;
      mark_ready(c);
    } else {
      release_chunk(chunk);  // draining, lingering or closing: input is discarded
    }
  } else if (cqe.res == 0) {
    c.eof = true;
    if (c.state == ConnState::kOpen) {
      mark_ready(c);  // decode what is pending, then drain
    } else if (c.state == ConnState::kLingering) {
      close_connection(c);
    } else {
      check_drain_done(c);
    }
  } else if (cqe.res == -ENOBUFS) {
    counters_->recv_buffer_shortages.add();
  } else if (cqe.res != -ECANCELED) {
    if (c.state == ConnState::kLingering) {
      close_connection(c);
    } else {
      drop(c, counters_->connections_closed_error);
    }
  }
  if (!c.recv_armed) mark_recv_check(c);
  after_ops(c);
}

// ---------------------------------------------------------------------------------------------
// Decoding and publishing.

void NetworkServer::Impl::mark_ready(Connection& c) {
  if (c.in_ready) return;
  c.in_ready = true;
  ready_.push_back(slot_of(c));
}

int NetworkServer::Impl::process_ready() {
  int work = 0;
  const size_t n = ready_.size();
  for (size_t i = 0; i < n && !ready_.empty(); ++i) {
    const uint32_t slot = ready_.front();
    Connection& c = slots_[slot];
    if (c.state != ConnState::kOpen || input_stopped_) {
      ready_.pop_front();
      c.in_ready = false;
      continue;
    }
    const size_t before = c.pending_bytes;
    const Step step = process_connection(c);
    work += before != c.pending_bytes ? 1 : 0;
    if (step == Step::kRingFull) break;  // it stays first in line for when space returns
    ready_.pop_front();
    c.in_ready = false;
    switch (step) {
      case Step::kOk:
        if (!c.pending.empty()) {
          mark_ready(c);  // its turn is over; the rest waits behind the others
        } else if (c.eof && c.state == ConnState::kOpen) {
          begin_drain(c);
        }
        break;
      case Step::kInFlight:
        c.blocked_in_flight = true;
        counters_->in_flight_stalls.add();
        break;
      default: break;
    }
    mark_recv_check(c);
  }
  return work;
}

Step NetworkServer::Impl::process_connection(Connection& c) {
  // One receive buffer's worth per turn keeps a busy connection from starving the others.
  size_t budget = options_.recv_buffer_size;
  while (!c.pending.empty()) {
    InputChunk& chunk = c.pending.front();
    std::span<const std::byte> input(chunk.data, chunk.size);
    const Step step = c.protocol == Protocol::kBinary ? decode_binary(c, input, chunk.receive_ticks)
                                                      : decode_text(c, input, chunk.receive_ticks);
    if (step == Step::kClosed) return step;  // begin_drain discarded the input
    const size_t used = chunk.size - input.size();
    c.pending_bytes -= used;
    if (input.empty()) {
      release_chunk(chunk);
      c.pending.pop_front();
    } else {
      chunk.data = input.data();
      chunk.size = static_cast<uint32_t>(input.size());
    }
    if (step != Step::kOk) return step;
    if (used >= budget) break;
    budget -= used;
  }
  return Step::kOk;
}

Step NetworkServer::Impl::decode_binary(Connection& c, std::span<const std::byte>& input,
                                        int64_t ticks) {
  for (;;) {
    const DecodeStatus s = c.frames.peek(input);
    if (s == DecodeStatus::kNeedMore) return Step::kOk;
    if (s == DecodeStatus::kError) {
      counters_->protocol_errors.add();
      reply_error(c, frame_error_code(c.frames.error()),
                  describe_frame_error(c.frames.error(), c.frames.header()));
      begin_drain(c);
      return Step::kClosed;
    }
    const Step step = handle_frame(c, c.frames.frame(), ticks);
    if (step == Step::kRingFull || step == Step::kInFlight) return step;
    c.frames.consume(input);
    counters_->frames_in.add();
    // kClosed, or a reply that passed the output bound dropped the connection.
    if (step == Step::kClosed || c.state != ConnState::kOpen) return Step::kClosed;
  }
}

Step NetworkServer::Impl::decode_text(Connection& c, std::span<const std::byte>& input,
                                      int64_t ticks) {
  for (;;) {
    const DecodeStatus s = c.lines.peek(input);
    if (s == DecodeStatus::kNeedMore) return Step::kOk;
    if (s == DecodeStatus::kError) {
      counters_->protocol_errors.add();
      reply_error(c, wire::ErrorCode::kLineTooLong,
                  absl::StrCat("line longer than ", text::kMaxLineLength, " bytes"));
      begin_drain(c);
      return Step::kClosed;
    }
    const text::ParsedLine parsed = text::parse_client_line(c.lines.line(), text_frame_);
    Step step = Step::kOk;
    if (parsed.status == text::LineStatus::kMalformed) {
      counters_->malformed_lines.add();
      reply_error(c, wire::ErrorCode::kMalformedLine, text::describe(parsed));
    } else if (parsed.status == text::LineStatus::kFrame) {
      step =
          handle_frame(c, std::span<const std::byte>(text_frame_.data(), parsed.frame_size), ticks);
      if (step == Step::kRingFull || step == Step::kInFlight) return step;
    }
    c.lines.consume(input);
    if (parsed.status != text::LineStatus::kEmpty) counters_->frames_in.add();
    if (step == Step::kClosed || c.state != ConnState::kOpen) return Step::kClosed;
  }
}

Step NetworkServer::Impl::handle_frame(Connection& c, std::span<const std::byte> frame,
                                       int64_t ticks) {
  const ClientFrame f = inspect_client_frame(frame);
  switch (f.kind) {
    case ClientFrameKind::kUnknown: counters_->unknown_types.add(); return Step::kOk;
    case ClientFrameKind::kHello: {
      if (c.seen_frame || f.client_id == 0) {
        counters_->protocol_errors.add();
        reply_error(c, wire::ErrorCode::kBadHello,
                    f.client_id == 0 ? "HELLO with client_id 0"
                                     : "HELLO must be the connection's first frame");
        begin_drain(c);
        return Step::kClosed;
      }
      c.seen_frame = true;
      c.client_id = f.client_id;
      const auto it = client_seqs_.find(f.client_id);
      reply_hello_ack(c, f.client_id, it == client_seqs_.end() ? 0 : it->second);
      return Step::kOk;
    }
    case ClientFrameKind::kSubscribe:
      c.seen_frame = true;
      set_subscribed(c, (f.topics & 1u) != 0);
      return Step::kOk;
    case ClientFrameKind::kTransaction:
    case ClientFrameKind::kOrder: {
      c.seen_frame = true;
      if (!f.valid) {
        counters_->invalid.add();
        reply_decision(c, f.client_seq, wire::Verdict::kInvalid);
        return Step::kOk;
      }
      ClientSeqTable::iterator last = client_seqs_.end();
      if (c.client_id != 0) {
        last = client_seqs_.find(c.client_id);
        if (last != client_seqs_.end() && f.client_seq <= last->second) {
          counters_->duplicate.add();
          reply_decision(c, f.client_seq, wire::Verdict::kDuplicate);
          return Step::kOk;
        }
      }
      if (c.in_flight >= options_.max_in_flight) return Step::kInFlight;
      if (!publish(frame, c.client_id, c.id, ticks)) return Step::kRingFull;
      const int64_t seq = first_sequence_ + next_ - 1;
      c.outstanding.push_back(seq);
      ++c.in_flight;
      c.last_published = seq;
      if (c.client_id != 0) {
        if (last != client_seqs_.end()) {
          last->second = f.client_seq;
        } else {
          client_seqs_.emplace(c.client_id, f.client_seq);
        }
      }
      return Step::kOk;
    }
    case ClientFrameKind::kWatermark:
      c.seen_frame = true;
      if (!f.valid) {  // no reply: a WATERMARK never gets a DECISION
        counters_->invalid.add();
        return Step::kOk;
      }
      return publish(frame, c.client_id, c.id, ticks) ? Step::kOk : Step::kRingFull;
  }
  return Step::kOk;
}

bool NetworkServer::Impl::publish(std::span<const std::byte> frame, uint64_t client_id,
                                  uint32_t connection_id, int64_t ticks) {
  if (claimed_ < next_) {
    int64_t hi;
    if (input_.try_next(1, &hi) != ClaimResult::kOk) {
      if (!ring_full_) {
        ring_full_ = true;
        ring_full_since_ns_ = now_ns();
        counters_->ring_full_episodes.add();
      }
      return false;
    }
    claimed_ = hi;
  }
  if (ring_full_) {
    ring_full_ = false;
    counters_->ring_full_ns.add(now_ns() - ring_full_since_ns_);
  }
  if (pass_realtime_ns_ == 0) pass_realtime_ns_ = realtime_ns();
  const int64_t r = next_++;
  InputEvent& e = input_[r];
  e.sequence = first_sequence_ + r;
  e.ingest_ns = pass_realtime_ns_;
  e.client_id = client_id;
  e.receive_ticks = ticks;
  e.connection_id = connection_id;
  e.frame_length = static_cast<uint16_t>(frame.size());
  e.flags = 0;
  e.reserved = 0;
  std::memcpy(e.frame.data(), frame.data(), frame.size());
  ++events_since_snapshot_;
  if ((snapshot_due_ || (options_.snapshot_every_events > 0 &&
                         events_since_snapshot_ >= options_.snapshot_every_events)) &&
      snapshot_gate_open()) {
    e.flags |= kInputSnapshotAfter;
    snapshot_due_ = false;
    events_since_snapshot_ = 0;
    last_snapshot_ns_ = pass_now_ns();
    counters_->snapshot_barriers.add();
  }
  counters_->events_journaled.add();
  return true;
}

void NetworkServer::Impl::publish_cursor() {
  if (next_ - 1 > published_) {
    published_ = next_ - 1;
    input_.publish(published_);
  }
}

int NetworkServer::Impl::process_udp() {
  int work = 0;
  while (!udp_ready_.empty() && !input_stopped_) {
    UdpSlot& u = udp_[udp_ready_.front()];
    bool blocked = false;
    while (u.offset < u.size) {
      const std::span<const std::byte> frame(u.buffer.get() + u.offset,
                                             wire::decode_header(u.buffer.get() + u.offset).length);
      const ClientFrame f = inspect_client_frame(frame);
      if (f.kind == ClientFrameKind::kTransaction || f.kind == ClientFrameKind::kOrder ||
          f.kind == ClientFrameKind::kWatermark) {
        if (!f.valid) {
          counters_->invalid.add();
        } else if (!publish(frame, 0, 0, u.receive_ticks)) {
          blocked = true;
          break;
        }
      } else {
        counters_->unknown_types.add();  // unknown types, and HELLO / SUBSCRIBE: no meaning here
      }
      counters_->frames_in.add();
      u.offset += frame.size();
      ++work;
    }
    if (blocked) break;
    u.holding = false;
    arm_udp(udp_ready_.front());
    udp_ready_.pop_front();
  }
  return work;
}

void NetworkServer::Impl::on_udp(size_t index, const io_uring_cqe& cqe) {
  UdpSlot& u = udp_[index];
  u.armed = false;
  if (udp_closing_) {
    bool any = false;
    for (const UdpSlot& s : udp_) any = any || s.armed;
    if (!any && udp_fd_ >= 0) {
      ::close(udp_fd_);
      udp_fd_ = -1;
    }
    return;
  }
  if (cqe.res < 0) {
    arm_udp(index);
    return;
  }
  counters_->udp_datagrams.add();
  counters_->bytes_in.add(cqe.res);
  const size_t size = static_cast<size_t>(cqe.res);
  if (size < sizeof(uint64_t) || (u.msg.msg_flags & MSG_TRUNC) != 0) {
    counters_->udp_bad_datagrams.add();
    arm_udp(index);
    return;
  }
  // The sequence first: a broken datagram still arrived, so it is no gap later on.
  const uint64_t dseq = wire::load<uint64_t>(u.buffer.get());
  if (udp_senders_.size() >= options_.udp_max_senders) udp_senders_.clear();
  auto [it, inserted] = udp_senders_.try_emplace(sender_key(u.from), 0);
  if (!inserted) {
    if (dseq < it->second) {
      counters_->udp_duplicates.add();
      arm_udp(index);
      return;
    }
    if (dseq > it->second) counters_->udp_gaps.add(static_cast<int64_t>(dseq - it->second));
  }
  it->second = dseq + 1;
  size_t frames = 0;
  if (check_frames(std::span<const std::byte>(u.buffer.get() + 8, size - 8), &frames) !=
      FrameError::kNone) {
    counters_->udp_bad_datagrams.add();
    arm_udp(index);
    return;
  }
  u.holding = true;
  u.offset = 8;
  u.size = size;
  u.receive_ticks = pass_ticks();
  udp_ready_.push_back(static_cast<uint32_t>(index));
}

// ---------------------------------------------------------------------------------------------
// Replies, output and egress.

bool NetworkServer::Impl::check_output_bound(Connection& c) {
  const size_t unsent =
      c.out.size() + (c.sending.size() - c.sent) + (c.held.size() - c.held_released);
  if (unsent <= options_.max_output_bytes) return true;
  drop(c, counters_->connections_dropped_slow);
  return false;
}

void NetworkServer::Impl::mark_flush(Connection& c) {
  if (c.in_flush) return;
  c.in_flush = true;
  flush_.push_back(slot_of(c));
}

void NetworkServer::Impl::queue_reply(Connection& c, const std::byte* bytes, size_t size) {
  if (c.state == ConnState::kClosing || c.state == ConnState::kFree) return;
  if (c.outstanding.empty()) {
    c.out.append(bytes, size);
    mark_flush(c);
  } else {
    // Owed decisions first: the reply waits until every event published so far is answered.
    c.held.append(bytes, size);
    if (!c.held_marks.empty() && c.held_marks.back().after_seq == c.last_published) {
      c.held_marks.back().end = c.held.size();
    } else {
      c.held_marks.push_back(HeldMark{c.last_published, c.held.size()});
    }
  }
  check_output_bound(c);
}

void NetworkServer::Impl::reply_decision(Connection& c, uint64_t client_seq,
                                         wire::Verdict verdict) {
  const wire::Decision d{.client_seq = client_seq, .seq = 0, .verdict = verdict};
  std::array<std::byte, kMaxReplyBytes> buf;
  const size_t n =
      c.protocol == Protocol::kBinary
          ? wire::encode(d, buf)
          : text::format_decision(d, std::span(reinterpret_cast<char*>(buf.data()), buf.size()));
  queue_reply(c, buf.data(), n);
}

void NetworkServer::Impl::reply_error(Connection& c, wire::ErrorCode code, std::string_view text) {
  std::array<std::byte, kMaxReplyBytes> buf;
  const auto code16 = static_cast<uint16_t>(code);
  const size_t n =
      c.protocol == Protocol::kBinary
          ? wire::encode_error(code16, text, buf)
          : text::format_error(code16, text,
                               std::span(reinterpret_cast<char*>(buf.data()), buf.size()));
  queue_reply(c, buf.data(), n);
}

void NetworkServer::Impl::reply_hello_ack(Connection& c, uint64_t client_id, uint64_t last) {
  const wire::HelloAck ack{.client_id = client_id, .last_client_seq = last};
  std::array<std::byte, kMaxReplyBytes> buf;
  const size_t n =
      c.protocol == Protocol::kBinary
          ? wire::encode(ack, buf)
          : text::format_hello_ack(ack, std::span(reinterpret_cast<char*>(buf.data()), buf.size()));
  queue_reply(c, buf.data(), n);
}

// Events after `through` will never be answered (the journal failed before they were durable,
// and the shards never see them): stop waiting for them, so the replies held behind them (the
// ERROR that says input is refused) go out.
void NetworkServer::Impl::abandon_after(Connection& c, int64_t through) {
  // outstanding is sorted by |sequence|; answered entries are negated.
  while (!c.outstanding.empty() &&
         (c.outstanding.back() < 0 ? -c.outstanding.back() : c.outstanding.back()) > through) {
    if (c.outstanding.back() > 0 && c.in_flight > 0) --c.in_flight;
    c.outstanding.pop_back();
  }
  while (!c.outstanding.empty() && c.outstanding.front() < 0) c.outstanding.pop_front();
  release_held(c);
}

void NetworkServer::Impl::release_held(Connection& c) {
  if (c.held_marks.empty()) return;
  const int64_t oldest =
      c.outstanding.empty() ? std::numeric_limits<int64_t>::max() : c.outstanding.front();
  bool moved = false;
  while (!c.held_marks.empty() && c.held_marks.front().after_seq < oldest) {
    const HeldMark m = c.held_marks.front();
    c.held_marks.pop_front();
    c.out.append(c.held.data() + c.held_released, m.end - c.held_released);
    c.held_released = m.end;
    moved = true;
  }
  if (c.held_marks.empty()) {
    c.held.clear();
    c.held_released = 0;
  }
  if (moved) mark_flush(c);
}

bool NetworkServer::Impl::mark_answered(Connection& c, int64_t seq) {
  // outstanding is sorted by sequence (entries are negated once answered); the common case
  // (one shard, or the oldest event's shard answering) is the front.
  size_t index;
  if (!c.outstanding.empty() && c.outstanding.front() == seq) {
    index = 0;
  } else {
    size_t lo = 0, hi = c.outstanding.size();
    while (lo < hi) {
      const size_t mid = (lo + hi) / 2;
      const int64_t v = c.outstanding[mid];
      if ((v < 0 ? -v : v) < seq) {
        lo = mid + 1;
      } else {
        hi = mid;
      }
    }
    if (lo == c.outstanding.size() || c.outstanding[lo] != seq) return false;
    index = lo;
  }
  c.outstanding[index] = -seq;
  while (!c.outstanding.empty() && c.outstanding.front() < 0) c.outstanding.pop_front();
  --c.in_flight;
  return true;
}

int NetworkServer::Impl::process_outputs() {
  int work = 0;
  int64_t now = 0;
  for (size_t k = 0; k < outputs_.size(); ++k) {
    OutputRing& ring = *outputs_[k];
    const int64_t next = next_output_[k];
    const int64_t available = ring.cursor().get();
    if (available < next) continue;
    if (now == 0) now = ticks_to_ns(now_ticks());
    const int64_t hi = std::min(available, next + kMaxOutputBatch - 1);
    for (int64_t s = next; s <= hi; ++s) route(ring[s], now);
    // One release store per batch: the shard may reuse the slots up to hi.
    output_progress_[k]->set(hi);
    next_output_[k] = hi + 1;
    work += static_cast<int>(hi - next + 1);
  }
  return work;
}

void NetworkServer::Impl::route(const OutputEvent& e, int64_t now_ns) {
  if (e.kind == OutputEvent::Kind::kAlert) {
    counters_->alerts_seen.add();
    if (options_.alert_sink) options_.alert_sink(e);
    if (subscribers_.empty()) return;
    const wire::Alert a{.seq = static_cast<uint64_t>(e.seq),
                        .event_time_ns = e.event_time_ns,
                        .account_id = e.account_id,
                        .rule = static_cast<wire::Rule>(e.rule),
                        .value = e.value,
                        .threshold = e.threshold};
    std::array<std::byte, kMaxReplyBytes> binary, line;
    const size_t nb = wire::encode(a, binary);
    const size_t nt =
        text::format_alert(a, std::span(reinterpret_cast<char*>(line.data()), line.size()));
    // Iterate by index: a subscriber dropped for its output bound leaves the list.
    for (size_t i = 0; i < subscribers_.size();) {
      Connection& c = slots_[subscribers_[i]];
      if (c.protocol == Protocol::kBinary) {
        c.out.append(binary.data(), nb);
      } else {
        c.out.append(line.data(), nt);
      }
      counters_->alerts_sent.add();
      mark_flush(c);
      if (check_output_bound(c)) ++i;
    }
    return;
  }
  if (e.connection_id == 0) {
    counters_->decisions_unrouted.add();
    return;
  }
  Connection* cp = lookup(e.connection_id);
  if (cp == nullptr || cp->state == ConnState::kClosing || !mark_answered(*cp, e.seq)) {
    counters_->decisions_gone.add();
    return;
  }
  Connection& c = *cp;
  const wire::Decision d{.client_seq = e.client_seq,
                         .seq = static_cast<uint64_t>(e.seq),
                         .verdict = static_cast<wire::Verdict>(e.verdict),
                         .reason = e.reason,
                         .flags = e.flags};
  if (c.protocol == Protocol::kBinary) {
    wire::encode(d, std::span(c.out.extend(wire::kHeaderSize + wire::kDecisionPayload),
                              wire::kHeaderSize + wire::kDecisionPayload));
  } else {
    char line[text::kMaxServerLine];
    const size_t n = text::format_decision(d, line);
    c.out.append(reinterpret_cast<const std::byte*>(line), n);
  }
  counters_->decisions_sent.add();
  if (e.receive_ticks != 0) {
    const int64_t latency = now_ns - ticks_to_ns(e.receive_ticks);
    latency_.record(latency);
    if (options_.decision_latency != nullptr) options_.decision_latency->record(latency);
  }
  release_held(c);
  mark_flush(c);
  if (!check_output_bound(c)) return;
  if (c.blocked_in_flight && c.in_flight < options_.max_in_flight) {
    c.blocked_in_flight = false;
    mark_ready(c);
    mark_recv_check(c);
  } else if (c.state == ConnState::kOpen && c.in_flight == resume_in_flight_) {
    mark_recv_check(c);  // far enough under the bound again: its receive may resume
  }
  if (c.state == ConnState::kDraining) check_drain_done(c);
}

void NetworkServer::Impl::flush_sends() {
  while (!flush_.empty()) {
    Connection& c = slots_[flush_.front()];
    flush_.pop_front();
    c.in_flush = false;
    if (c.state == ConnState::kFree || c.state == ConnState::kClosing) continue;
    if (c.send_in_flight || c.out.empty()) continue;
    io_uring_sqe* s = sqe();
    if (s == nullptr) return;
    c.out.swap(c.sending);
    c.sent = 0;
    prep_send(s, c.fd, c.sending.data(), c.sending.size(), make_user_data(kOpSend, c.id));
    c.send_in_flight = true;
    ++c.ops;
  }
}

void NetworkServer::Impl::on_send(uint32_t id, const io_uring_cqe& cqe) {
  Connection* cp = lookup(id);
  if (cp == nullptr) return;
  Connection& c = *cp;
  --c.ops;
  c.send_in_flight = false;
  if (c.state == ConnState::kClosing) {
    after_ops(c);
    return;
  }
  if (cqe.res <= 0) {
    drop(c, counters_->connections_closed_error);
    return;
  }
  counters_->bytes_out.add(cqe.res);
  c.sent += static_cast<size_t>(cqe.res);
  if (c.sent < c.sending.size()) {  // the kernel took part of it: send the rest, in order
    io_uring_sqe* s = sqe();
    if (s == nullptr) return;
    prep_send(s, c.fd, c.sending.data() + c.sent, c.sending.size() - c.sent,
              make_user_data(kOpSend, c.id));
    c.send_in_flight = true;
    ++c.ops;
    return;
  }
  c.sending.clear();
  c.sent = 0;
  if (!c.out.empty()) {
    mark_flush(c);
  } else {
    check_drain_done(c);
  }
}

// ---------------------------------------------------------------------------------------------
// Control: snapshots, stopping, refusing.

void NetworkServer::Impl::apply_control(uint32_t bits) {
  const uint32_t fresh = bits & ~applied_;
  if (bits & kControlSnapshot) {
    snapshot_due_ = true;
    // Clear the request bit itself: a later request sets it again.
    control_.fetch_and(~kControlSnapshot, std::memory_order_acq_rel);
    bits &= ~kControlSnapshot;
  }
  if (fresh & kControlRefuse) {
    std::string reason;
    {
      std::lock_guard<std::mutex> lock(mu_);
      reason = refuse_reason_;
    }
    int64_t through;
    {
      std::lock_guard<std::mutex> lock(mu_);
      through = refuse_answered_through_;
    }
    stop_input();
    for (Connection& c : slots_) {
      if (c.state != ConnState::kOpen) continue;
      abandon_after(c, through);
      reply_error(c, wire::ErrorCode::kInputRefused, absl::StrCat("input refused: ", reason));
      begin_drain(c);
    }
    close_udp();
  }
  if (fresh & kControlStop) {
    stop_input();
    for (size_t i = 0; i < listeners_.size(); ++i) close_listener(listeners_[i]);
    close_udp();
    for (Connection& c : slots_) {
      if (c.state != ConnState::kOpen) continue;
      reply_error(c, wire::ErrorCode::kShuttingDown, "the server is shutting down");
      begin_drain(c);
    }
    drain_deadline_ns_ = pass_now_ns() + std::max<int64_t>(options_.drain_timeout_ns, 1);
  }
  applied_ = bits;
}

void NetworkServer::Impl::stop_input() {
  if (input_stopped_) return;
  input_stopped_ = true;
  for (Connection& c : slots_) {
    if (c.state == ConnState::kFree) continue;
    discard_input(c);
    mark_recv_check(c);
  }
  while (!udp_ready_.empty()) {
    udp_[udp_ready_.front()].holding = false;
    udp_ready_.pop_front();
  }
  if (ring_full_) {
    ring_full_ = false;
    counters_->ring_full_ns.add(now_ns() - ring_full_since_ns_);
  }
}

void NetworkServer::Impl::close_listener(Listener& l) {
  if (l.fd < 0 || l.closing) return;
  l.closing = true;
  if (!l.armed) {
    ::close(l.fd);
    l.fd = -1;
    return;
  }
  io_uring_sqe* s = sqe();
  if (s == nullptr) return;
  prep_cancel(s, make_user_data(kOpAccept, static_cast<uint64_t>(&l - listeners_.data())),
              make_user_data(kOpCancelOther, 0));
}

void NetworkServer::Impl::close_udp() {
  if (udp_fd_ < 0 || udp_closing_) return;
  udp_closing_ = true;
  bool any = false;
  for (size_t i = 0; i < udp_.size(); ++i) {
    udp_[i].holding = false;
    if (!udp_[i].armed) continue;
    any = true;
    io_uring_sqe* s = sqe();
    if (s == nullptr) return;
    prep_cancel(s, make_user_data(kOpUdp, i), make_user_data(kOpCancelOther, 0));
  }
  udp_ready_.clear();
  if (!any) {
    ::close(udp_fd_);
    udp_fd_ = -1;
  }
}

// Bytes the kernel still holds for the client: sent and not acknowledged, or not sent yet (its
// receive window is shut). SIOCOUTQ; 0 where the ioctl fails.
int NetworkServer::Impl::unacknowledged_output(const Connection& c) const {
  int queued = 0;
  if (::ioctl(c.fd, SIOCOUTQ, &queued) != 0) return 0;
  return queued;
}

void NetworkServer::Impl::check_deadlines() {
  const int64_t now = pass_now_ns();
  for (size_t i = 0; i < lingering_.size();) {
    Connection& c = slots_[lingering_[i]];
    if (c.state != ConnState::kLingering) {
      c.in_linger = false;
      lingering_[i] = lingering_.back();
      lingering_.pop_back();
      continue;
    }
    if (now >= c.linger_deadline_ns) {
      if (now < c.linger_limit_ns && unacknowledged_output(c) > 0) {
        // The client has not taken everything yet (it reads slowly, and its window is shut).
        // Closing now, with its input unread, would reset the connection and throw away the
        // answers and the ERROR still queued in the kernel: give it another linger period.
        c.linger_deadline_ns = now + options_.linger_ns;
      } else {
        close_connection(c);
      }
    }
    ++i;
  }
  if (drain_deadline_ns_ != 0 && now >= drain_deadline_ns_) {
    for (Connection& c : slots_) {
      if (c.state == ConnState::kOpen || c.state == ConnState::kDraining ||
          c.state == ConnState::kLingering) {
        close_connection(c);
      }
    }
    drain_deadline_ns_ = 0;
  }
}

void NetworkServer::Impl::update_drained() {
  if (drained_.load(std::memory_order_relaxed)) return;
  if (open_count_ != 0 || udp_fd_ >= 0) return;
  for (const Listener& l : listeners_) {
    if (l.fd >= 0) return;
  }
  // Release: whoever sees drained() also sees the counters' final values.
  drained_.store(true, std::memory_order_release);
}

// ---------------------------------------------------------------------------------------------
// The public face.

NetworkServer::NetworkServer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
NetworkServer::~NetworkServer() = default;

absl::StatusOr<std::unique_ptr<NetworkServer>> NetworkServer::create(
    NetworkOptions options, int64_t first_sequence, ClientSeqTable client_seqs, InputRing& input,
    std::vector<OutputRing*> outputs, NetworkCounters* counters) {
  auto impl = std::make_unique<Impl>(std::move(options), first_sequence, std::move(client_seqs),
                                     input, std::move(outputs), counters);
  if (absl::Status s = impl->init(); !s.ok()) return s;
  return std::unique_ptr<NetworkServer>(new NetworkServer(std::move(impl)));
}

absl::Status NetworkServer::start() { return impl_->start(); }
int NetworkServer::poll() { return impl_->poll(); }
int NetworkServer::send_outputs() { return impl_->send_outputs(); }
void NetworkServer::wait(int64_t timeout_ns) { impl_->wait(timeout_ns); }
void NetworkServer::wake() noexcept { impl_->wake(); }
void NetworkServer::request_snapshot() noexcept { impl_->request(kControlSnapshot); }
void NetworkServer::stop_accepting() noexcept { impl_->request(kControlStop); }
void NetworkServer::refuse_input(std::string_view reason, int64_t answered_through) {
  impl_->refuse_input(reason, answered_through);
}
bool NetworkServer::drained() const noexcept {
  return impl_->drained_.load(std::memory_order_acquire);
}
uint16_t NetworkServer::port() const noexcept { return impl_->port_; }
uint16_t NetworkServer::text_port() const noexcept { return impl_->text_port_; }
uint16_t NetworkServer::udp_port() const noexcept { return impl_->udp_port_; }
int NetworkServer::wake_fd() const noexcept { return impl_->wake_fd(); }
absl::Status NetworkServer::restrict_kernel_workers(std::span<const int> cpus) {
  return impl_->restrict_kernel_workers(cpus);
}
const Sequence& NetworkServer::output_sequence(size_t k) const noexcept {
  return *impl_->output_progress_[k];
}
const NetworkCounters& NetworkServer::counters() const noexcept { return *impl_->counters_; }
const Histogram& NetworkServer::latency() const noexcept { return impl_->latency_; }
std::string NetworkServer::describe() const { return impl_->describe_; }
absl::Status NetworkServer::status() const { return impl_->status(); }
int64_t NetworkServer::next_sequence() const noexcept { return impl_->next_sequence(); }

}  // namespace sluice
