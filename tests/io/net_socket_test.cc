#include "io/net_socket.h"

#include <netinet/in.h>
#include <unistd.h>

#include <string>

#include "gtest/gtest.h"

namespace sluice {
namespace {

TEST(NetSocket, ListenersReportTheirEphemeralPortAndABusyOneIsAnError) {
  absl::StatusOr<SocketAddress> any = parse_socket_address("127.0.0.1:0");
  ASSERT_TRUE(any.ok());
  absl::StatusOr<int> tcp = listen_tcp(*any, 8);
  ASSERT_TRUE(tcp.ok()) << tcp.status();
  absl::StatusOr<SocketAddress> bound = local_address(*tcp);
  ASSERT_TRUE(bound.ok());
  EXPECT_NE(bound->port(), 0);
  // The same port again: in use.
  absl::StatusOr<int> again = listen_tcp(*bound, 8);
  ASSERT_FALSE(again.ok());
  EXPECT_NE(std::string(again.status().message()).find(bound->to_string()), std::string::npos)
      << again.status();
  // UDP may share the number.
  absl::StatusOr<int> udp = bind_udp(*bound, 1 << 20);
  ASSERT_TRUE(udp.ok()) << udp.status();
  ::close(*udp);
  ::close(*tcp);
}

}  // namespace
}  // namespace sluice
