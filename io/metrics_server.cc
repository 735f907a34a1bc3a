#include "io/metrics_server.h"

#include <netinet/in.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "core/cpu.h"
#include "io/io_error.h"

namespace sluice {
namespace {

constexpr size_t kMaxRequest = 8192;
constexpr int kReadTimeoutMs = 1000;

void send_all(int fd, const std::string& data) {
  size_t done = 0;
  while (done < data.size()) {
    const ssize_t n = ::send(fd, data.data() + done, data.size() - done, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;  // the scraper went away
    done += static_cast<size_t>(n);
  }
}

std::string response(const char* status, const char* type, const std::string& body) {
  return absl::StrCat("HTTP/1.0 ", status, "\r\nContent-Type: ", type,
                      "\r\nContent-Length: ", body.size(), "\r\nConnection: close\r\n\r\n", body);
}

}  // namespace

absl::StatusOr<std::unique_ptr<MetricsServer>> MetricsServer::start(
    const std::string& listen, std::function<std::string()> body) {
  auto address = parse_socket_address(listen);
  if (!address.ok()) return address.status();
  const int fd = ::socket(address->family(), SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return io_error(errno, "socket for metrics", listen);
  const int one = 1;
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  if (::bind(fd, address->addr(), address->length) != 0 || ::listen(fd, 16) != 0) {
    const int err = errno;
    ::close(fd);
    return io_error(err, "listen for metrics on", listen);
  }
  auto bound = local_address(fd);
  if (!bound.ok()) {
    ::close(fd);
    return bound.status();
  }
  std::unique_ptr<MetricsServer> server(new MetricsServer(fd, bound->port(), std::move(body)));
  server->thread_ = std::thread([s = server.get()] { s->run(); });
  return server;
}

MetricsServer::~MetricsServer() { stop(); }

void MetricsServer::stop() {
  if (stopping_.exchange(true)) return;
  // Wakes the accept: shutdown on a listening socket makes accept fail with EINVAL.
  ::shutdown(fd_, SHUT_RDWR);
  if (thread_.joinable()) thread_.join();
  ::close(fd_);
}

void MetricsServer::run() {
  (void)set_current_thread_name("metrics");
  (void)move_current_thread_to_housekeeping();
  // The lowest priority: scrapes wait for the hot threads, never the other way round.
  ::setpriority(PRIO_PROCESS, static_cast<id_t>(::syscall(SYS_gettid)), 19);
  while (!stopping_.load(std::memory_order_acquire)) {
    const int client = ::accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (client < 0) {
      if (errno == EINTR || errno == ECONNABORTED) continue;
      if (stopping_.load(std::memory_order_acquire)) return;
      ::usleep(10'000);  // EMFILE and friends: back off instead of spinning
      continue;
    }
    serve(client);
    ::close(client);
  }
}

void MetricsServer::serve(int client) {
  std::string request;
  char buf[1024];
  // Read until the end of the headers, a timeout or the size bound.
  while (request.find("\r\n\r\n") == std::string::npos && request.find("\n\n") == std::string::npos) {
    pollfd p{client, POLLIN, 0};
    if (::poll(&p, 1, kReadTimeoutMs) <= 0) return;
    const ssize_t n = ::recv(client, buf, sizeof(buf), 0);
    if (n <= 0) return;
    request.append(buf, static_cast<size_t>(n));
    if (request.size() > kMaxRequest) return;
  }
  requests_.fetch_add(1, std::memory_order_relaxed);
  if (absl::StartsWith(request, "GET /metrics ") || absl::StartsWith(request, "GET / ")) {
    send_all(client, response("200 OK", "text/plain; version=0.0.4; charset=utf-8", body_()));
  } else {
    send_all(client, response("404 Not Found", "text/plain", "only GET /metrics is served\n"));
  }
}

}  // namespace sluice
