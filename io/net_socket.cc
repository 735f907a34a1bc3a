#include "io/net_socket.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "core/absl_compat.h"
#include "io/io_error.h"

namespace sluice {

absl::StatusOr<int> listen_tcp(const SocketAddress& address, int backlog) {
  const int fd = ::socket(address.family(), SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return io_error(errno, "socket", address.to_string());
  const int one = 1;
  if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 ||
      ::bind(fd, address.addr(), address.length) != 0 || ::listen(fd, backlog) != 0) {
    const int e = errno;
    ::close(fd);
    return io_error(e, "listen on", address.to_string());
  }
  return fd;
}

absl::StatusOr<int> bind_udp(const SocketAddress& address, int rcvbuf) {
  const int fd = ::socket(address.family(), SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return io_error(errno, "socket", address.to_string());
  if (rcvbuf > 0) (void)setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
  if (::bind(fd, address.addr(), address.length) != 0) {
    const int e = errno;
    ::close(fd);
    return io_error(e, "bind UDP", address.to_string());
  }
  return fd;
}

}  // namespace sluice
