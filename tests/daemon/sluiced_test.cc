// sluiced end to end: the real daemon as a child process, real sockets on loopback, real files.
// Live decisions are checked against `sluice replay` of the journal the daemon wrote (replay
// itself is checked against a brute-force model in tests/pipeline/reference_model_test.cc).
#include <netinet/in.h>
#include <sys/resource.h>
#include <sys/socket.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "core/cpu.h"
#include "core/wire_format.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "io/stats_file.h"
#include "tests/daemon/daemon_harness.h"
#include "tests/tools/tool_run.h"

namespace sluice::testing {
namespace {

using ::testing::AnyOf;
using ::testing::HasSubstr;

// Thresholds low enough that a few thousand events fire every rule.
constexpr const char* kConfig = R"(
[processors]
position_limit = 400
max_order_qty = 150
rate_limit = 20
velocity_max = 4
)";

constexpr int64_t kBaseTime = 1'700'000'000'000'000'000;

// A deterministic mix of TRANSACTIONs, ORDERs and WATERMARKs for one connection: a few hot
// accounts (rules fire), some invalid events, some late ones.
struct Workload {
  struct Sent {
    uint64_t client_seq;
    uint64_t account;
    bool invalid;
  };
  explicit Workload(uint32_t seed, uint64_t first_client_seq = 1)
      : rng(seed), next_seq(first_client_seq) {}

  // Encodes the next event into out; returns its length; records it in `sent` if answerable.
  size_t next(std::byte* out, int64_t* clock_ns) {
    *clock_ns += 1'000'000 + static_cast<int64_t>(rng() % 1000);  // 1 ms apart
    const uint32_t kind = rng() % 100;
    if (kind < 3) return wire::encode(wire::Watermark{*clock_ns}, std::span<std::byte>(out, 64));
    const uint64_t account = 1 + rng() % 12;
    const bool invalid = rng() % 50 == 0;
    const bool late = rng() % 60 == 0;
    const int64_t t = late ? *clock_ns - 20'000'000'000 : *clock_ns;
    const uint64_t cs = next_seq++;
    sent.push_back({cs, invalid ? 0 : account, invalid});
    if (kind < 55) {
      wire::Transaction tx{.client_seq = cs,
                           .event_time_ns = t,
                           .account_id = invalid ? 0 : account,
                           .amount_minor = rng() % 20 == 0 ? 50'000 : 100 + static_cast<int64_t>(rng() % 100),
                           .merchant_id = 7,
                           .currency = 978,
                           .channel = 1};
      return wire::encode(tx, std::span<std::byte>(out, 64));
    }
    wire::Order o{.client_seq = cs,
                  .event_time_ns = t,
                  .account_id = invalid ? 0 : account,
                  .order_id = cs,
                  .instrument_id = static_cast<uint32_t>(1 + rng() % 3),
                  .side = static_cast<uint8_t>(1 + rng() % 2),
                  .quantity = 1 + static_cast<int64_t>(rng() % 180),
                  .price = 100};
    return wire::encode(o, std::span<std::byte>(out, 64));
  }

  std::mt19937 rng;
  uint64_t next_seq;
  std::vector<Sent> sent;
};

struct ReplayRow {
  int64_t seq;
  char type;
  uint64_t account, client_id, client_seq;
  std::string verdict;
  int reason;
  uint32_t flags;
};

std::vector<ReplayRow> read_decisions_csv(const std::string& path) {
  std::vector<ReplayRow> rows;
  bool header = true;
  for (absl::string_view line : absl::StrSplit(read_file(path), '\n', absl::SkipEmpty())) {
    if (header) {
      header = false;
      continue;
    }
    std::vector<std::string> f = absl::StrSplit(line, ',');
    if (f.size() != 8) continue;
    ReplayRow r{};
    (void)absl::SimpleAtoi(f[0], &r.seq);
    r.type = f[1][0];
    (void)absl::SimpleAtoi(f[2], &r.account);
    (void)absl::SimpleAtoi(f[3], &r.client_id);
    (void)absl::SimpleAtoi(f[4], &r.client_seq);
    r.verdict = f[5];
    (void)absl::SimpleAtoi(f[6], &r.reason);
    (void)absl::SimpleAtoi(f[7], &r.flags);
    rows.push_back(r);
  }
  return rows;
}

class SluicedTest : public ::testing::Test {
 protected:
  void SetUp() override {
    scratch_ = make_scratch_dir("sluiced");
    config_ = scratch_ + "/sluice.toml";
    std::ofstream(config_) << kConfig;
    daemon_ = std::make_unique<Daemon>(scratch_);
  }
  void TearDown() override {
    if (HasFailure()) std::fprintf(stderr, "sluiced log:\n%s\n", d().log().c_str());
    d().kill();
    std::filesystem::remove_all(scratch_);
  }
  ToolRun sluice(const std::vector<std::string>& args) {
    return run_tool(SLUICE_TOOL_PATH, args, scratch_);
  }
  // Replays the daemon's journal; rows by journal sequence.
  std::map<int64_t, ReplayRow> replay() {
    const std::string csv = scratch_ + "/decisions.csv";
    const ToolRun r = sluice({"replay", d().data_dir(), "--decisions-out", csv, "--no-snapshots"});
    EXPECT_EQ(r.exit_code, 0) << r.err;
    std::map<int64_t, ReplayRow> by_seq;
    for (const ReplayRow& row : read_decisions_csv(csv)) by_seq[row.seq] = row;
    return by_seq;
  }

  // True once the running daemon's journal holds `n` events (read from its stats file).
  bool eventually_journal_holds(int64_t n) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
    while (std::chrono::steady_clock::now() < deadline) {
      auto view = StatsView::open(d().data_dir() + "/stats");
      if (view.ok() && (*view)->value("journal", "written_sequence") >= n) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return false;
  }

  Daemon& d() { return *daemon_; }
  void check_decisions_against_replay(const std::vector<std::string>& args);

  std::string scratch_;
  std::string config_;
  std::unique_ptr<Daemon> daemon_;
};

// Sends every connection's events pipelined, reads every decision, and checks them against the
// replay of the journal.
TEST_F(SluicedTest, BinaryDecisionsMatchAReplayOfTheJournal) {
  check_decisions_against_replay({"--config", config_, "--shards", "3"});
}

// The same with everything on one thread (engine.shard_threads = 0). The thread's pass differs
// by durability: with none the shards decide (and the answers go out) before the journal
// writes; with batch (the default) and sync after the journal.
TEST_F(SluicedTest, OneThreadDeploymentDecidesTheSame) {
  check_decisions_against_replay({"--config", config_, "--shards", "2", "--shard-threads", "0"});
}
TEST_F(SluicedTest, OneThreadDeploymentWithDurabilityNoneDecidesTheSame) {
  check_decisions_against_replay(
      {"--config", config_, "--shards", "2", "--shard-threads", "0", "--durability", "none"});
}
TEST_F(SluicedTest, OneThreadDeploymentWithDurabilitySyncDecidesTheSame) {
  check_decisions_against_replay(
      {"--config", config_, "--shards", "2", "--shard-threads", "0", "--durability", "sync"});
}

void SluicedTest::check_decisions_against_replay(const std::vector<std::string>& args) {
  ASSERT_TRUE(d().start(args)) << d().log();
  constexpr int kClients = 3;
  constexpr int kEvents = 1500;
  std::vector<std::unique_ptr<Client>> clients;
  std::vector<Workload> work;
  for (int c = 0; c < kClients; ++c) {
    clients.push_back(std::make_unique<Client>(d().port("binary")));
    ASSERT_TRUE(clients.back()->connected());
    ASSERT_EQ(clients.back()->hello(100 + c), 0u);
    work.emplace_back(1234 + c);
  }
  // Interleave the connections in bursts of 50 so the shards see them mixed.
  int64_t clock = kBaseTime;
  for (int burst = 0; burst < kEvents / 50; ++burst) {
    for (int c = 0; c < kClients; ++c) {
      std::string bytes;
      for (int i = 0; i < 50; ++i) {
        std::byte buf[64];
        const size_t n = work[c].next(buf, &clock);
        bytes.append(reinterpret_cast<const char*>(buf), n);
      }
      ASSERT_TRUE(clients[c]->send_text(bytes));
    }
  }
  struct Live {
    int client;
    wire::Decision d;
    uint64_t account;
  };
  std::vector<Live> live;
  for (int c = 0; c < kClients; ++c) {
    std::map<uint64_t, uint64_t> last_by_account;  // per-account order on the connection
    std::map<uint64_t, const Workload::Sent*> by_cs;
    for (const auto& s : work[c].sent) by_cs[s.client_seq] = &s;
    for (size_t k = 0; k < work[c].sent.size(); ++k) {
      auto f = clients[c]->read_frame();
      ASSERT_TRUE(f.has_value()) << "client " << c << " got " << k << " of "
                                 << work[c].sent.size() << " decisions";
      ASSERT_EQ(frame_type(*f), static_cast<uint8_t>(wire::FrameType::kDecision));
      const wire::Decision d = wire::decode_decision(*f);
      auto it = by_cs.find(d.client_seq);
      ASSERT_NE(it, by_cs.end()) << "unknown client_seq " << d.client_seq;
      const Workload::Sent& s = *it->second;
      by_cs.erase(it);  // exactly one decision each
      if (s.invalid) {
        EXPECT_EQ(d.verdict, wire::Verdict::kInvalid);
        EXPECT_EQ(d.seq, 0u);
        continue;
      }
      EXPECT_GT(d.seq, 0u);
      EXPECT_GT(d.client_seq, last_by_account[s.account]) << "account " << s.account;
      last_by_account[s.account] = d.client_seq;
      live.push_back({c, d, s.account});
    }
    EXPECT_TRUE(by_cs.empty());
  }
  ASSERT_EQ(d().stop(), 0);

  const std::map<int64_t, ReplayRow> replayed = replay();
  EXPECT_EQ(replayed.size(), live.size());
  std::set<std::string> verdicts;
  for (const Live& l : live) {
    auto it = replayed.find(static_cast<int64_t>(l.d.seq));
    ASSERT_NE(it, replayed.end()) << "seq " << l.d.seq;
    const ReplayRow& r = it->second;
    EXPECT_EQ(r.client_id, static_cast<uint64_t>(100 + l.client));
    EXPECT_EQ(r.client_seq, l.d.client_seq);
    EXPECT_EQ(r.account, l.account);
    EXPECT_EQ(r.verdict, wire::verdict_name(l.d.verdict));
    EXPECT_EQ(r.reason, l.d.reason);
    EXPECT_EQ(r.flags, l.d.flags);
    verdicts.insert(r.verdict);
  }
  // The workload is meant to exercise every verdict the shards give.
  EXPECT_THAT(verdicts, ::testing::IsSupersetOf({"ACCEPT", "FLAG", "REJECT", "LATE"}));
}

TEST_F(SluicedTest, TextProtocolAnswersLinesAndUdpIsJournaledWithoutDecisions) {
  ASSERT_TRUE(d().start({"--config", config_})) << d().log();
  Client text(d().port("text"));
  ASSERT_TRUE(text.connected());
  ASSERT_TRUE(text.send_text("HELLO,77\n"));
  EXPECT_EQ(text.read_line(), "HELLO_ACK,77,0");
  ASSERT_TRUE(text.send_text(absl::StrCat("T,1,", kBaseTime, ",5,250,9,978,1\n")));
  auto line = text.read_line();
  ASSERT_TRUE(line.has_value());
  EXPECT_EQ(*line, "D,1,1,ACCEPT,0,0");
  ASSERT_TRUE(text.send_text("T,2,oops\n"));  // malformed: an E line, the connection stays
  auto e = text.read_line();
  ASSERT_TRUE(e.has_value());
  EXPECT_THAT(*e, ::testing::StartsWith("E,"));
  ASSERT_TRUE(text.send_text(absl::StrCat("O,3,", kBaseTime + 1, ",5,1,2,B,10,100\n")));
  EXPECT_EQ(text.read_line(), "D,3,2,ACCEPT,0,0");

  // UDP: one datagram of three transactions, journaled, no decisions.
  const int udp = ::socket(AF_INET, SOCK_DGRAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(d().port("udp") != 0 ? d().port("udp") : d().port("binary"));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  std::vector<std::byte> dgram(8);
  wire::store<uint64_t>(dgram.data(), 1);
  for (int i = 0; i < 3; ++i) {
    std::byte buf[64];
    const size_t n = wire::encode(wire::Transaction{.client_seq = 10u + i, .event_time_ns = kBaseTime + 2 + i,
                                                    .account_id = 9, .amount_minor = 5},
                                  buf);
    dgram.insert(dgram.end(), buf, buf + n);
  }
  ASSERT_EQ(::sendto(udp, dgram.data(), dgram.size(), 0, reinterpret_cast<sockaddr*>(&a), sizeof(a)),
            static_cast<ssize_t>(dgram.size()));
  ::close(udp);
  // The UDP events land behind the text ones: wait for the journal to hold all five.
  ASSERT_TRUE(eventually_journal_holds(5)) << d().log();
  ASSERT_EQ(d().stop(), 0);
  const auto replayed = replay();
  EXPECT_EQ(replayed.size(), 5u);
  EXPECT_EQ(replayed.at(3).client_id, 0u);  // UDP has no HELLO
}

TEST_F(SluicedTest, AlertsReachSubscribersAndTheAlertsLog) {
  ASSERT_TRUE(d().start({"--config", config_})) << d().log();
  Client subscriber(d().port("binary"));
  ASSERT_TRUE(subscriber.send(wire::Subscribe{1}));
  Client sender(d().port("binary"));
  // velocity_max = 4: the 5th and 6th transaction of one account inside the window fire.
  for (uint64_t i = 1; i <= 6; ++i) {
    ASSERT_TRUE(sender.send(wire::Transaction{.client_seq = i, .event_time_ns = kBaseTime + static_cast<int64_t>(i),
                                              .account_id = 42, .amount_minor = 100}));
  }
  for (int i = 0; i < 6; ++i) ASSERT_TRUE(sender.read_frame().has_value());
  std::vector<wire::Alert> alerts;
  for (int i = 0; i < 2; ++i) {
    auto f = subscriber.read_frame();
    ASSERT_TRUE(f.has_value());
    ASSERT_EQ(frame_type(*f), static_cast<uint8_t>(wire::FrameType::kAlert));
    alerts.push_back(wire::decode_alert(*f));
  }
  EXPECT_EQ(alerts[0].rule, wire::Rule::kVelocityExceeded);
  EXPECT_EQ(alerts[0].value, 5);
  EXPECT_EQ(alerts[0].threshold, 4);
  EXPECT_EQ(alerts[1].value, 6);
  // The sender did not subscribe: it gets its decisions and nothing else.
  EXPECT_FALSE(sender.read_frame(200).has_value());
  ASSERT_EQ(d().stop(), 0);
  EXPECT_EQ(read_file(d().data_dir() + "/alerts.log"),
            absl::StrCat("5,", kBaseTime + 5, ",42,VELOCITY_EXCEEDED,5,4\n6,", kBaseTime + 6,
                         ",42,VELOCITY_EXCEEDED,6,4\n"));
}

TEST_F(SluicedTest, RestartContinuesStateDedupeAndSequenceNumbers) {
  ASSERT_TRUE(d().start({"--config", config_})) << d().log();
  {
    Client c(d().port("binary"));
    ASSERT_EQ(c.hello(5), 0u);
    for (uint64_t i = 1; i <= 3; ++i) {
      ASSERT_TRUE(c.send(wire::Transaction{.client_seq = i, .event_time_ns = kBaseTime + static_cast<int64_t>(i),
                                           .account_id = 8, .amount_minor = 100}));
      auto f = c.read_frame();
      ASSERT_TRUE(f.has_value());
      EXPECT_EQ(wire::decode_decision(*f).verdict, wire::Verdict::kAccept);
    }
  }
  ASSERT_EQ(d().stop(), 0);
  ASSERT_TRUE(d().start({"--config", config_})) << d().log();
  Client c(d().port("binary"));
  ASSERT_EQ(c.hello(5), 3u);  // resumes after the last journaled client_seq
  // A resend of client_seq 3 is a duplicate; 4 and 5 continue the account's history, so the
  // 5th transaction in the window fires VELOCITY_EXCEEDED (velocity_max 4).
  ASSERT_TRUE(c.send(wire::Transaction{.client_seq = 3, .event_time_ns = kBaseTime + 3, .account_id = 8, .amount_minor = 100}));
  auto dup = c.read_frame();
  ASSERT_TRUE(dup.has_value());
  EXPECT_EQ(wire::decode_decision(*dup).verdict, wire::Verdict::kDuplicate);
  EXPECT_EQ(wire::decode_decision(*dup).seq, 0u);
  for (uint64_t i = 4; i <= 5; ++i) {
    ASSERT_TRUE(c.send(wire::Transaction{.client_seq = i, .event_time_ns = kBaseTime + static_cast<int64_t>(i),
                                         .account_id = 8, .amount_minor = 100}));
  }
  auto d4 = c.read_frame();
  auto d5 = c.read_frame();
  ASSERT_TRUE(d4 && d5);
  EXPECT_EQ(wire::decode_decision(*d4).seq, 4u);  // journal sequence numbering continues
  EXPECT_EQ(wire::decode_decision(*d4).verdict, wire::Verdict::kAccept);
  EXPECT_EQ(wire::decode_decision(*d5).seq, 5u);
  EXPECT_EQ(wire::decode_decision(*d5).verdict, wire::Verdict::kFlag);
  EXPECT_EQ(wire::decode_decision(*d5).flags, 1u);
  ASSERT_EQ(d().stop(), 0);
}

// With durability sync, SIGKILL under load, many rounds: every event that got a DECISION is in
// the journal after the restart, and a replay gives the same decisions.
TEST_F(SluicedTest, CrashUnderLoadLosesNoAnsweredEventWithSyncDurability) {
  std::mt19937 rng(99);
  std::map<int64_t, std::pair<uint64_t, wire::Decision>> answered;  // seq -> (client, decision)
  uint64_t next_client_seq = 1;
  for (int round = 0; round < 4; ++round) {
    ASSERT_TRUE(d().start({"--config", config_, "--durability", "sync", "--shards", "2"}))
        << d().log();
    Client c(d().port("binary"));
    auto last = c.hello(9);
    ASSERT_TRUE(last.has_value());
    // Everything answered before is journaled, so the daemon knows at least that much.
    ASSERT_GE(*last + 1, next_client_seq);
    next_client_seq = *last + 1;
    Workload w(static_cast<uint32_t>(round), next_client_seq);
    int64_t clock = kBaseTime + round * 1'000'000'000'000;
    std::atomic<bool> stop{false};
    std::thread killer([&] {
      std::this_thread::sleep_for(std::chrono::milliseconds(100 + rng() % 300));
      d().kill();
      stop = true;
    });
    // Send and read concurrently until the daemon dies.
    std::thread sender([&] {
      while (!stop) {
        std::string bytes;
        for (int i = 0; i < 20; ++i) {
          std::byte buf[64];
          const size_t n = w.next(buf, &clock);
          bytes.append(reinterpret_cast<const char*>(buf), n);
        }
        if (!c.send_text(bytes)) break;
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
      }
    });
    while (true) {
      auto f = c.read_frame(2000);
      if (!f) break;
      if (frame_type(*f) != static_cast<uint8_t>(wire::FrameType::kDecision)) continue;
      const wire::Decision d = wire::decode_decision(*f);
      if (d.seq != 0) answered[static_cast<int64_t>(d.seq)] = {9, d};
    }
    sender.join();
    killer.join();
    c.close();
  }
  ASSERT_FALSE(answered.empty());
  ASSERT_TRUE(d().start({"--config", config_, "--durability", "sync", "--shards", "2"})) << d().log();
  ASSERT_EQ(d().stop(), 0);
  const auto replayed = replay();
  for (const auto& [seq, cd] : answered) {
    auto it = replayed.find(seq);
    ASSERT_NE(it, replayed.end()) << "answered seq " << seq << " is not in the journal";
    EXPECT_EQ(it->second.client_seq, cd.second.client_seq);
    EXPECT_EQ(it->second.verdict, wire::verdict_name(cd.second.verdict)) << "seq " << seq;
    EXPECT_EQ(it->second.flags, cd.second.flags) << "seq " << seq;
  }
}

// Kills under load with durability batch, several rounds, then a clean restart and stop: the
// alerts log holds exactly the alerts a replay of the journal produces, each once, in order
// (none lost in egress when the process died, none duplicated by recovery, none left from
// events the journal never got).
TEST_F(SluicedTest, AfterCrashesTheAlertsLogHoldsExactlyTheJournalsAlerts) {
  std::mt19937 rng(4242);
  for (int round = 0; round < 3; ++round) {
    ASSERT_TRUE(d().start({"--config", config_, "--shards", "2"})) << d().log();
    Client c(d().port("binary"));
    Workload w(100 + round);
    int64_t clock = kBaseTime + round * 1'000'000'000'000;
    std::atomic<bool> stop{false};
    std::thread killer([&] {
      std::this_thread::sleep_for(std::chrono::milliseconds(150 + rng() % 250));
      d().kill();
      stop = true;
    });
    std::thread reader([&] {
      while (c.read_frame(2000)) {
      }
    });
    while (!stop) {
      std::string bytes;
      // As fast as it goes: at the kill the journal is ahead of the shards and of egress, so
      // journaled events' alerts are missing from the log and recovery must add them.
      for (int i = 0; i < 200; ++i) {
        std::byte buf[64];
        bytes.append(reinterpret_cast<const char*>(buf), w.next(buf, &clock));
      }
      if (!c.send_text(bytes)) break;
    }
    killer.join();
    reader.join();
  }
  ASSERT_TRUE(d().start({"--config", config_, "--shards", "2"})) << d().log();
  ASSERT_EQ(d().stop(), 0);

  // The restarted run's digest covers what its recovery replayed: a replay of the same range
  // reproduces it.
  {
    std::vector<std::string> f =
        absl::StrSplit(read_file(d().data_dir() + "/decisions.digest"), absl::ByAnyChar(" .\n"), absl::SkipEmpty());
    ASSERT_EQ(f.size(), 7u);  // sequences A B decisions N digest HEX
    const ToolRun again = sluice({"replay", d().data_dir(), "--from", f[1], "--to", f[2], "--no-snapshots"});
    ASSERT_EQ(again.exit_code, 0) << again.err;
    EXPECT_THAT(again.out, HasSubstr("digest " + f[6]));
    EXPECT_THAT(again.out, HasSubstr(absl::StrCat("decisions ", f[4], " ")));
  }

  const ToolRun r = sluice({"replay", d().data_dir(), "--no-snapshots"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  // "alerts N (VELOCITY_EXCEEDED=a AMOUNT_ANOMALY=b ...)"
  std::map<std::string, int64_t> replayed;
  const size_t at = r.out.find("; alerts ");
  ASSERT_NE(at, std::string::npos) << r.out;
  const size_t open = r.out.find('(', at);
  const size_t close = r.out.find(')', open);
  for (absl::string_view kv : absl::StrSplit(r.out.substr(open + 1, close - open - 1), ' ', absl::SkipEmpty())) {
    std::vector<std::string> p = absl::StrSplit(kv, '=');
    if (p.size() == 2) (void)absl::SimpleAtoi(p[1], &replayed[p[0]]);
  }
  ASSERT_FALSE(replayed.empty()) << "the workload fired no rule: " << r.out;
  std::map<std::string, int64_t> logged;
  std::set<std::pair<int64_t, std::string>> seen;
  int64_t last_seq = 0;
  for (absl::string_view line : absl::StrSplit(read_file(d().data_dir() + "/alerts.log"), '\n', absl::SkipEmpty())) {
    std::vector<std::string> f = absl::StrSplit(line, ',');
    ASSERT_EQ(f.size(), 6u) << line;
    int64_t seq = 0;
    ASSERT_TRUE(absl::SimpleAtoi(f[0], &seq)) << line;
    EXPECT_GE(seq, last_seq) << "out of order: " << line;
    last_seq = seq;
    EXPECT_TRUE(seen.insert({seq, f[3]}).second) << "twice: " << line;
    ++logged[f[3]];
  }
  EXPECT_EQ(logged, replayed);
}

TEST_F(SluicedTest, HostileClientsAreClosedWhileOthersAreServed) {
  ASSERT_TRUE(d().start({"--config", config_})) << d().log();
  Client good(d().port("binary"));
  uint64_t cs = 1;
  auto good_round_trip = [&] {
    if (!good.send(wire::Transaction{.client_seq = cs++, .event_time_ns = kBaseTime, .account_id = 3, .amount_minor = 10})) {
      return false;
    }
    auto f = good.read_frame();
    return f.has_value() && frame_type(*f) == static_cast<uint8_t>(wire::FrameType::kDecision);
  };
  ASSERT_TRUE(good_round_trip());

  // Each of SPEC 1.5's fatal cases: an ERROR frame, then the server closes the connection.
  const std::vector<std::vector<uint8_t>> fatal = {
      {3, 0, 0x02, 1},                     // length < 4
      {0x01, 0x08, 0x02, 1},               // length 2049 > 1024
      {8, 0, 0x04, 0, 0, 0, 0, 0},         // version 0
      {8, 0, 0x02, 1, 0, 0, 0, 0},         // TRANSACTION shorter than its payload
  };
  for (const auto& bytes : fatal) {
    Client bad(d().port("binary"));
    ASSERT_TRUE(bad.send_bytes(bytes.data(), bytes.size()));
    auto f = bad.read_frame();
    ASSERT_TRUE(f.has_value()) << "no ERROR for case starting " << int(bytes[0]);
    EXPECT_EQ(frame_type(*f), static_cast<uint8_t>(wire::FrameType::kError));
    EXPECT_TRUE(bad.closed_by_server());
    ASSERT_TRUE(good_round_trip());
  }
  // Unknown type: skipped, no reply, the connection stays usable.
  {
    Client odd(d().port("binary"));
    const uint8_t unknown[] = {8, 0, 0x7E, 1, 1, 2, 3, 4};
    ASSERT_TRUE(odd.send_bytes(unknown, sizeof(unknown)));
    ASSERT_TRUE(odd.send(wire::Transaction{.client_seq = 1, .event_time_ns = kBaseTime, .account_id = 4, .amount_minor = 10}));
    auto f = odd.read_frame();
    ASSERT_TRUE(f.has_value());
    EXPECT_EQ(frame_type(*f), static_cast<uint8_t>(wire::FrameType::kDecision));
  }
  // Random garbage from many connections at once never takes the daemon down.
  std::mt19937 rng(5);
  for (int i = 0; i < 20; ++i) {
    Client junk(d().port("binary"));
    std::vector<uint8_t> bytes(1 + rng() % 3000);
    for (auto& b : bytes) b = static_cast<uint8_t>(rng());
    junk.send_bytes(bytes.data(), bytes.size());
  }
  ASSERT_TRUE(good_round_trip());
  EXPECT_TRUE(d().running());
  ASSERT_EQ(d().stop(), 0);
}

TEST_F(SluicedTest, AClientThatStopsReadingIsDroppedWhileOthersAreServed) {
  std::ofstream(config_, std::ios::app) << "[network]\nmax_output_bytes = 65536\n";
  ASSERT_TRUE(d().start({"--config", config_})) << d().log();
  Client stuck(d().port("binary"));
  const int small = 4096;
  ::setsockopt(stuck.fd(), SOL_SOCKET, SO_RCVBUF, &small, sizeof(small));
  // Sends many events and never reads a decision.
  std::string bytes;
  int64_t clock = kBaseTime;
  Workload w(1);
  // ~10 MB of decisions: more than the kernel's socket buffers can hide (send buffers
  // autotune to a few MB), so the server's own bound is what must give.
  for (int i = 0; i < 400'000; ++i) {
    std::byte buf[64];
    bytes.append(reinterpret_cast<const char*>(buf), w.next(buf, &clock));
  }
  std::thread flood([&] { stuck.send_text(bytes); });
  Client good(d().port("binary"));
  for (uint64_t i = 1; i <= 20; ++i) {
    ASSERT_TRUE(good.send(wire::Transaction{.client_seq = i, .event_time_ns = clock, .account_id = 77, .amount_minor = 10}));
    ASSERT_TRUE(good.read_frame().has_value()) << "a good client starved at event " << i;
  }
  // The stuck one is eventually cut off (its send fails or the socket closes).
  EXPECT_TRUE(stuck.closed_by_server());
  flood.join();
  ASSERT_EQ(d().stop(), 0);
}

TEST_F(SluicedTest, StartupErrorsAreOneClearLine) {
  const std::string bad = scratch_ + "/bad.toml";
  std::ofstream(bad) << "[journal]\ndurabilty = \"sync\"\n";
  EXPECT_EQ(d().run_to_exit({"--config", bad, "--data-dir", scratch_ + "/d1"}), 2);
  EXPECT_THAT(d().log(), HasSubstr("unknown key journal.durabilty"));

  EXPECT_EQ(d().run_to_exit({"--data-dir", scratch_ + "/d1", "--shards", "0"}), 2);
  EXPECT_THAT(d().log(), HasSubstr("shards"));

  // A second daemon on the same data directory is refused.
  ASSERT_TRUE(d().start({"--config", config_})) << d().log();
  Daemon second(scratch_);
  EXPECT_EQ(second.run_to_exit({"--data-dir", d().data_dir(), "--listen", "127.0.0.1:0",
                                "--text-listen", "127.0.0.1:0"}),
            1);
  EXPECT_THAT(second.log(), HasSubstr("is in use by another sluiced"));
  EXPECT_TRUE(d().running());
  ASSERT_EQ(d().stop(), 0);
}

// A journal that cannot be written (here EFBIG: the daemon runs under an RLIMIT_FSIZE below its
// segment's size, the way a full disk fails a write): ingest refuses input with ERROR
// INPUT_REFUSED, the daemon exits 1 naming the file, and with sync durability the journal holds
// exactly the events that got a DECISION: none lost, and none of the failed batch (the kernel
// wrote part of it before the limit), which would come back deduplicated though never answered.
// After the restart, HELLO_ACK is the last answered client_seq, so the client resends the rest.
TEST_F(SluicedTest, AJournalWriteFailureRefusesInputAndLosesNothingAnswered) {
  std::ofstream(config_, std::ios::app) << "[journal]\nsegment_size = 2097152\nmax_batch_bytes = 65536\n";
  const std::vector<std::string> args = {"--config", config_, "--durability", "sync"};
  // A first run creates the 2 MiB segment (preallocated) with no limit.
  ASSERT_TRUE(d().start(args)) << d().log();
  {
    Client c(d().port("binary"));
    ASSERT_TRUE(c.send(wire::Transaction{.client_seq = 1, .event_time_ns = kBaseTime, .account_id = 1, .amount_minor = 5}));
    ASSERT_TRUE(c.read_frame().has_value());
  }
  ASSERT_EQ(d().stop(), 0);
  // Now writes past ~1.5 MB of the 2 MiB segment fail with EFBIG (the stats file, ~0.8 MB, fits).
  // The limit falls inside a record (this workload's record 17445 ends at exactly 1,500,000), so
  // the failing batch always straddles it and part of it reaches the file, to be erased.
  ASSERT_TRUE(d().start(args, {"/usr/bin/prlimit", "--fsize=1500040", "--"})) << d().log();
  Client c(d().port("binary"));
  ASSERT_EQ(c.hello(31), 0u);
  std::map<int64_t, uint64_t> answered;  // journal seq -> client_seq
  bool refused = false;
  Workload w(7);
  int64_t clock = kBaseTime + 1'000'000'000;
  std::thread sender([&] {
    for (int i = 0; i < 20'000; ++i) {  // ~1.3 MB of records: more than the limit allows
      std::string bytes;
      for (int k = 0; k < 20; ++k) {
        std::byte buf[64];
        bytes.append(reinterpret_cast<const char*>(buf), w.next(buf, &clock));
      }
      if (!c.send_text(bytes)) return;
    }
  });
  while (auto f = c.read_frame(10'000)) {
    if (frame_type(*f) == static_cast<uint8_t>(wire::FrameType::kError)) {
      refused = true;
      continue;
    }
    if (frame_type(*f) != static_cast<uint8_t>(wire::FrameType::kDecision)) continue;
    const wire::Decision dec = wire::decode_decision(*f);
    if (dec.seq != 0) answered[static_cast<int64_t>(dec.seq)] = dec.client_seq;
  }
  ::shutdown(c.fd(), SHUT_RDWR);  // a sender still blocked in send() returns
  sender.join();
  c.close();
  EXPECT_TRUE(refused) << "no ERROR INPUT_REFUSED reached the client";
  EXPECT_EQ(d().wait_exit(std::chrono::seconds(60)), 1);
  EXPECT_THAT(d().log(), HasSubstr("File too large"));
  EXPECT_THAT(d().log(), HasSubstr("00000000000000000001.seg"));
  ASSERT_FALSE(answered.empty());
  // The failed batch is erased (or, were a batch to begin exactly at the limit, none of it was
  // written: the writer's own tests cover that).
  EXPECT_THAT(d().log(), AnyOf(HasSubstr("was erased"), HasSubstr("had reached the file")));
  // A run without the limit recovers; the client's events in the journal are the answered ones.
  ASSERT_TRUE(d().start(args)) << d().log();
  {
    Client again(d().port("binary"));
    EXPECT_EQ(again.hello(31), std::prev(answered.end())->second);
  }
  ASSERT_EQ(d().stop(), 0);
  const auto replayed = replay();
  std::map<int64_t, uint64_t> journaled;  // journal seq -> client_seq, of client 31
  for (const auto& [seq, row] : replayed) {
    if (row.client_id == 31) journaled[seq] = row.client_seq;
  }
  EXPECT_EQ(journaled, answered);
}

// Threads of a running process by name (io_uring workers as "iou-wrk"), each with the
// Cpus_allowed_list the kernel prints for it ("0", "0-2", "0,2").
std::map<std::string, std::set<std::string>> cpus_by_thread(pid_t pid) {
  std::map<std::string, std::set<std::string>> cpus_of;
  for (const auto& task : std::filesystem::directory_iterator(absl::StrCat("/proc/", pid, "/task"))) {
    std::string name = read_file(task.path().string() + "/comm");
    while (!name.empty() && name.back() == '\n') name.pop_back();
    if (absl::StartsWith(name, "iou-wrk-")) name = "iou-wrk";
    for (absl::string_view line : absl::StrSplit(read_file(task.path().string() + "/status"), '\n')) {
      if (absl::ConsumePrefix(&line, "Cpus_allowed_list:")) {
        cpus_of[name].insert(std::string(absl::StripAsciiWhitespace(line)));
      }
    }
  }
  return cpus_of;
}

// The kernel's Cpus_allowed_list form of a set of CPUs.
std::string cpu_list_text(const std::vector<int>& cpus) {
  if (cpus.size() > 1 && cpus.back() - cpus.front() + 1 == static_cast<int>(cpus.size())) {
    return absl::StrCat(cpus.front(), "-", cpus.back());
  }
  return absl::StrJoin(cpus, ",");
}

// With --cpus, the agents run on their CPUs and every helper thread, including the io_uring
// workers that run the journal's writes and fdatasyncs, on the other allowed CPUs: a helper
// started from the pinned io thread would otherwise inherit its CPU. With sync, where every
// decision waits for the workers' fdatasync, they stay with the io thread.
TEST_F(SluicedTest, PinnedAgentsKeepTheirCpuAndHelperThreadsRunOnTheOthers) {
  const absl::StatusOr<std::vector<int>> allowed = allowed_cpus();
  ASSERT_TRUE(allowed.ok()) << allowed.status();
  if (allowed->size() < 2) GTEST_SKIP() << "needs two allowed CPUs";
  const std::string agent = std::to_string(allowed->back());
  const std::string helpers = cpu_list_text(std::vector<int>(allowed->begin(), allowed->end() - 1));
  for (const std::string durability : {"batch", "sync"}) {
    SCOPED_TRACE(durability);
    ASSERT_TRUE(d().start({"--config", config_, "--shard-threads", "0", "--cpus", agent,
                           "--durability", durability}))
        << d().log();
    EXPECT_THAT(d().log(), HasSubstr(absl::StrCat("helper threads and io_uring workers on cpu ")));
    Client c(d().port("binary"));
    const uint64_t first = durability == "batch" ? 1 : 51;  // the restart continues the seqs
    for (uint64_t i = first; i < first + 50; ++i) {  // fdatasyncs: io_uring hands them to a worker
      ASSERT_TRUE(c.send(wire::Transaction{.client_seq = i, .event_time_ns = kBaseTime,
                                           .account_id = i, .amount_minor = 10}));
      ASSERT_TRUE(c.read_frame().has_value());
    }
    auto cpus_of = cpus_by_thread(d().pid());
    EXPECT_EQ(cpus_of["io"], std::set<std::string>{agent});
    EXPECT_EQ(cpus_of["snapshot-writer"], std::set<std::string>{helpers});
    ASSERT_EQ(cpus_of.count("iou-wrk"), 1u) << "no io_uring worker ran an fdatasync";
    EXPECT_EQ(cpus_of["iou-wrk"], std::set<std::string>{durability == "sync" ? agent : helpers});
    ASSERT_EQ(d().stop(), 0);
  }
}

TEST_F(SluicedTest, MetricsAndStatShowTheRunningDaemon) {
  ASSERT_TRUE(d().start({"--config", config_, "--metrics-listen", "127.0.0.1:0"})) << d().log();
  Client c(d().port("binary"));
  for (uint64_t i = 1; i <= 10; ++i) {
    ASSERT_TRUE(c.send(wire::Transaction{.client_seq = i, .event_time_ns = kBaseTime, .account_id = i, .amount_minor = 10}));
  }
  for (int i = 0; i < 10; ++i) ASSERT_TRUE(c.read_frame().has_value());
  const ToolRun stat = sluice({"stat", d().data_dir(), "--once", "--json"});
  ASSERT_EQ(stat.exit_code, 0) << stat.err;
  EXPECT_THAT(stat.out, HasSubstr("\"state\":\"running\""));
  EXPECT_THAT(stat.out, HasSubstr("\"ingest_to_decision\":{\"count\":10"));
  ASSERT_NE(d().port("metrics"), 0);
  Client http(d().port("metrics"));
  ASSERT_TRUE(http.send_text("GET /metrics HTTP/1.0\r\n\r\n"));
  std::string reply;
  while (auto line = http.read_line(5000)) reply += *line + "\n";
  EXPECT_THAT(reply, HasSubstr("sluice_up 1"));
  EXPECT_THAT(reply, HasSubstr("sluice_ingest_to_decision_seconds_count 10"));
  ASSERT_EQ(d().stop(), 0);
}

}  // namespace
}  // namespace sluice::testing
