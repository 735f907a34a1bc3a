#include "pipeline/network_stage.h"

#include <memory>
#include <vector>

#include "core/idle_strategy.h"
#include "core/wait_strategy.h"
#include "gtest/gtest.h"
#include "pipeline/agent_runner.h"
#include "pipeline/composite_agent.h"
#include "tests/io/network_test_util.h"
#include "tests/test_util.h"

namespace sluice {
namespace {

using testing::StandInShards;
using testing::TestClient;

class StandInAgent final : public Agent {
 public:
  explicit StandInAgent(StandInShards& shards) : shards_(shards) {}
  std::string_view name() const override { return "stand-in"; }
  int do_work() override { return shards_.poll(); }

 private:
  StandInShards& shards_;
};

struct Rig {
  Rig() {
    NetworkOptions o;
    o.listen = "127.0.0.1:0";
    o.text_listen = "";
    auto s = NetworkServer::create(o, 1, {}, input, {&output}, nullptr);
    EXPECT_TRUE(s.ok()) << s.status();
    server = std::move(*s);
    output.add_gating_sequence(server->output_sequence(0));
    shards = std::make_unique<StandInShards>(input, std::vector{&output}, ProcessorConfig{},
                                             /*record=*/false);
    shards->set_server(server.get());
    input.add_gating_sequence(shards->sequence());
  }

  void round_trips(int n) {
    TestClient c(server->port());
    for (int i = 1; i <= n; ++i) {
      ASSERT_TRUE(c.send(testing::transaction_frame(i, 3)));
      std::optional<testing::Frame> f = c.read_frame();
      ASSERT_TRUE(f && f->is(wire::FrameType::kDecision));
      EXPECT_EQ(f->decision().client_seq, static_cast<uint64_t>(i));
    }
  }

  IdleWaitStrategy wait{IdleConfig{.kind = IdleKind::kYield}};
  NetworkServer::InputRing input{256, wait};
  NetworkServer::OutputRing output{256, wait};
  std::unique_ptr<NetworkServer> server;
  std::unique_ptr<StandInShards> shards;
};

// The parking stage under a yield idle strategy: it parks in the io_uring when idle, and
// network activity or the stand-in's wake() ends the park.
TEST(NetworkStage, ServesOnItsOwnRunnerAndParksWhenIdle) {
  Rig rig;
  ASSERT_NE(rig.server, nullptr);
  NetworkStage stage(*rig.server, NetworkParkOptions{.idle_passes = 50, .park_ns = 50'000'000});
  StandInAgent stand_in(*rig.shards);
  AgentRunner net(stage, RunnerOptions{.idle = IdleConfig{.kind = IdleKind::kYield}});
  AgentRunner shards(stand_in, RunnerOptions{.idle = IdleConfig{.kind = IdleKind::kBackoff}});
  ASSERT_TRUE(net.start().ok());
  ASSERT_TRUE(shards.start().ok());
  ASSERT_TRUE(testing::eventually([&] { return stage.parks() > 0; }));
  rig.round_trips(50);
  net.stop();
  shards.stop();
  EXPECT_TRUE(net.status().ok()) << net.status();
  EXPECT_GT(stage.parks(), 0);
}

// The benchmark topology: server and shards polled in turn on one thread.
TEST(NetworkStage, RunsInACompositeBesideTheShards) {
  Rig rig;
  ASSERT_NE(rig.server, nullptr);
  NetworkStage stage(*rig.server);
  StandInAgent stand_in(*rig.shards);
  CompositeAgent both({&stage, &stand_in});
  AgentRunner runner(both, RunnerOptions{.idle = IdleConfig{.kind = IdleKind::kBackoff}});
  ASSERT_TRUE(runner.start().ok());
  rig.round_trips(50);
  runner.stop();
  EXPECT_TRUE(runner.status().ok()) << runner.status();
  EXPECT_EQ(stage.parks(), 0);
}

}  // namespace
}  // namespace sluice
