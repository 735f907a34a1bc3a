// A thin owner of one io_uring instance, and the feature probe every io_uring user runs first.
//
// Debian 12's liburing is 2.3; the kernel may be newer or older than it. probe_uring() says what
// this kernel offers (it creates and destroys a throwaway ring), so callers choose their path
// once at start and say which they took. Uring::create() falls back flag by flag: setup flags
// the kernel rejects (EINVAL) are dropped and reported in flags_used().
//
// Thread safety: a Uring is driven by one thread (the submitter). SINGLE_ISSUER, when granted,
// makes the kernel enforce that.
#ifndef SLUICE_IO_URING_H_
#define SLUICE_IO_URING_H_

#include <liburing.h>

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/statusor.h"

namespace sluice {

struct UringFeatures {
  bool available = false;  // io_uring_setup works at all (may be off: sysctl, seccomp)
  std::string unavailable_reason;
  bool single_issuer = false;
  bool defer_taskrun = false;
  bool coop_taskrun = false;
  bool op_write = false;
  bool op_fsync = false;
  bool op_send = false;
  bool op_recv = false;
  bool op_accept = false;
  bool op_send_zc = false;
  bool op_msg_ring = false;
  bool buf_ring = false;         // provided buffer rings (kernel 5.19+)
  bool multishot_accept = false;  // kernel 5.19+
  bool multishot_recv = false;    // kernel 6.0+

  // One line: "io_uring: single_issuer defer_taskrun ... ; missing: ..."
  std::string describe() const;
};

// Probed once per process (cached); cheap after the first call.
const UringFeatures& probe_uring();

struct UringOptions {
  unsigned entries = 64;
  bool single_issuer = true;
  bool coop_taskrun = true;
  bool defer_taskrun = false;  // REQUIRES single_issuer; completions then need get_events()
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

  // A free submission entry; when the queue is full, submits what is queued and retries.
  // Returns nullptr only if the kernel refuses to take more (the caller treats it as busy).
  io_uring_sqe* get_sqe() noexcept;

  // Submits queued entries without waiting. Returns the count or -errno.
  int submit() noexcept { return io_uring_submit(&ring_); }

  // Submits and waits for at least `wait_nr` completions. Returns -errno on failure.
  int submit_and_wait(unsigned wait_nr) noexcept { return io_uring_submit_and_wait(&ring_, wait_nr); }

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
};

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

}  // namespace sluice

#endif  // SLUICE_IO_URING_H_
