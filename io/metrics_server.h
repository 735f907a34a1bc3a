// MetricsServer: a minimal HTTP/1.0 endpoint for Prometheus (`GET /metrics`), on its own thread.
//
// It blocks in accept and serves one short request at a time with a body made by the caller's
// function (prometheus_text over the stats file), so scraping reads the same lock-free counters
// `sluice stat` reads and never touches the hot threads. The thread runs at the lowest
// scheduling priority. Anything but GET /metrics (and GET /) gets 404; a client that sends
// nothing within a second, or a request over 8 KiB, is dropped.
//
// Thread safety: start/stop from the owning thread; body() is called on the server's thread.
#ifndef SLUICE_IO_METRICS_SERVER_H_
#define SLUICE_IO_METRICS_SERVER_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <thread>

#include "absl/status/statusor.h"
#include "io/socket_address.h"

namespace sluice {

class MetricsServer {
 public:
  // Binds HOST:PORT (port 0: any free port; see port()). Errors name the address.
  static absl::StatusOr<std::unique_ptr<MetricsServer>> start(
      const std::string& listen, std::function<std::string()> body);
  ~MetricsServer();  // stops
  MetricsServer(const MetricsServer&) = delete;
  MetricsServer& operator=(const MetricsServer&) = delete;

  void stop();
  uint16_t port() const noexcept { return port_; }
  int64_t requests() const noexcept { return requests_.load(std::memory_order_relaxed); }

 private:
  MetricsServer(int fd, uint16_t port, std::function<std::string()> body)
      : fd_(fd), port_(port), body_(std::move(body)) {}
  void run();
  void serve(int client);

  int fd_;
  uint16_t port_;
  std::function<std::string()> body_;
  std::atomic<bool> stopping_{false};
  std::atomic<int64_t> requests_{0};
  std::thread thread_;
};

}  // namespace sluice

#endif  // SLUICE_IO_METRICS_SERVER_H_
