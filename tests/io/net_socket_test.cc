#include "io/net_socket.h"

#include <netinet/in.h>
#include <unistd.h>

#include <string>

#include "gtest/gtest.h"

namespace sluice {
namespace {

TEST(SocketAddress, ParsesIpv4Ipv6AndNames) {
  absl::StatusOr<SocketAddress> a = parse_socket_address("127.0.0.1:7700");
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_EQ(a->family(), AF_INET);
  EXPECT_EQ(a->port(), 7700);
  EXPECT_EQ(a->to_string(), "127.0.0.1:7700");
  a = parse_socket_address("[::1]:0");
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_EQ(a->family(), AF_INET6);
  EXPECT_EQ(a->port(), 0);
  EXPECT_EQ(a->to_string(), "[::1]:0");
  a = parse_socket_address("localhost:65535");
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_EQ(a->port(), 65535);
  EXPECT_EQ(a->to_string(), "127.0.0.1:65535");  // IPv4 preferred
}

TEST(SocketAddress, RejectsMalformedAddressesNamingThem) {
  for (const char* bad :
       {"7700", "127.0.0.1", "127.0.0.1:", ":7700", "127.0.0.1:65536", "127.0.0.1:-1",
        "127.0.0.1:77x", "[::1]7700", "[::1:7700", "[]:1"}) {
    absl::StatusOr<SocketAddress> a = parse_socket_address(bad);
    ASSERT_FALSE(a.ok()) << bad;
    EXPECT_NE(std::string(a.status().message()).find(bad), std::string::npos) << a.status();
  }
}

TEST(SocketAddress, ListenersReportTheirEphemeralPortAndABusyOneIsAnError) {
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
