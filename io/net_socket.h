// Listening sockets for the network agent: TCP listeners and UDP sockets, each failure an
// absl::Status that names the address (io/socket_address.h parses them).
//
// Thread safety: pure functions over file descriptors the caller owns.
#ifndef SLUICE_IO_NET_SOCKET_H_
#define SLUICE_IO_NET_SOCKET_H_

#include <sys/socket.h>

#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "io/socket_address.h"

namespace sluice {

// A bound, listening TCP socket (SO_REUSEADDR, close-on-exec).
absl::StatusOr<int> listen_tcp(const SocketAddress& address, int backlog);
// A bound UDP socket (close-on-exec) with a receive buffer of at least rcvbuf bytes when the
// kernel allows it (0: the default).
absl::StatusOr<int> bind_udp(const SocketAddress& address, int rcvbuf);

}  // namespace sluice

#endif  // SLUICE_IO_NET_SOCKET_H_
