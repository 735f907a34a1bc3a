#include "io/socket_address.h"

#include <netinet/in.h>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace sluice {
namespace {

TEST(SocketAddress, ParsesIpv4Ipv6LocalhostAndAny) {
  auto a = parse_socket_address("127.0.0.1:7700");
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(a->family(), AF_INET);
  EXPECT_EQ(a->port(), 7700);
  EXPECT_EQ(a->to_string(), "127.0.0.1:7700");

  auto b = parse_socket_address("[::1]:0");
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(b->family(), AF_INET6);
  EXPECT_EQ(b->to_string(), "[::1]:0");

  auto c = parse_socket_address("localhost:1");
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->to_string(), "127.0.0.1:1");

  auto d = parse_socket_address("0.0.0.0:9");  // every address, said explicitly
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(d->to_string(), "0.0.0.0:9");
  auto e = parse_socket_address("localhost:65535");
  ASSERT_TRUE(e.ok());
  EXPECT_EQ(e->port(), 65535);
}

TEST(SocketAddress, RejectsWhatIsNotHostPortQuotingIt) {
  // An empty host is refused rather than read as "every address": a typo must not expose the
  // daemon beyond loopback.
  for (const char* text : {"7700", "127.0.0.1", "127.0.0.1:", ":7700", "127.0.0.1:65536",
                           "127.0.0.1:-1", "127.0.0.1:77x", "example.com:80", "[::1:80",
                           "[::1]7700", "[]:1", "1.2.3:4"}) {
    auto a = parse_socket_address(text);
    EXPECT_FALSE(a.ok()) << text;
    EXPECT_THAT(std::string(a.status().message()), ::testing::HasSubstr(text)) << text;
  }
}

}  // namespace
}  // namespace sluice
