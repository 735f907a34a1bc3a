#include "io/uring.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <string>
#include <thread>
#include <vector>

#include "gtest/gtest.h"

namespace sluice {
namespace {

constexpr uint8_t kOpRecv = 1;
constexpr uint8_t kOpAccept = 2;
constexpr uint8_t kOpCancel = 3;
constexpr uint8_t kOpNop = 4;

struct SocketPair {
  SocketPair() { EXPECT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fd), 0); }
  ~SocketPair() {
    for (int f : fd) {
      if (f >= 0) ::close(f);
    }
  }
  void write(const std::string& s) const {
    ASSERT_EQ(::write(fd[1], s.data(), s.size()), static_cast<ssize_t>(s.size()));
  }
  int fd[2] = {-1, -1};
};

// Collects every completion ready now (entering the kernel for deferred work first).
std::vector<io_uring_cqe> reap(Uring& u) {
  EXPECT_GE(u.submit_and_get_events(), 0);
  std::vector<io_uring_cqe> out;
  u.drain([&](const io_uring_cqe& c) { out.push_back(c); });
  return out;
}

// Waits (up to 5 s per completion) until `n` completions have arrived.
std::vector<io_uring_cqe> reap_at_least(Uring& u, size_t n) {
  std::vector<io_uring_cqe> out;
  for (int i = 0; i < 100 && out.size() < n; ++i) {
    if (u.cq_ready() == 0) {
      EXPECT_NE(u.wait(50'000'000), -EBADF);
    }
    u.drain([&](const io_uring_cqe& c) { out.push_back(c); });
  }
  return out;
}

TEST(UringProbe, DescribesWhatTheKernelOffers) {
  const UringFeatures& f = probe_uring();
  if (!f.available) GTEST_SKIP() << f.describe();
  const std::string d = f.describe();
  EXPECT_EQ(d.rfind("io_uring: ", 0), 0u) << d;
  // The multishot probes run real requests; a kernel with them also has the opcodes.
  if (f.multishot_recv) {
    EXPECT_TRUE(f.buf_ring && f.op_recv);
  }
  if (f.multishot_accept) {
    EXPECT_TRUE(f.op_accept);
  }
  std::printf("[ probe    ] %s\n", d.c_str());
}

TEST(ProvidedBufferRing, RejectsABadShape) {
  if (!probe_uring().buf_ring) GTEST_SKIP() << probe_uring().describe();
  auto u = Uring::create({});
  ASSERT_TRUE(u.ok()) << u.status();
  EXPECT_FALSE(ProvidedBufferRing::create(**u, 0, 3, 64).ok());
  EXPECT_FALSE(ProvidedBufferRing::create(**u, 0, 65536, 64).ok());
  EXPECT_FALSE(ProvidedBufferRing::create(**u, 0, 4, 0).ok());
}

// Multishot recv into a 4-buffer ring: data lands in provided buffers; when the application
// holds every buffer the request ends with -ENOBUFS and the rest stays in the socket (the
// backpressure path); recycling the buffers and re-arming delivers it.
TEST(ProvidedBufferRing, MultishotRecvStopsWhenBuffersRunOutAndResumes) {
  const UringFeatures& f = probe_uring();
  if (!f.multishot_recv) GTEST_SKIP() << "no multishot recv: " << f.describe();
  auto u = Uring::create({.entries = 8});
  ASSERT_TRUE(u.ok()) << u.status();
  auto ring = ProvidedBufferRing::create(**u, 5, 4, 8);
  ASSERT_TRUE(ring.ok()) << ring.status();
  ProvidedBufferRing& br = **ring;
  EXPECT_EQ(br.available(), 4u);

  SocketPair sp;
  prep_multishot_recv((*u)->get_sqe(), sp.fd[0], br.group(), make_user_data(kOpRecv, 9));
  ASSERT_EQ((*u)->submit(), 1);

  std::string received;
  std::vector<uint16_t> held;
  bool ended = false;
  int ended_with = 0;
  auto take = [&](const std::vector<io_uring_cqe>& cqes) {
    for (const io_uring_cqe& c : cqes) {
      EXPECT_EQ(user_data_op(c.user_data), kOpRecv);
      EXPECT_EQ(user_data_id(c.user_data), 9u);
      if (c.res > 0) {
        EXPECT_TRUE(cqe_has_buffer(c));
        br.taken();
        received.append(reinterpret_cast<const char*>(br.buffer(buffer_id(c))),
                        static_cast<size_t>(c.res));
        held.push_back(buffer_id(c));
      }
      if (!cqe_more(c)) {
        ended = true;
        ended_with = c.res;
      }
    }
  };
  // 4 writes of 8 bytes fill the 4 buffers one by one.
  for (int i = 0; i < 4; ++i) {
    sp.write(std::string(8, static_cast<char>('a' + i)));
    take(reap_at_least(**u, 1));
  }
  EXPECT_EQ(received, "aaaaaaaabbbbbbbbccccccccdddddddd");
  EXPECT_EQ(br.available(), 0u);
  // No buffer left: the next data ends the request with -ENOBUFS, and stays in the socket.
  sp.write("eeee");
  while (!ended) take(reap_at_least(**u, 1));
  EXPECT_EQ(ended_with, -ENOBUFS);
  EXPECT_EQ(received.size(), 32u);

  for (uint16_t id : held) br.recycle(id);
  held.clear();
  EXPECT_EQ(br.available(), 0u);  // recycled, not yet published
  br.publish();
  EXPECT_EQ(br.available(), 4u);
  ended = false;
  prep_multishot_recv((*u)->get_sqe(), sp.fd[0], br.group(), make_user_data(kOpRecv, 9));
  ASSERT_EQ((*u)->submit(), 1);
  take(reap_at_least(**u, 1));
  EXPECT_EQ(received.substr(32), "eeee");
  EXPECT_FALSE(ended);

  // Cancelling ends it with -ECANCELED.
  prep_cancel((*u)->get_sqe(), make_user_data(kOpRecv, 9), make_user_data(kOpCancel, 0));
  bool cancel_done = false;
  for (int i = 0; i < 100 && !(ended && cancel_done); ++i) {
    for (const io_uring_cqe& c : reap_at_least(**u, 1)) {
      if (user_data_op(c.user_data) == kOpCancel) {
        cancel_done = true;
        EXPECT_EQ(c.res, 0);
      } else {
        take({c});
      }
    }
  }
  EXPECT_TRUE(ended);
  EXPECT_EQ(ended_with, -ECANCELED);
}

TEST(Uring, MultishotAcceptTakesEveryConnection) {
  const UringFeatures& f = probe_uring();
  if (!f.multishot_accept) GTEST_SKIP() << "no multishot accept: " << f.describe();
  auto u = Uring::create({});
  ASSERT_TRUE(u.ok()) << u.status();
  const int listener = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(addr);
  ASSERT_EQ(::bind(listener, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  ASSERT_EQ(::listen(listener, 16), 0);
  ASSERT_EQ(::getsockname(listener, reinterpret_cast<sockaddr*>(&addr), &len), 0);
  prep_multishot_accept((*u)->get_sqe(), listener, make_user_data(kOpAccept, 1));
  ASSERT_EQ((*u)->submit(), 1);
  std::vector<int> clients;
  for (int i = 0; i < 5; ++i) {
    clients.push_back(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    ASSERT_EQ(::connect(clients.back(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  }
  const std::vector<io_uring_cqe> cqes = reap_at_least(**u, 5);
  ASSERT_EQ(cqes.size(), 5u);
  for (const io_uring_cqe& c : cqes) {
    EXPECT_GE(c.res, 0);
    EXPECT_TRUE(cqe_more(c));
    if (c.res >= 0) ::close(c.res);
  }
  for (int c : clients) ::close(c);
  ::close(listener);
}

// With DEFER_TASKRUN the completion of a receive is not in the CQ until the submitter enters
// the kernel, and TASKRUN_FLAG tells it when to: the poll loop's contract. The write below runs
// on this thread, so the kernel has queued the deferred work when it returns.
TEST(Uring, DeferredCompletionsNeedTheKernelAndAreFlagged) {
  const UringFeatures& f = probe_uring();
  if (!f.defer_taskrun || !f.taskrun_flag) GTEST_SKIP() << f.describe();
  auto u = Uring::create({.defer_taskrun = true, .taskrun_flag = true});
  ASSERT_TRUE(u.ok()) << u.status();
  ASSERT_NE((*u)->flags_used() & IORING_SETUP_DEFER_TASKRUN, 0u) << (*u)->describe_flags();
  SocketPair sp;
  char buf[16];
  prep_recv((*u)->get_sqe(), sp.fd[0], buf, sizeof(buf), make_user_data(kOpRecv, 1));
  ASSERT_EQ((*u)->submit(), 1);
  EXPECT_FALSE((*u)->pending_kernel_work());
  sp.write("hi");
  EXPECT_EQ((*u)->cq_ready(), 0u);
  EXPECT_TRUE((*u)->pending_kernel_work());
  const std::vector<io_uring_cqe> cqes = reap(**u);
  ASSERT_EQ(cqes.size(), 1u);
  EXPECT_EQ(cqes[0].res, 2);
  EXPECT_FALSE((*u)->pending_kernel_work());
}

TEST(Uring, DisabledRingIsDrivenByTheThreadThatEnablesIt) {
  const UringFeatures& f = probe_uring();
  if (!f.start_disabled || !f.single_issuer) GTEST_SKIP() << f.describe();
  auto u = Uring::create({.single_issuer = true, .start_disabled = true});
  ASSERT_TRUE(u.ok()) << u.status();
  EXPECT_FALSE((*u)->enabled());
  int res = -1;
  std::thread driver([&] {
    ASSERT_TRUE((*u)->enable().ok());
    io_uring_sqe* sqe = (*u)->get_sqe();
    io_uring_prep_nop(sqe);
    io_uring_sqe_set_data64(sqe, make_user_data(kOpNop, 0));
    const std::vector<io_uring_cqe> cqes = reap_at_least(**u, 1);
    ASSERT_EQ(cqes.size(), 1u);
    res = cqes[0].res;
  });
  driver.join();
  EXPECT_EQ(res, 0);
  EXPECT_TRUE((*u)->enabled());
}

// The network server parks on a read of its wake eventfd (non-blocking, so wake() never
// blocks): the read must stay armed until written, not complete at once with -EAGAIN.
TEST(Uring, AReadOfANonBlockingEventfdWaitsForTheWrite) {
  if (!probe_uring().op_read) GTEST_SKIP() << probe_uring().describe();
  auto u = Uring::create({.defer_taskrun = true, .taskrun_flag = true});
  ASSERT_TRUE(u.ok()) << u.status();
  const int efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  ASSERT_GE(efd, 0);
  uint64_t value = 0;
  io_uring_sqe* sqe = (*u)->get_sqe();
  io_uring_prep_read(sqe, efd, &value, sizeof(value), 0);
  io_uring_sqe_set_data64(sqe, make_user_data(kOpRecv, 1));
  const int rc = (*u)->wait(1'000'000);  // submits, then times out: nothing completed
  EXPECT_TRUE(rc == 0 || rc == -ETIME) << rc;
  EXPECT_EQ((*u)->cq_ready(), 0u);
  const uint64_t one = 1;
  ASSERT_EQ(::write(efd, &one, sizeof(one)), 8);
  const std::vector<io_uring_cqe> cqes = reap_at_least(**u, 1);
  ASSERT_EQ(cqes.size(), 1u);
  EXPECT_EQ(cqes[0].res, 8);
  EXPECT_EQ(value, 1u);
  ::close(efd);
}

TEST(Uring, WaitReturnsOnTimeoutWithNothingToDo) {
  if (!probe_uring().available) GTEST_SKIP() << probe_uring().describe();
  auto u = Uring::create({});
  ASSERT_TRUE(u.ok()) << u.status();
  EXPECT_EQ((*u)->wait(1'000'000), -ETIME);
  EXPECT_EQ((*u)->wait(0), 0);
}

}  // namespace
}  // namespace sluice
