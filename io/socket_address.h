// "HOST:PORT" text <-> socket addresses, for every listener and client in sluice.
//
// Thread safety: pure functions.
#ifndef SLUICE_IO_SOCKET_ADDRESS_H_
#define SLUICE_IO_SOCKET_ADDRESS_H_

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
  const sockaddr* addr() const noexcept { return reinterpret_cast<const sockaddr*>(&storage); }
  sockaddr* mutable_addr() noexcept { return reinterpret_cast<sockaddr*>(&storage); }
  uint16_t port() const noexcept;
  void set_port(uint16_t port) noexcept;
  std::string to_string() const;  // "127.0.0.1:7700", "[::1]:7700"
};

// Parses "HOST:PORT" with HOST a numeric IPv4 address (0.0.0.0: every address), a bracketed
// IPv6 literal or "localhost", and PORT 0..65535 (0: the kernel picks). No DNS: a daemon's
// listen address must not depend on a resolver. Errors (InvalidArgument) quote the text.
absl::StatusOr<SocketAddress> parse_socket_address(std::string_view host_port);

// The address a bound socket got (its real port when bound to port 0).
absl::StatusOr<SocketAddress> local_address(int fd);

}  // namespace sluice

#endif  // SLUICE_IO_SOCKET_ADDRESS_H_
