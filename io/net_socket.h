// Socket addresses and listening sockets for the network agent: "host:port" parsing, TCP
// listeners and UDP sockets, each failure an absl::Status that names the address.
//
// Thread safety: pure functions over file descriptors the caller owns.
#ifndef SLUICE_IO_NET_SOCKET_H_
#define SLUICE_IO_NET_SOCKET_H_

#include <sys/socket.h>

#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace sluice {

struct SocketAddress {
  sockaddr_storage storage{};
  socklen_t length = 0;

  int family() const noexcept { return storage.ss_family; }
  uint16_t port() const noexcept;
  void set_port(uint16_t port) noexcept;
  const sockaddr* addr() const noexcept { return reinterpret_cast<const sockaddr*>(&storage); }
  // "127.0.0.1:7700", "[::1]:7700".
  std::string to_string() const;
};

// Parses "host:port" ("[v6]:port" for IPv6); the host may be a name ("localhost"), resolved
// once, preferring IPv4. Port 0 means an ephemeral port.
absl::StatusOr<SocketAddress> parse_socket_address(std::string_view host_port);

// A bound, listening TCP socket (SO_REUSEADDR, close-on-exec).
absl::StatusOr<int> listen_tcp(const SocketAddress& address, int backlog);
// A bound UDP socket (close-on-exec) with a receive buffer of at least rcvbuf bytes when the
// kernel allows it (0: the default).
absl::StatusOr<int> bind_udp(const SocketAddress& address, int rcvbuf);
// The address a socket is bound to (to read back an ephemeral port).
absl::StatusOr<SocketAddress> local_address(int fd);

}  // namespace sluice

#endif  // SLUICE_IO_NET_SOCKET_H_
