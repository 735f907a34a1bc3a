#include "io/uring.h"

#include <sys/utsname.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "io/io_error.h"

namespace sluice {
namespace {

bool kernel_at_least(int major, int minor) {
  utsname u{};
  if (uname(&u) != 0) return false;
  int ma = 0, mi = 0;
  if (std::sscanf(u.release, "%d.%d", &ma, &mi) != 2) return false;
  return ma > major || (ma == major && mi >= minor);
}

bool setup_accepts(unsigned flags) {
  io_uring ring{};
  if (io_uring_queue_init(4, &ring, flags) != 0) return false;
  io_uring_queue_exit(&ring);
  return true;
}

UringFeatures run_probe() {
  UringFeatures f;
  io_uring ring{};
  const int rc = io_uring_queue_init(4, &ring, 0);
  if (rc != 0) {
    f.unavailable_reason = absl::StrCat("io_uring_setup: ", std::strerror(-rc));
    return f;
  }
  f.available = true;
  if (io_uring_probe* probe = io_uring_get_probe_ring(&ring)) {
    f.op_write = io_uring_opcode_supported(probe, IORING_OP_WRITE);
    f.op_fsync = io_uring_opcode_supported(probe, IORING_OP_FSYNC);
    f.op_send = io_uring_opcode_supported(probe, IORING_OP_SEND);
    f.op_recv = io_uring_opcode_supported(probe, IORING_OP_RECV);
    f.op_accept = io_uring_opcode_supported(probe, IORING_OP_ACCEPT);
    f.op_send_zc = io_uring_opcode_supported(probe, IORING_OP_SEND_ZC);
    f.op_msg_ring = io_uring_opcode_supported(probe, IORING_OP_MSG_RING);
    io_uring_free_probe(probe);
  }
  // Registering a buffer ring with no entries is the cheapest honest probe for it.
  io_uring_buf_reg reg{};
  void* mem = nullptr;
  if (posix_memalign(&mem, 4096, 4096) == 0) {
    std::memset(mem, 0, 4096);
    reg.ring_addr = reinterpret_cast<uint64_t>(mem);
    reg.ring_entries = 8;
    reg.bgid = 0;
    if (io_uring_register_buf_ring(&ring, &reg, 0) == 0) {
      f.buf_ring = true;
      io_uring_unregister_buf_ring(&ring, 0);
    }
    std::free(mem);
  }
  io_uring_queue_exit(&ring);

  f.single_issuer = setup_accepts(IORING_SETUP_SINGLE_ISSUER);
  f.coop_taskrun = setup_accepts(IORING_SETUP_COOP_TASKRUN);
  f.defer_taskrun = setup_accepts(IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN);
  // Multishot flags are per-request, not probeable by opcode: they came with these kernels.
  f.multishot_accept = f.op_accept && kernel_at_least(5, 19);
  f.multishot_recv = f.op_recv && f.buf_ring && kernel_at_least(6, 0);
  return f;
}

}  // namespace

std::string UringFeatures::describe() const {
  if (!available) return absl::StrCat("io_uring unavailable (", unavailable_reason, ")");
  std::vector<std::string> have, missing;
  auto note = [&](bool on, const char* name) { (on ? have : missing).push_back(name); };
  note(single_issuer, "single_issuer");
  note(defer_taskrun, "defer_taskrun");
  note(coop_taskrun, "coop_taskrun");
  note(buf_ring, "buf_ring");
  note(multishot_accept, "multishot_accept");
  note(multishot_recv, "multishot_recv");
  note(op_send_zc, "send_zc");
  note(op_msg_ring, "msg_ring");
  return absl::StrCat("io_uring: ", absl::StrJoin(have, " "),
                      missing.empty() ? "" : "; missing: ", absl::StrJoin(missing, " "));
}

const UringFeatures& probe_uring() {
  static const UringFeatures features = run_probe();
  return features;
}

absl::StatusOr<std::unique_ptr<Uring>> Uring::create(const UringOptions& options) {
  const UringFeatures& f = probe_uring();
  if (!f.available) return absl::UnavailableError(f.describe());
  unsigned flags = 0;
  if (options.single_issuer && f.single_issuer) flags |= IORING_SETUP_SINGLE_ISSUER;
  if (options.defer_taskrun && f.defer_taskrun && (flags & IORING_SETUP_SINGLE_ISSUER)) {
    flags |= IORING_SETUP_DEFER_TASKRUN;
  } else if (options.coop_taskrun && f.coop_taskrun) {
    flags |= IORING_SETUP_COOP_TASKRUN;
  }
  std::unique_ptr<Uring> uring(new Uring());
  int rc = io_uring_queue_init(options.entries, &uring->ring_, flags);
  if (rc == -EINVAL && flags != 0) {  // a flag this kernel takes alone but not in this mix
    flags = 0;
    rc = io_uring_queue_init(options.entries, &uring->ring_, flags);
  }
  if (rc != 0) return io_error(rc, "io_uring_queue_init", "(setup)");
  uring->flags_ = flags;
  return uring;
}

Uring::~Uring() { io_uring_queue_exit(&ring_); }

io_uring_sqe* Uring::get_sqe() noexcept {
  io_uring_sqe* sqe = io_uring_get_sqe(&ring_);
  if (sqe != nullptr) return sqe;
  if (io_uring_submit(&ring_) < 0) return nullptr;
  return io_uring_get_sqe(&ring_);
}

}  // namespace sluice
