#include "io/net_socket.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "core/absl_compat.h"
#include "io/io_error.h"

namespace sluice {

uint16_t SocketAddress::port() const noexcept {
  if (family() == AF_INET) {
    return ntohs(reinterpret_cast<const sockaddr_in*>(&storage)->sin_port);
  }
  if (family() == AF_INET6) {
    return ntohs(reinterpret_cast<const sockaddr_in6*>(&storage)->sin6_port);
  }
  return 0;
}

void SocketAddress::set_port(uint16_t port) noexcept {
  if (family() == AF_INET) reinterpret_cast<sockaddr_in*>(&storage)->sin_port = htons(port);
  if (family() == AF_INET6) reinterpret_cast<sockaddr_in6*>(&storage)->sin6_port = htons(port);
}

std::string SocketAddress::to_string() const {
  char host[INET6_ADDRSTRLEN] = "?";
  if (family() == AF_INET) {
    inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in*>(&storage)->sin_addr, host,
              sizeof(host));
    return absl::StrCat(host, ":", port());
  }
  if (family() == AF_INET6) {
    inet_ntop(AF_INET6, &reinterpret_cast<const sockaddr_in6*>(&storage)->sin6_addr, host,
              sizeof(host));
    return absl::StrCat("[", host, "]:", port());
  }
  return "?";
}

absl::StatusOr<SocketAddress> parse_socket_address(std::string_view host_port) {
  auto bad = [&](std::string_view why) {
    return absl::InvalidArgumentError(
        absl::StrCat("address '", to_absl(host_port), "': ", to_absl(why)));
  };
  std::string_view host, port_text;
  if (!host_port.empty() && host_port.front() == '[') {
    const size_t close = host_port.find(']');
    if (close == std::string_view::npos || close + 1 >= host_port.size() ||
        host_port[close + 1] != ':') {
      return bad("expected [ipv6]:port");
    }
    host = host_port.substr(1, close - 1);
    port_text = host_port.substr(close + 2);
  } else {
    const size_t colon = host_port.rfind(':');
    if (colon == std::string_view::npos) return bad("expected host:port");
    host = host_port.substr(0, colon);
    port_text = host_port.substr(colon + 1);
  }
  uint16_t port = 0;
  const auto [end, ec] =
      std::from_chars(port_text.data(), port_text.data() + port_text.size(), port);
  if (port_text.empty() || ec != std::errc() || end != port_text.data() + port_text.size()) {
    return bad("the port is not a number in 0..65535");
  }
  if (host.empty()) return bad("no host");
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_flags = AI_NUMERICSERV | AI_ADDRCONFIG;
  addrinfo* found = nullptr;
  const std::string host_string(host);
  const std::string port_string(port_text);
  const int rc = getaddrinfo(host_string.c_str(), port_string.c_str(), &hints, &found);
  if (rc != 0 || found == nullptr) {
    // AI_ADDRCONFIG hides loopback-only hosts on machines without a configured address.
    hints.ai_flags = AI_NUMERICSERV;
    if (getaddrinfo(host_string.c_str(), port_string.c_str(), &hints, &found) != 0 ||
        found == nullptr) {
      return bad(absl::StrCat("cannot resolve the host: ", gai_strerror(rc)));
    }
  }
  const addrinfo* pick = found;
  for (const addrinfo* a = found; a != nullptr; a = a->ai_next) {
    if (a->ai_family == AF_INET) {
      pick = a;
      break;
    }
  }
  SocketAddress out;
  std::memcpy(&out.storage, pick->ai_addr, pick->ai_addrlen);
  out.length = pick->ai_addrlen;
  freeaddrinfo(found);
  out.set_port(port);
  return out;
}

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

absl::StatusOr<SocketAddress> local_address(int fd) {
  SocketAddress a;
  a.length = sizeof(a.storage);
  if (getsockname(fd, reinterpret_cast<sockaddr*>(&a.storage), &a.length) != 0) {
    return io_error(errno, "getsockname", absl::StrCat("fd ", fd));
  }
  return a;
}

}  // namespace sluice
