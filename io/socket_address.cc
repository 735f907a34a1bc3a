#include "io/socket_address.h"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "io/io_error.h"

namespace sluice {

uint16_t SocketAddress::port() const noexcept {
  if (family() == AF_INET) return ntohs(reinterpret_cast<const sockaddr_in*>(&storage)->sin_port);
  if (family() == AF_INET6) return ntohs(reinterpret_cast<const sockaddr_in6*>(&storage)->sin6_port);
  return 0;
}

void SocketAddress::set_port(uint16_t port) noexcept {
  if (family() == AF_INET) reinterpret_cast<sockaddr_in*>(&storage)->sin_port = htons(port);
  if (family() == AF_INET6) reinterpret_cast<sockaddr_in6*>(&storage)->sin6_port = htons(port);
}

std::string SocketAddress::to_string() const {
  char text[INET6_ADDRSTRLEN] = {};
  if (family() == AF_INET) {
    inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in*>(&storage)->sin_addr, text, sizeof(text));
    return absl::StrCat(text, ":", port());
  }
  if (family() == AF_INET6) {
    inet_ntop(AF_INET6, &reinterpret_cast<const sockaddr_in6*>(&storage)->sin6_addr, text,
              sizeof(text));
    return absl::StrCat("[", text, "]:", port());
  }
  return "?";
}

absl::StatusOr<SocketAddress> parse_socket_address(std::string_view text) {
  const std::string host_port(text);
  auto bad = [&](const char* why) {
    return absl::InvalidArgumentError(
        absl::StrCat("address \"", host_port, "\": ", why, " (expected HOST:PORT)"));
  };
  const size_t colon = host_port.rfind(':');
  if (colon == std::string::npos) return bad("no port");
  std::string host = host_port.substr(0, colon);
  uint32_t port = 0;
  if (!absl::SimpleAtoi(host_port.substr(colon + 1), &port) || port > 65535) {
    return bad("the port is not a number in 0..65535");
  }
  SocketAddress a;
  if (!host.empty() && host.front() == '[') {
    if (host.back() != ']') return bad("unclosed [");
    host = host.substr(1, host.size() - 2);
    auto* in6 = reinterpret_cast<sockaddr_in6*>(&a.storage);
    in6->sin6_family = AF_INET6;
    if (inet_pton(AF_INET6, host.c_str(), &in6->sin6_addr) != 1) return bad("bad IPv6 address");
    a.length = sizeof(sockaddr_in6);
  } else {
    if (host == "localhost") host = "127.0.0.1";
    auto* in = reinterpret_cast<sockaddr_in*>(&a.storage);
    in->sin_family = AF_INET;
    if (host.empty()) {
      return bad("no host (0.0.0.0 means every address)");
    } else if (inet_pton(AF_INET, host.c_str(), &in->sin_addr) != 1) {
      return bad("the host is not a numeric IPv4 address, [IPv6] or localhost");
    }
    a.length = sizeof(sockaddr_in);
  }
  a.set_port(static_cast<uint16_t>(port));
  return a;
}

absl::StatusOr<SocketAddress> local_address(int fd) {
  SocketAddress a;
  a.length = sizeof(a.storage);
  if (::getsockname(fd, a.mutable_addr(), &a.length) != 0) {
    return io_error(errno, "getsockname", absl::StrCat("fd ", fd));
  }
  return a;
}

}  // namespace sluice
