#include "io/uring.h"

#include <sched.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "io/io_error.h"

namespace sluice {
namespace {

bool setup_accepts(unsigned flags) {
  io_uring ring{};
  if (io_uring_queue_init(4, &ring, flags) != 0) return false;
  io_uring_queue_exit(&ring);
  return true;
}

// Waits up to a second for one completion and copies it out.
bool wait_one(io_uring& ring, io_uring_cqe* out) {
  io_uring_cqe* cqe = nullptr;
  __kernel_timespec ts{.tv_sec = 1, .tv_nsec = 0};
  if (io_uring_wait_cqe_timeout(&ring, &cqe, &ts) != 0 || cqe == nullptr) return false;
  *out = *cqe;
  io_uring_cqe_seen(&ring, cqe);
  return true;
}

// Runs one multishot receive into a one-entry buffer ring over a socket pair: true if the
// kernel delivered the byte into a provided buffer and kept the request armed.
bool probe_multishot_recv() {
  io_uring ring{};
  if (io_uring_queue_init(4, &ring, 0) != 0) return false;
  bool ok = false;
  int sv[2] = {-1, -1};
  void* mem = mmap(nullptr, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (mem != MAP_FAILED && socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0) {
    auto* br = static_cast<io_uring_buf_ring*>(mem);
    io_uring_buf_ring_init(br);
    static char byte_buffer[64];
    io_uring_buf_ring_add(br, byte_buffer, sizeof(byte_buffer), 0, io_uring_buf_ring_mask(1), 0);
    io_uring_buf_ring_advance(br, 1);
    io_uring_buf_reg reg{};
    reg.ring_addr = reinterpret_cast<uint64_t>(mem);
    reg.ring_entries = 1;
    reg.bgid = 0;
    if (io_uring_register_buf_ring(&ring, &reg, 0) == 0) {
      io_uring_sqe* sqe = io_uring_get_sqe(&ring);
      prep_multishot_recv(sqe, sv[0], 0, 1);
      io_uring_cqe cqe{};
      if (io_uring_submit(&ring) == 1 && ::write(sv[1], "p", 1) == 1 && wait_one(ring, &cqe)) {
        ok = cqe.res == 1 && cqe_has_buffer(cqe) && cqe_more(cqe);
      }
      io_uring_unregister_buf_ring(&ring, 0);
    }
  }
  // Closing the socket and the ring ends the request.
  if (sv[0] >= 0) ::close(sv[0]);
  if (sv[1] >= 0) ::close(sv[1]);
  io_uring_queue_exit(&ring);
  if (mem != MAP_FAILED) munmap(mem, 4096);
  return ok;
}

// Runs one multishot accept on an abstract-namespace unix socket: true if it accepted a
// connection and stayed armed.
bool probe_multishot_accept() {
  io_uring ring{};
  if (io_uring_queue_init(4, &ring, 0) != 0) return false;
  bool ok = false;
  const int listener = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  int client = -1;
  sockaddr_un addr{};
  socklen_t len = sizeof(addr);
  // Binding with the family alone autobinds a unique abstract name.
  sockaddr_un autobind{};
  autobind.sun_family = AF_UNIX;
  if (listener >= 0 &&
      ::bind(listener, reinterpret_cast<sockaddr*>(&autobind), sizeof(sa_family_t)) == 0 &&
      ::listen(listener, 4) == 0 &&
      ::getsockname(listener, reinterpret_cast<sockaddr*>(&addr), &len) == 0) {
    io_uring_sqe* sqe = io_uring_get_sqe(&ring);
    prep_multishot_accept(sqe, listener, 1);
    client = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    io_uring_cqe cqe{};
    if (io_uring_submit(&ring) == 1 && client >= 0 &&
        ::connect(client, reinterpret_cast<sockaddr*>(&addr), len) == 0 && wait_one(ring, &cqe)) {
      ok = cqe.res >= 0 && cqe_more(cqe);
      if (cqe.res >= 0) ::close(cqe.res);
    }
  }
  if (client >= 0) ::close(client);
  if (listener >= 0) ::close(listener);
  io_uring_queue_exit(&ring);
  return ok;
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
  f.ext_arg = (ring.features & IORING_FEAT_EXT_ARG) != 0;
  if (io_uring_probe* probe = io_uring_get_probe_ring(&ring)) {
    f.op_write = io_uring_opcode_supported(probe, IORING_OP_WRITE);
    f.op_fsync = io_uring_opcode_supported(probe, IORING_OP_FSYNC);
    f.op_send = io_uring_opcode_supported(probe, IORING_OP_SEND);
    f.op_recv = io_uring_opcode_supported(probe, IORING_OP_RECV);
    f.op_recvmsg = io_uring_opcode_supported(probe, IORING_OP_RECVMSG);
    f.op_accept = io_uring_opcode_supported(probe, IORING_OP_ACCEPT);
    f.op_read = io_uring_opcode_supported(probe, IORING_OP_READ);
    f.op_cancel = io_uring_opcode_supported(probe, IORING_OP_ASYNC_CANCEL);
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
  f.taskrun_flag = setup_accepts(IORING_SETUP_COOP_TASKRUN | IORING_SETUP_TASKRUN_FLAG);
  f.start_disabled = setup_accepts(IORING_SETUP_R_DISABLED);
  // Multishot is a per-request flag an opcode probe cannot see: run one of each.
  f.multishot_accept = f.op_accept && probe_multishot_accept();
  f.multishot_recv = f.op_recv && f.buf_ring && probe_multishot_recv();
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
  note(taskrun_flag, "taskrun_flag");
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
  if (options.taskrun_flag && f.taskrun_flag &&
      (flags & (IORING_SETUP_DEFER_TASKRUN | IORING_SETUP_COOP_TASKRUN))) {
    flags |= IORING_SETUP_TASKRUN_FLAG;
  }
  if (options.start_disabled && f.start_disabled) flags |= IORING_SETUP_R_DISABLED;
  std::unique_ptr<Uring> uring(new Uring());
  io_uring_params params{};
  params.flags = flags;
  if (options.cq_entries > 0) {
    params.flags |= IORING_SETUP_CQSIZE;
    params.cq_entries = options.cq_entries;
  }
  int rc = io_uring_queue_init_params(options.entries, &uring->ring_, &params);
  if (rc == -EINVAL && flags != 0) {  // a flag this kernel takes alone but not in this mix
    flags = 0;
    params = io_uring_params{};
    if (options.cq_entries > 0) {
      params.flags = IORING_SETUP_CQSIZE;
      params.cq_entries = options.cq_entries;
    }
    rc = io_uring_queue_init_params(options.entries, &uring->ring_, &params);
  }
  if (rc != 0) return io_error(rc, "io_uring_queue_init", "(setup)");
  uring->flags_ = flags;
  uring->enabled_ = (flags & IORING_SETUP_R_DISABLED) == 0;
  return uring;
}

Uring::~Uring() { io_uring_queue_exit(&ring_); }

std::string Uring::describe_flags() const {
  std::vector<std::string> names;
  auto note = [&](unsigned flag, const char* name) {
    if (flags_ & flag) names.push_back(name);
  };
  note(IORING_SETUP_SINGLE_ISSUER, "single_issuer");
  note(IORING_SETUP_DEFER_TASKRUN, "defer_taskrun");
  note(IORING_SETUP_COOP_TASKRUN, "coop_taskrun");
  note(IORING_SETUP_TASKRUN_FLAG, "taskrun_flag");
  return names.empty() ? "none" : absl::StrJoin(names, " ");
}

absl::Status Uring::enable() {
  if (enabled_) return absl::OkStatus();
  // liburing 2.3 declares io_uring_enable_rings() but does not export it.
  const int rc = io_uring_register(ring_.ring_fd, IORING_REGISTER_ENABLE_RINGS, nullptr, 0);
  if (rc < 0) return io_error(rc, "io_uring_register", "(enable rings)");
  enabled_ = true;
  return absl::OkStatus();
}

absl::Status Uring::restrict_workers(std::span<const int> cpus) {
  cpu_set_t set;
  CPU_ZERO(&set);
  for (const int cpu : cpus) {
    if (cpu < 0 || cpu >= CPU_SETSIZE) {
      return absl::InvalidArgumentError(absl::StrCat("io_uring worker CPU ", cpu, " out of range"));
    }
    CPU_SET(cpu, &set);
  }
  const int rc = io_uring_register_iowq_aff(&ring_, sizeof(set), &set);
  if (rc < 0) return io_error(rc, "io_uring_register_iowq_aff", "(io_uring worker CPUs)");
  return absl::OkStatus();
}

io_uring_sqe* Uring::get_sqe() noexcept {
  io_uring_sqe* sqe = io_uring_get_sqe(&ring_);
  if (sqe != nullptr) return sqe;
  if (io_uring_submit(&ring_) < 0) return nullptr;
  return io_uring_get_sqe(&ring_);
}

int Uring::wait(int64_t timeout_ns) noexcept {
  if (timeout_ns <= 0) {
    const int rc = submit_and_get_events();
    return rc < 0 ? rc : 0;
  }
  __kernel_timespec ts{.tv_sec = timeout_ns / 1'000'000'000, .tv_nsec = timeout_ns % 1'000'000'000};
  io_uring_cqe* cqe = nullptr;
  const int rc = io_uring_submit_and_wait_timeout(&ring_, &cqe, 1, &ts, nullptr);
  if (rc == -ETIME || rc == -EINTR) return rc;
  return rc < 0 ? rc : 0;
}

absl::StatusOr<std::unique_ptr<ProvidedBufferRing>> ProvidedBufferRing::create(Uring& uring,
                                                                               uint16_t group,
                                                                               uint32_t count,
                                                                               uint32_t size) {
  if (count == 0 || count > 32768 || (count & (count - 1)) != 0 || size == 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("provided buffer ring of ", count, " x ", size,
                     " bytes: the count must be a power of two up to 32768 and the size positive"));
  }
  std::unique_ptr<ProvidedBufferRing> r(new ProvidedBufferRing(uring, group, count, size));
  const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  r->ring_bytes_ = (count * sizeof(io_uring_buf) + page - 1) / page * page;
  void* ring_mem =
      mmap(nullptr, r->ring_bytes_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (ring_mem == MAP_FAILED) return io_error(errno, "mmap", "(provided buffer ring)");
  r->ring_ = static_cast<io_uring_buf_ring*>(ring_mem);
  r->buffer_bytes_ = (static_cast<size_t>(count) * size + page - 1) / page * page;
  void* buffers = mmap(nullptr, r->buffer_bytes_, PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
  if (buffers == MAP_FAILED) return io_error(errno, "mmap", "(provided buffers)");
  r->buffers_ = static_cast<std::byte*>(buffers);

  io_uring_buf_ring_init(r->ring_);
  io_uring_buf_reg reg{};
  reg.ring_addr = reinterpret_cast<uint64_t>(r->ring_);
  reg.ring_entries = count;
  reg.bgid = group;
  const int rc = io_uring_register_buf_ring(uring.ring(), &reg, 0);
  if (rc < 0) return io_error(rc, "io_uring_register_buf_ring", absl::StrCat("group ", group));
  r->registered_ = true;
  for (uint32_t id = 0; id < count; ++id) r->recycle(static_cast<uint16_t>(id));
  r->publish();
  return r;
}

ProvidedBufferRing::~ProvidedBufferRing() {
  if (registered_) io_uring_unregister_buf_ring(uring_.ring(), group_);
  if (buffers_ != nullptr) munmap(buffers_, buffer_bytes_);
  if (ring_ != nullptr) munmap(ring_, ring_bytes_);
}

void ProvidedBufferRing::recycle(uint16_t id) noexcept {
  io_uring_buf_ring_add(ring_, buffer(id), size_, id, io_uring_buf_ring_mask(count_),
                        static_cast<int>(pending_));
  ++pending_;
}

void ProvidedBufferRing::publish() noexcept {
  if (pending_ == 0) return;
  // io_uring_buf_ring_advance stores the new tail with release semantics: the kernel that
  // sees the tail also sees the entries written before it.
  io_uring_buf_ring_advance(ring_, static_cast<int>(pending_));
  given_ += pending_;
  pending_ = 0;
}

void prep_multishot_accept(io_uring_sqe* sqe, int listen_fd, uint64_t user_data) noexcept {
  io_uring_prep_multishot_accept(sqe, listen_fd, nullptr, nullptr, SOCK_CLOEXEC);
  io_uring_sqe_set_data64(sqe, user_data);
}

void prep_accept(io_uring_sqe* sqe, int listen_fd, uint64_t user_data) noexcept {
  io_uring_prep_accept(sqe, listen_fd, nullptr, nullptr, SOCK_CLOEXEC);
  io_uring_sqe_set_data64(sqe, user_data);
}

void prep_multishot_recv(io_uring_sqe* sqe, int fd, uint16_t group, uint64_t user_data) noexcept {
  io_uring_prep_recv_multishot(sqe, fd, nullptr, 0, 0);
  sqe->flags |= IOSQE_BUFFER_SELECT;
  sqe->buf_group = group;
  io_uring_sqe_set_data64(sqe, user_data);
}

void prep_recv_select(io_uring_sqe* sqe, int fd, uint16_t group, uint64_t user_data) noexcept {
  io_uring_prep_recv(sqe, fd, nullptr, 0, 0);
  sqe->flags |= IOSQE_BUFFER_SELECT;
  sqe->buf_group = group;
  io_uring_sqe_set_data64(sqe, user_data);
}

void prep_recv(io_uring_sqe* sqe, int fd, void* buf, size_t len, uint64_t user_data) noexcept {
  io_uring_prep_recv(sqe, fd, buf, len, 0);
  io_uring_sqe_set_data64(sqe, user_data);
}

void prep_send(io_uring_sqe* sqe, int fd, const void* buf, size_t len,
               uint64_t user_data) noexcept {
  io_uring_prep_send(sqe, fd, buf, len, MSG_NOSIGNAL);
  io_uring_sqe_set_data64(sqe, user_data);
}

void prep_cancel(io_uring_sqe* sqe, uint64_t target, uint64_t user_data) noexcept {
  io_uring_prep_cancel64(sqe, target, 0);
  io_uring_sqe_set_data64(sqe, user_data);
}

}  // namespace sluice
