#include "io/metrics_server.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace sluice {
namespace {

// One HTTP exchange over loopback; returns everything the server sent.
std::string http(uint16_t port, const std::string& request) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0) {
    ::close(fd);
    return "connect failed";
  }
  (void)!::send(fd, request.data(), request.size(), MSG_NOSIGNAL);
  std::string out;
  char buf[4096];
  ssize_t n;
  while ((n = ::recv(fd, buf, sizeof(buf), 0)) > 0) out.append(buf, static_cast<size_t>(n));
  ::close(fd);
  return out;
}

TEST(MetricsServer, ServesTheBodyOnGetMetrics) {
  int calls = 0;
  auto server = MetricsServer::start("127.0.0.1:0", [&] {
    ++calls;
    return std::string("sluice_up 1\n");
  });
  ASSERT_TRUE(server.ok()) << server.status();
  ASSERT_NE((*server)->port(), 0);
  const std::string reply = http((*server)->port(), "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
  EXPECT_THAT(reply, ::testing::StartsWith("HTTP/1.0 200 OK\r\n"));
  EXPECT_THAT(reply, ::testing::HasSubstr("Content-Type: text/plain; version=0.0.4"));
  EXPECT_THAT(reply, ::testing::HasSubstr("Content-Length: 12\r\n"));
  EXPECT_THAT(reply, ::testing::EndsWith("\r\n\r\nsluice_up 1\n"));
  EXPECT_EQ(calls, 1);
}

TEST(MetricsServer, OtherPathsAre404AndGarbageIsDropped) {
  auto server = MetricsServer::start("127.0.0.1:0", [] { return std::string("x"); });
  ASSERT_TRUE(server.ok());
  EXPECT_THAT(http((*server)->port(), "GET /secret HTTP/1.0\r\n\r\n"),
              ::testing::StartsWith("HTTP/1.0 404"));
  // A request that never ends its headers and exceeds the bound gets nothing.
  EXPECT_EQ(http((*server)->port(), std::string(9000, 'A')), "");
  // The server is still there afterwards.
  EXPECT_THAT(http((*server)->port(), "GET /metrics HTTP/1.0\r\n\r\n"),
              ::testing::StartsWith("HTTP/1.0 200"));
  EXPECT_EQ((*server)->requests(), 2);
}

TEST(MetricsServer, BadOrTakenAddressIsAnErrorNamingIt) {
  auto bad = MetricsServer::start("127.0.0.1:http", [] { return std::string(); });
  ASSERT_FALSE(bad.ok());
  EXPECT_THAT(std::string(bad.status().message()), ::testing::HasSubstr("127.0.0.1:http"));

  auto first = MetricsServer::start("127.0.0.1:0", [] { return std::string(); });
  ASSERT_TRUE(first.ok());
  const std::string taken = "127.0.0.1:" + std::to_string((*first)->port());
  auto second = MetricsServer::start(taken, [] { return std::string(); });
  ASSERT_FALSE(second.ok());
  EXPECT_THAT(std::string(second.status().message()), ::testing::HasSubstr(taken));
}

TEST(MetricsServer, StopsPromptlyWhileIdle) {
  auto server = MetricsServer::start("127.0.0.1:0", [] { return std::string(); });
  ASSERT_TRUE(server.ok());
  (*server)->stop();
  (*server)->stop();  // idempotent
  SUCCEED();
}

}  // namespace
}  // namespace sluice
