#include "pipeline/daemon_config.h"

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace sluice {
namespace {

class DaemonConfigTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/sluice-config-XXXXXX";
    dir_ = ::mkdtemp(tmpl);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::string write(const std::string& text) {
    const std::string path = dir_ + "/sluice.toml";
    std::ofstream(path) << text;
    return path;
  }
  std::string dir_;
};

TEST_F(DaemonConfigTest, DefaultsAreValidAndRunOnTwoCores) {
  DaemonConfig c;
  EXPECT_TRUE(validate(c).ok()) << validate(c);
  EXPECT_EQ(c.listen, "127.0.0.1:7700");
  EXPECT_EQ(c.text_listen, "127.0.0.1:7701");
  EXPECT_EQ(c.data_dir, "./sluice-data");
  EXPECT_EQ(c.shards, 1u);
  EXPECT_EQ(c.idle, IdleKind::kBackoff);
  EXPECT_TRUE(c.processors.fraud);
  EXPECT_TRUE(c.processors.risk);
  EXPECT_TRUE(c.prepare_segments);
}

TEST_F(DaemonConfigTest, FileKeysOverrideTheBase) {
  const std::string path = write(R"(
data_dir = "/srv/sluice"
[network]
listen = "127.0.0.1:9000"
udp = false
[journal]
durability = "sync"
prepare_segments = false
[engine]
shards = 4
cpus = [0, 1]
idle = "busy"
[snapshots]
every_events = 5000
[processors]
velocity_max = 9
risk = false
)");
  auto c = load_config_file(path, DaemonConfig{});
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->data_dir, "/srv/sluice");
  EXPECT_EQ(c->listen, "127.0.0.1:9000");
  EXPECT_FALSE(c->udp);
  EXPECT_EQ(c->durability, journal::Durability::kSync);
  EXPECT_FALSE(c->prepare_segments);
  EXPECT_EQ(c->shards, 4u);
  EXPECT_THAT(c->cpus, ::testing::ElementsAre(0, 1));
  EXPECT_EQ(c->idle, IdleKind::kBusySpin);
  EXPECT_EQ(c->snapshot_every_events, 5000);
  EXPECT_EQ(c->processors.velocity_max, 9);
  EXPECT_FALSE(c->processors.risk);
  EXPECT_EQ(c->text_listen, "127.0.0.1:7701");  // untouched keys keep the base's value
  EXPECT_TRUE(validate(*c).ok());
}

TEST_F(DaemonConfigTest, DefaultsRoundTripThroughTheirOwnToml) {
  auto back = load_config_file(write(to_toml(DaemonConfig{})), DaemonConfig{});
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(to_toml(*back), to_toml(DaemonConfig{}));
  EXPECT_TRUE(back->cpus.empty());
}

TEST_F(DaemonConfigTest, RoundTripsThroughItsOwnToml) {
  DaemonConfig c;
  c.shards = 3;
  c.cpus = {1, 0};
  c.processors.window_ns = 1234;
  c.durability = journal::Durability::kNone;
  c.min_write_bytes = 4096;
  c.max_write_delay_us = 250;
  auto back = load_config_file(write(to_toml(c)), DaemonConfig{});
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(to_toml(*back), to_toml(c));
}

TEST_F(DaemonConfigTest, ErrorsNameTheFileTheKeyAndTheLine) {
  struct Case {
    std::string text;
    std::string expect;
  };
  const Case cases[] = {
      {"[journal]\ndurability = \"fast\"\n", "key journal.durability (line 2)"},
      {"[engine]\nshards = \"four\"\n", "key engine.shards (line 2): expected an integer"},
      {"[network]\nlisten_port = 1\n", "unknown key network.listen_port (line 2"},
      {"[engine]\nshards = -1\n", "key engine.shards (line 2): must be >= 0"},
      {"[engine]\ncpus = \"0-x\"\n", "key engine.cpus"},
      {"[engine\n", "line 1"},
  };
  for (const Case& k : cases) {
    const std::string path = write(k.text);
    auto c = load_config_file(path, DaemonConfig{});
    ASSERT_FALSE(c.ok()) << k.text;
    EXPECT_THAT(std::string(c.status().message()),
                ::testing::AllOf(::testing::HasSubstr(path), ::testing::HasSubstr(k.expect)))
        << k.text;
  }
  auto missing = load_config_file(dir_ + "/none.toml", DaemonConfig{});
  ASSERT_FALSE(missing.ok());
  EXPECT_THAT(std::string(missing.status().message()), ::testing::HasSubstr("none.toml"));
}

TEST_F(DaemonConfigTest, ValidateNamesTheKey) {
  auto expect = [](DaemonConfig c, const char* key) {
    const absl::Status s = validate(c);
    ASSERT_FALSE(s.ok()) << key;
    EXPECT_THAT(std::string(s.message()), ::testing::HasSubstr(key));
  };
  DaemonConfig c;
  c.shards = 0;
  expect(c, "engine.shards");
  c = {};
  c.input_ring_size = 1000;
  expect(c, "engine.input_ring_size");
  c = {};
  c.listen = "nowhere";
  expect(c, "network.listen");
  c = {};
  c.processors.window_ns = 0;
  expect(c, "processors.window_ns");
  c = {};
  c.log_level = "loud";
  expect(c, "log_level");
  c = {};
  c.max_batch_bytes = c.segment_size;
  expect(c, "journal.max_batch_bytes");
  c = {};
  c.min_write_bytes = c.max_batch_bytes + 1;
  expect(c, "journal.min_write_bytes");
  c = {};
  c.max_write_delay_us = -1;
  expect(c, "journal.max_write_delay_us");
}

}  // namespace
}  // namespace sluice
