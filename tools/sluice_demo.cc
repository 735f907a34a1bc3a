// sluice_demo: runs the in-process pipeline demo and prints what it measured.
#include <cstdio>
#include <iostream>
#include <string>

#include "CLI/CLI.hpp"
#include "core/cpu.h"
#include "pipeline/pipeline_demo.h"

int main(int argc, char** argv) {
  sluice::DemoOptions options;
  std::string topology = "pipeline";
  std::string idle = "backoff";
  std::string cpus;

  CLI::App app{"sluice pipeline demo: a source and three stages on two threads"};
  app.add_option("--topology", topology, "pipeline (A->B->C) or diamond (A,B->C)")
      ->check(CLI::IsMember({"pipeline", "diamond"}));
  app.add_option("--seconds", options.throughput_seconds, "length of the unpaced phase");
  app.add_option("--paced-seconds", options.paced_seconds, "length of the paced phase");
  app.add_option("--rate", options.paced_rate, "events/s in the paced phase")
      ->check(CLI::PositiveNumber);
  app.add_option("--ring-size", options.ring_size, "slots, a power of two")
      ->check([](const std::string& v) {
        const long long n = std::stoll(v);
        return n > 0 && (n & (n - 1)) == 0 ? std::string() : std::string("not a power of two");
      });
  app.add_option("--idle", idle, "busy, yield or backoff")
      ->check(CLI::IsMember({"busy", "yield", "backoff"}));
  app.add_option("--cpus", cpus, "CPUs for the source and the stages thread, e.g. 0,1");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 2;
  }

  options.topology =
      topology == "diamond" ? sluice::DemoTopology::kDiamond : sluice::DemoTopology::kPipeline;
  options.idle.kind = *sluice::parse_idle_kind(idle);  // validated by IsMember above
  if (!cpus.empty()) {
    auto parsed = sluice::parse_cpu_list(cpus);
    if (!parsed.ok()) {
      std::fprintf(stderr, "sluice_demo: --cpus: %s\n", std::string(parsed.status().message()).c_str());
      return 2;
    }
    options.cpus = *parsed;
  }

  auto report = sluice::run_pipeline_demo(options);
  if (!report.ok()) {
    std::fprintf(stderr, "sluice_demo: %s\n", std::string(report.status().message()).c_str());
    return 1;
  }
  sluice::print_demo_report(options, *report, std::cout);
  return 0;
}
