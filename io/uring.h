// A thin owner of one io_uring instance, provided buffer rings, the request helpers the network
// agent uses, and the feature probe every io_uring user runs first.
//
// Debian 12's liburing is 2.3; the kernel may be newer or older than it. probe_uring() says what
// this kernel offers (it creates and destroys throwaway rings and, for the multishot requests,
// really runs one over a socket pair), so callers choose their path once at start and say which
// they took. Uring::create() falls back flag by flag: setup flags the kernel rejects (EINVAL)
// are dropped and reported in flags_used().
//
// Completions without system calls. Whether a completion shows up in the CQ without the
// submitting thread entering the kernel depends on the setup flags (measured on this machine's
// 6.18 kernel, docs/network.md):
// - no flags: the kernel interrupts the task (an IPI) to post it; peeking the CQ works.
// - COOP_TASKRUN: posted at the task's next kernel transition, which for a thread spinning in
//   user space is whenever an interrupt happens to come (microseconds to a scheduler tick).
// - DEFER_TASKRUN (with SINGLE_ISSUER): posted only when the task enters with GETEVENTS.
// With TASKRUN_FLAG the kernel raises IORING_SQ_TASKRUN in the shared SQ flags when such work
// is pending, so a poller can read one word and enter (get_events) only when there is
// something to collect: pending_kernel_work() below.
//
// Thread safety: a Uring is driven by one thread (the submitter). SINGLE_ISSUER, when granted,
// makes the kernel enforce that: the submitter is the thread that created the ring, or, for a
// ring created with start_disabled, the thread that calls enable(). A ProvidedBufferRing
// belongs to its Uring's thread as well.
#ifndef SLUICE_IO_URING_H_
#define SLUICE_IO_URING_H_

#include <liburing.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace sluice {

struct UringFeatures {
  bool available = false;  // io_uring_setup works at all (may be off: sysctl, seccomp)
  std::string unavailable_reason;
  bool single_issuer = false;
  bool defer_taskrun = false;
  bool coop_taskrun = false;
  bool taskrun_flag = false;    // IORING_SETUP_TASKRUN_FLAG (with COOP or DEFER)
  bool start_disabled = false;  // IORING_SETUP_R_DISABLED + IORING_REGISTER_ENABLE_RINGS
  bool ext_arg = false;  // waits with a timeout need no timeout request (IORING_FEAT_EXT_ARG)
  bool op_write = false;
  bool op_fsync = false;
  bool op_send = false;
  bool op_recv = false;
  bool op_recvmsg = false;
  bool op_accept = false;
  bool op_read = false;
  bool op_cancel = false;
  bool op_send_zc = false;
  bool op_msg_ring = false;
  bool buf_ring = false;          // provided buffer rings (kernel 5.19+)
  bool multishot_accept = false;  // probed by accepting a connection (kernel 5.19+)
  bool multishot_recv = false;    // probed by receiving into a buffer ring (kernel 6.0+)

  // One line: "io_uring: single_issuer defer_taskrun ... ; missing: ..."
  std::string describe() const;
};

// Probed once per process (cached); cheap after the first call.
const UringFeatures& probe_uring();

struct UringOptions {
  unsigned entries = 64;
  unsigned cq_entries = 0;  // 0: the kernel's default (2 * entries)
  bool single_issuer = true;
  bool coop_taskrun = true;
  bool defer_taskrun = false;  // REQUIRES single_issuer; completions then need get_events()
  bool taskrun_flag = false;   // with coop/defer: the kernel flags pending work in the SQ ring
  // Create the ring disabled; the thread that calls enable() becomes the submitter. Lets one
  // thread set the ring up (and register buffers) for another thread to drive.
  bool start_disabled = false;
};

class Uring {
 public:
  static absl::StatusOr<std::unique_ptr<Uring>> create(const UringOptions& options);
  ~Uring();
  Uring(const Uring&) = delete;
  Uring& operator=(const Uring&) = delete;

  io_uring* ring() noexcept { return &ring_; }
  // The IORING_SETUP_* flags the kernel accepted.
  unsigned flags_used() const noexcept { return flags_; }
  // "single_issuer defer_taskrun taskrun_flag" (the accepted flags by name), or "none".
  std::string describe_flags() const;

  // Enables a ring created with start_disabled; the calling thread becomes the submitter.
  // A no-op for a ring that is already enabled.
  absl::Status enable();
  bool enabled() const noexcept { return enabled_; }

  // Restricts the kernel's worker threads that run this thread's blocking operations (buffered
  // file writes, fsync: io-wq, the `iou-wrk-*` threads) to `cpus`; they otherwise inherit the
  // submitting thread's affinity, i.e. its pinned CPU. The setting belongs to the calling
  // thread's io-wq, which exists once the thread has submitted to some ring: call it from the
  // submitting thread after its first submission. An error (an older kernel) changes nothing.
  absl::Status restrict_workers(std::span<const int> cpus);

  // A free submission entry; when the queue is full, submits what is queued and retries.
  // Returns nullptr only if the kernel refuses to take more (the caller treats it as busy).
  io_uring_sqe* get_sqe() noexcept;

  // Entries prepared and not submitted yet.
  unsigned sq_pending() const noexcept { return io_uring_sq_ready(&ring_); }

  // Submits queued entries without waiting. Returns the count or -errno.
  int submit() noexcept { return io_uring_submit(&ring_); }

  // Submits and waits for at least `wait_nr` completions. Returns -errno on failure.
  int submit_and_wait(unsigned wait_nr) noexcept {
    return io_uring_submit_and_wait(&ring_, wait_nr);
  }

  // True when the kernel holds work that only an io_uring_enter would turn into completions:
  // deferred or cooperative task work (TASKRUN_FLAG) or CQ overflow. One load of a shared word.
  bool pending_kernel_work() const noexcept {
    return (IO_URING_READ_ONCE(*ring_.sq.kflags) & (IORING_SQ_TASKRUN | IORING_SQ_CQ_OVERFLOW)) !=
           0;
  }
  // Enters the kernel to run pending task work and flush overflow; submits what is queued.
  // Returns -errno on failure.
  int submit_and_get_events() noexcept { return io_uring_submit_and_get_events(&ring_); }

  // Submits what is queued and sleeps until a completion arrives or timeout_ns passes
  // (timeout_ns <= 0: does not sleep). Returns -errno on failure, else 0 or -ETIME (liburing
  // reports the timeout only when the call had nothing to submit).
  int wait(int64_t timeout_ns) noexcept;

  // Completions ready now, without entering the kernel.
  unsigned cq_ready() const noexcept { return io_uring_cq_ready(&ring_); }

  // Calls on_cqe(const io_uring_cqe&) for every completion ready now, without entering the
  // kernel, and marks them seen. Returns how many it handled.
  template <typename F>
  unsigned drain(F&& on_cqe) {
    unsigned head;
    unsigned count = 0;
    io_uring_cqe* cqe;
    io_uring_for_each_cqe(&ring_, head, cqe) {
      on_cqe(*cqe);
      ++count;
    }
    if (count > 0) io_uring_cq_advance(&ring_, count);
    return count;
  }

 private:
  Uring() = default;
  io_uring ring_{};
  unsigned flags_ = 0;
  bool enabled_ = true;
};

// A provided buffer ring (IORING_REGISTER_PBUF_RING): `count` buffers of `size` bytes that the
// kernel picks from for receives that name its group (IOSQE_BUFFER_SELECT). A completion that
// used one carries IORING_CQE_F_BUFFER and the buffer id (buffer_id()); the buffer belongs to
// the application until recycle() and publish() hand it back. When the kernel finds the ring
// empty, the receive fails with -ENOBUFS and a multishot receive ends: that is how a consumer
// that holds buffers pushes back.
//
// liburing 2.3 has no io_uring_setup_buf_ring(): the ring is mapped here and registered with
// io_uring_register_buf_ring().
//
// Lifetime: the Uring must outlive the ProvidedBufferRing (the destructor unregisters).
class ProvidedBufferRing {
 public:
  // REQUIRES: count is a power of two in [1, 32768]; size >= 1.
  static absl::StatusOr<std::unique_ptr<ProvidedBufferRing>> create(Uring& uring, uint16_t group,
                                                                    uint32_t count, uint32_t size);
  ~ProvidedBufferRing();
  ProvidedBufferRing(const ProvidedBufferRing&) = delete;
  ProvidedBufferRing& operator=(const ProvidedBufferRing&) = delete;

  uint16_t group() const noexcept { return group_; }
  uint32_t count() const noexcept { return count_; }
  uint32_t buffer_size() const noexcept { return size_; }
  std::byte* buffer(uint16_t id) noexcept { return buffers_ + static_cast<size_t>(id) * size_; }

  // Buffers the kernel holds and may still fill.
  uint32_t available() const noexcept { return given_ - taken_; }

  // Records that a completion took a buffer from the ring (call once per F_BUFFER completion).
  void taken() noexcept { ++taken_; }
  // Queues buffer `id` to go back to the kernel; it becomes visible at the next publish().
  void recycle(uint16_t id) noexcept;
  // Makes every recycled buffer visible to the kernel: one release store of the ring tail.
  void publish() noexcept;

 private:
  ProvidedBufferRing(Uring& uring, uint16_t group, uint32_t count, uint32_t size)
      : uring_(uring), group_(group), count_(count), size_(size) {}

  Uring& uring_;
  const uint16_t group_;
  const uint32_t count_;
  const uint32_t size_;
  io_uring_buf_ring* ring_ = nullptr;
  size_t ring_bytes_ = 0;
  std::byte* buffers_ = nullptr;
  size_t buffer_bytes_ = 0;
  bool registered_ = false;
  uint32_t pending_ = 0;  // recycled, not yet published
  uint32_t given_ = 0;    // handed to the kernel, ever (wraps)
  uint32_t taken_ = 0;    // taken by completions, ever (wraps)
};

// The buffer id a completion with IORING_CQE_F_BUFFER carries.
inline uint16_t buffer_id(const io_uring_cqe& cqe) noexcept {
  return static_cast<uint16_t>(cqe.flags >> IORING_CQE_BUFFER_SHIFT);
}
inline bool cqe_has_buffer(const io_uring_cqe& cqe) noexcept {
  return (cqe.flags & IORING_CQE_F_BUFFER) != 0;
}
// A multishot request stays armed after this completion.
inline bool cqe_more(const io_uring_cqe& cqe) noexcept {
  return (cqe.flags & IORING_CQE_F_MORE) != 0;
}

// user_data carries an operation kind in its top byte and an id below it; every io_uring user
// encodes and decodes through these, with a handler per kind.
inline constexpr uint64_t make_user_data(uint8_t op, uint64_t id) noexcept {
  return (static_cast<uint64_t>(op) << 56) | (id & ((uint64_t{1} << 56) - 1));
}
inline constexpr uint8_t user_data_op(uint64_t user_data) noexcept {
  return static_cast<uint8_t>(user_data >> 56);
}
inline constexpr uint64_t user_data_id(uint64_t user_data) noexcept {
  return user_data & ((uint64_t{1} << 56) - 1);
}

// Request helpers: each prepares one entry and tags it with user_data.
// Accepts connections on `listen_fd` until cancelled or an error ends it (every completion
// but the last carries IORING_CQE_F_MORE).
void prep_multishot_accept(io_uring_sqe* sqe, int listen_fd, uint64_t user_data) noexcept;
void prep_accept(io_uring_sqe* sqe, int listen_fd, uint64_t user_data) noexcept;
// Receives into buffers of `group` until cancelled, an error, EOF or -ENOBUFS ends it.
void prep_multishot_recv(io_uring_sqe* sqe, int fd, uint16_t group, uint64_t user_data) noexcept;
// One receive into a buffer of `group`.
void prep_recv_select(io_uring_sqe* sqe, int fd, uint16_t group, uint64_t user_data) noexcept;
// One receive into the caller's buffer.
void prep_recv(io_uring_sqe* sqe, int fd, void* buf, size_t len, uint64_t user_data) noexcept;
// A send with MSG_NOSIGNAL (a closed peer is an -EPIPE completion, never a SIGPIPE).
void prep_send(io_uring_sqe* sqe, int fd, const void* buf, size_t len, uint64_t user_data) noexcept;
// Cancels every request whose user_data is `target` (its completions end with -ECANCELED).
void prep_cancel(io_uring_sqe* sqe, uint64_t target, uint64_t user_data) noexcept;

}  // namespace sluice

#endif  // SLUICE_IO_URING_H_
