// fake_sluiced: the tests' fake daemon (tests/tools/fake_sluice_server.h) as a program, so
// `sluice load` can be measured on its own: it answers HELLO and every TRANSACTION / ORDER at
// once, from one thread per connection with blocking sockets. What `sluice load` reports
// against it is the generator's own cost plus the loopback round trip, the baseline to read
// the daemon's figures against (perf/run_load_floor.sh).
//
//   fake_sluiced [--port N]      prints "port N" on stdout, serves until SIGINT or SIGTERM
#include <signal.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "tests/tools/fake_sluice_server.h"

int main(int argc, char** argv) {
  sluice::testing::FakeServerConfig config;
  config.log_events = false;  // millions of events: no per-event log, no lock per event
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--port") == 0 && i + 1 < argc) {
      config.port = static_cast<uint16_t>(std::atoi(argv[++i]));
    } else {
      std::fprintf(stderr, "usage: fake_sluiced [--port N]\n");
      return 2;
    }
  }
  // Block the stop signals before any thread starts, so only sigwait below receives them.
  sigset_t stop;
  sigemptyset(&stop);
  sigaddset(&stop, SIGINT);
  sigaddset(&stop, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop, nullptr);
  sluice::testing::FakeSluiceServer server(config);
  if (!server.ok()) {
    std::fprintf(stderr, "fake_sluiced: cannot listen on 127.0.0.1:%u: %s\n", config.port,
                 std::strerror(errno));
    return 1;
  }
  std::printf("port %u\n", server.port());
  std::fflush(stdout);
  int signal = 0;
  sigwait(&stop, &signal);
  return 0;
}
