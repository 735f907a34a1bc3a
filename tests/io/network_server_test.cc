// Loopback integration tests of the network server: real sockets, real io_uring, the real
// Shard behind a stand-in for the shard stages (tests/io/network_test_util.h), or the test
// itself playing the shards where it must control the order of answers.
//
// Threads: the server runs on its own thread (poll, then wait() when idle), the stand-in on
// another with a backoff idle strategy, clients block in the test thread: nothing busy-spins.
#include "io/network_server.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <map>
#include <memory>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "core/idle_strategy.h"
#include "core/wait_strategy.h"
#include "core/wire_errors.h"
#include "gtest/gtest.h"
#include "io/text_codec.h"
#include "io/uring.h"
#include "tests/io/network_test_util.h"
#include "tests/test_util.h"

namespace sluice {
namespace {

using testing::eventually;
using testing::Frame;
using testing::hello_frame;
using testing::order_frame;
using testing::StandInShards;
using testing::subscribe_frame;
using testing::TestClient;
using testing::transaction_frame;
using testing::watermark_frame;
using Bytes = std::vector<std::byte>;

using InputRing = NetworkServer::InputRing;
using OutputRing = NetworkServer::OutputRing;

constexpr int64_t kBaseTime = 1'000'000'000'000;

// Which io_uring path the server takes; the suites that matter run on each.
struct Path {
  const char* name;
  bool multishot;
  bool buffer_ring;
  bool defer_taskrun;
};
void PrintTo(const Path& p, std::ostream* os) { *os << p.name; }

const Path kPaths[] = {
    {"MultishotBufferRing", true, true, true},
    {"SingleShotBufferRing", false, true, true},
    {"OwnBuffers", false, false, true},
    {"CoopTaskrun", true, true, false},
};

NetworkOptions test_options() {
  NetworkOptions o;
  o.listen = "127.0.0.1:0";
  o.text_listen = "127.0.0.1:0";
  o.linger_ns = 200'000'000;
  return o;
}

struct HarnessConfig {
  NetworkOptions options = test_options();
  int64_t input_size = 1024;
  int64_t output_size = 1024;
  uint32_t shards = 2;
  int64_t first_sequence = 1;
  ClientSeqTable table;
  bool stand_in = true;  // false: the test plays the shards (ManualShards)
  Path path = kPaths[0];
};

// The server on its own thread, the stand-in shards on another.
class Harness {
 public:
  explicit Harness(HarnessConfig config = {}) : config_(std::move(config)) {
    NetworkOptions& o = config_.options;
    o.allow_multishot = config_.path.multishot;
    o.allow_buffer_ring = config_.path.buffer_ring;
    o.allow_defer_taskrun = config_.path.defer_taskrun;
    input_ = std::make_unique<InputRing>(config_.input_size, wait_);
    std::vector<OutputRing*> outputs;
    for (uint32_t k = 0; k < config_.shards; ++k) {
      outputs_.push_back(std::make_unique<OutputRing>(config_.output_size, wait_));
      outputs.push_back(outputs_.back().get());
    }
    auto server = NetworkServer::create(o, config_.first_sequence, config_.table, *input_, outputs,
                                        &counters_);
    EXPECT_TRUE(server.ok()) << server.status();
    if (!server.ok()) return;
    server_ = std::move(*server);
    for (uint32_t k = 0; k < config_.shards; ++k) {
      outputs_[k]->add_gating_sequence(server_->output_sequence(k));
    }
    if (config_.stand_in) {
      stand_in_ = std::make_unique<StandInShards>(*input_, outputs);
      stand_in_->set_server(server_.get());
      input_->add_gating_sequence(stand_in_->sequence());
    } else {
      input_->add_gating_sequence(manual_progress_);
    }
    server_thread_ = std::thread([this] {
      while (!stop_.load(std::memory_order_acquire)) {
        if (server_->poll() == 0) server_->wait(1'000'000);
      }
    });
    if (stand_in_ != nullptr) {
      stand_in_thread_ = std::thread([this] {
        IdleStrategy idle(IdleConfig{.kind = IdleKind::kBackoff});
        while (!stop_.load(std::memory_order_acquire)) idle.idle(stand_in_->poll());
      });
    }
  }
  ~Harness() { stop(); }

  void stop() {
    if (stop_.exchange(true)) return;
    if (server_ != nullptr) server_->wake();
    if (server_thread_.joinable()) server_thread_.join();
    if (stand_in_thread_.joinable()) stand_in_thread_.join();
  }

  bool ok() const { return server_ != nullptr; }
  NetworkServer& server() { return *server_; }
  StandInShards& stand_in() { return *stand_in_; }
  const NetworkCounters& counters() const { return counters_; }
  uint16_t port() const { return server_->port(); }
  uint16_t text_port() const { return server_->text_port(); }

  // ManualShards: the test reads the input ring and answers itself.
  InputRing& input() { return *input_; }
  OutputRing& output(size_t k) { return *outputs_[k]; }
  Sequence& manual_progress() { return manual_progress_; }

 private:
  HarnessConfig config_;
  IdleWaitStrategy wait_{IdleConfig{.kind = IdleKind::kYield}};
  NetworkCounters counters_;
  std::unique_ptr<InputRing> input_;
  std::vector<std::unique_ptr<OutputRing>> outputs_;
  std::unique_ptr<NetworkServer> server_;
  std::unique_ptr<StandInShards> stand_in_;
  Sequence manual_progress_;
  std::atomic<bool> stop_{false};
  std::thread server_thread_;
  std::thread stand_in_thread_;
};

// The test as the shards: takes events from the input ring and publishes answers in the order
// (and into the ring) it chooses.
class ManualShards {
 public:
  explicit ManualShards(Harness& h) : h_(h) {}

  // The next input event (waits for it).
  InputEvent take() {
    EXPECT_TRUE(eventually([&] { return h_.input().cursor().get() >= next_; }));
    InputEvent e = h_.input()[next_];
    h_.manual_progress().set(next_);
    ++next_;
    return e;
  }
  void decide(size_t ring, const InputEvent& e, wire::Verdict verdict = wire::Verdict::kAccept) {
    OutputEvent o;
    o.kind = OutputEvent::Kind::kDecision;
    o.verdict = static_cast<uint8_t>(verdict);
    o.connection_id = e.connection_id;
    o.seq = e.sequence;
    o.client_id = e.client_id;
    o.client_seq = wire::load<uint64_t>(e.frame.data() + wire::kHeaderSize);
    o.receive_ticks = e.receive_ticks;
    publish(ring, o);
  }
  void publish(size_t ring, const OutputEvent& o) {
    OutputRing& r = h_.output(ring);
    const int64_t s = r.next();
    r[s] = o;
    r.publish(s);
    h_.server().wake();
  }

 private:
  Harness& h_;
  int64_t next_ = 0;
};

wire::Decision expect_decision(TestClient& c) {
  std::optional<Frame> f = c.read_frame();
  EXPECT_TRUE(f.has_value());
  if (!f) return {};
  EXPECT_TRUE(f->is(wire::FrameType::kDecision)) << "type " << int{f->type};
  return f->is(wire::FrameType::kDecision) ? f->decision() : wire::Decision{};
}

// Reads frames until an ERROR; returns its code (0 if the stream ended first).
uint16_t expect_error(TestClient& c, std::vector<Frame>* before = nullptr) {
  for (;;) {
    std::optional<Frame> f = c.read_frame();
    if (!f) return 0;
    if (f->is(wire::FrameType::kError)) return f->error_code();
    if (before != nullptr) before->push_back(*f);
  }
}

class NetworkServerPaths : public ::testing::TestWithParam<Path> {
 protected:
  HarnessConfig config() {
    HarnessConfig c;
    c.options = test_options();
    c.path = GetParam();
    return c;
  }
};

TEST_P(NetworkServerPaths, AnswersATransactionWithItsJournalSequence) {
  HarnessConfig cfg = config();
  cfg.first_sequence = 100;
  Harness h(cfg);
  ASSERT_TRUE(h.ok());
  TestClient c(h.port());
  ASSERT_TRUE(c.send(transaction_frame(1, 42)));
  const wire::Decision d = expect_decision(c);
  EXPECT_EQ(d.client_seq, 1u);
  EXPECT_EQ(d.seq, 100u);
  EXPECT_EQ(d.verdict, wire::Verdict::kAccept);
  ASSERT_TRUE(c.send(order_frame(2, 42)));
  const wire::Decision o = expect_decision(c);
  EXPECT_EQ(o.client_seq, 2u);
  EXPECT_EQ(o.seq, 101u);
  EXPECT_EQ(h.counters().events_journaled.get(), 2);
  EXPECT_EQ(h.counters().decisions_sent.get(), 2);
  std::printf("[ path     ] %s\n", h.server().describe().c_str());
}

TEST_P(NetworkServerPaths, FramesSplitAnywhereAcrossSendsDecodeTheSame) {
  Harness h(config());
  ASSERT_TRUE(h.ok());
  Bytes stream;
  for (uint64_t i = 1; i <= 30; ++i) {
    testing::append(stream, i % 3 == 0 ? order_frame(i, 5) : transaction_frame(i, 5));
  }
  TestClient c(h.port());
  std::mt19937 rng(3);
  for (size_t pos = 0; pos < stream.size();) {
    // One byte at a time for the first frames, then random pieces.
    const size_t n = pos < 200 ? 1 : std::min<size_t>(1 + rng() % 97, stream.size() - pos);
    ASSERT_TRUE(c.send(std::span(stream).subspan(pos, n)));
    pos += n;
  }
  for (uint64_t i = 1; i <= 30; ++i) EXPECT_EQ(expect_decision(c).client_seq, i);
}

// Many connections at once, each with its own account: every one gets exactly its decisions,
// in the order it sent them, and the journal sequences of all of them are gap-free.
TEST_P(NetworkServerPaths, ManyConnectionsEachGetTheirOwnDecisionsInOrder) {
  Harness h(config());
  ASSERT_TRUE(h.ok());
  constexpr int kConnections = 48;
  constexpr uint64_t kEvents = 60;
  std::vector<TestClient> clients;
  for (int i = 0; i < kConnections; ++i) clients.emplace_back(h.port());
  for (uint64_t round = 0; round < kEvents / 10; ++round) {
    for (int i = 0; i < kConnections; ++i) {
      Bytes batch;
      for (uint64_t j = 1; j <= 10; ++j) {
        testing::append(batch, transaction_frame(round * 10 + j, 1000 + i));
      }
      ASSERT_TRUE(clients[i].send(batch));
    }
  }
  std::set<uint64_t> seqs;
  for (int i = 0; i < kConnections; ++i) {
    for (uint64_t j = 1; j <= kEvents; ++j) {
      const wire::Decision d = expect_decision(clients[i]);
      ASSERT_EQ(d.client_seq, j) << "connection " << i;
      seqs.insert(d.seq);
    }
  }
  ASSERT_EQ(seqs.size(), kConnections * kEvents);
  EXPECT_EQ(*seqs.begin(), 1u);
  EXPECT_EQ(*seqs.rbegin(), kConnections * kEvents);
}

// A full (tiny) input ring and a stalled shard: ingest stops reading, TCP pushes back on the
// senders, and once the shard moves again every event is answered exactly once, in order.
TEST_P(NetworkServerPaths, FullInputRingPushesBackAndLosesNothing) {
  HarnessConfig cfg = config();
  cfg.input_size = 8;
  cfg.options.max_input_bytes = 4096;
  Harness h(cfg);
  ASSERT_TRUE(h.ok());
  h.stand_in().pause();
  constexpr int kConnections = 4;
  const uint64_t events = 20'000 / static_cast<uint64_t>(testing::kStressScale);
  std::vector<TestClient> clients;
  for (int i = 0; i < kConnections; ++i) clients.emplace_back(h.port());
  std::vector<std::thread> senders;
  for (int i = 0; i < kConnections; ++i) {
    senders.emplace_back([&, i] {
      Bytes batch;
      for (uint64_t j = 1; j <= events; ++j) {
        testing::append(batch, transaction_frame(j, 500 + i));
        if (batch.size() > 16384 || j == events) {
          ASSERT_TRUE(clients[i].send(batch));
          batch.clear();
        }
      }
    });
  }
  ASSERT_TRUE(eventually([&] { return h.counters().ring_full_episodes.get() >= 1; }));
  // The ring holds 8; nothing more was published while the shard stood still.
  EXPECT_EQ(h.counters().events_journaled.get(), 8);
  h.stand_in().resume();
  std::set<uint64_t> seqs;
  for (int i = 0; i < kConnections; ++i) {
    for (uint64_t j = 1; j <= events; ++j) {
      const wire::Decision d = expect_decision(clients[i]);
      ASSERT_EQ(d.client_seq, j) << "connection " << i;
      seqs.insert(d.seq);
    }
  }
  for (std::thread& t : senders) t.join();
  EXPECT_EQ(seqs.size(), kConnections * events);
  EXPECT_EQ(*seqs.rbegin(), kConnections * events);
  EXPECT_EQ(h.counters().events_journaled.get(), static_cast<int64_t>(kConnections * events));
  EXPECT_GT(h.counters().ring_full_ns.get(), 0);
}

INSTANTIATE_TEST_SUITE_P(, NetworkServerPaths, ::testing::ValuesIn(kPaths),
                         [](const auto& info) { return std::string(info.param.name); });

TEST(NetworkServer, AbruptClosesDoNotDisturbTheOthers) {
  Harness h;
  ASSERT_TRUE(h.ok());
  TestClient steady(h.port());
  {
    TestClient reset(h.port());
    Bytes burst;
    for (uint64_t i = 1; i <= 50; ++i) testing::append(burst, transaction_frame(i, 77));
    ASSERT_TRUE(reset.send(burst));
    reset.reset();  // RST with decisions owed
  }
  {
    TestClient half(h.port());
    const Bytes t = transaction_frame(1, 78);
    ASSERT_TRUE(half.send(std::span(t).subspan(0, 20)));  // half a frame, then gone
    half.close();
  }
  ASSERT_TRUE(steady.send(transaction_frame(1, 79)));
  EXPECT_EQ(expect_decision(steady).client_seq, 1u);
  ASSERT_TRUE(eventually([&] { return h.counters().connections_closed.get() == 2; }));
  // A closed connection's slot is freed once its last request completes: open follows closed.
  ASSERT_TRUE(eventually([&] { return h.counters().connections_open.get() == 1; }));
  TestClient later(h.port());
  ASSERT_TRUE(later.send(transaction_frame(1, 80)));
  EXPECT_EQ(expect_decision(later).client_seq, 1u);
}

// A client that sends but never reads: its unsent output passes the bound and it is dropped,
// while a well-behaved client is served throughout.
TEST(NetworkServer, ANonReadingClientIsDroppedWhileOthersAreServed) {
  HarnessConfig cfg;
  cfg.options = test_options();
  cfg.options.max_output_bytes = 64 << 10;
  cfg.options.send_buffer_bytes = 16 << 10;
  Harness h(cfg);
  ASSERT_TRUE(h.ok());
  TestClient slow(h.port(), /*rcvbuf=*/4096);
  std::atomic<bool> sending{true};
  std::thread flood([&] {
    Bytes batch;
    for (uint64_t j = 1; sending.load() && j <= 400'000; ++j) {
      testing::append(batch, transaction_frame(j, 900));
      if (batch.size() > 32768) {
        if (!slow.send(batch)) break;  // dropped: the server reset us
        batch.clear();
      }
    }
  });
  TestClient good(h.port());
  uint64_t seq = 0;
  while (h.counters().connections_dropped_slow.get() == 0 && seq < 100'000) {
    ASSERT_TRUE(good.send(transaction_frame(++seq, 901)));
    ASSERT_EQ(expect_decision(good).client_seq, seq);
  }
  ASSERT_TRUE(eventually([&] { return h.counters().connections_dropped_slow.get() == 1; }));
  sending.store(false);
  flood.join();
  for (int i = 0; i < 10; ++i) {
    ASSERT_TRUE(good.send(transaction_frame(++seq, 901)));
    EXPECT_EQ(expect_decision(good).client_seq, seq);
  }
}

TEST(NetworkServer, AClientThatShutsItsSendingSideStillGetsEveryAnswer) {
  Harness h;
  ASSERT_TRUE(h.ok());
  h.stand_in().pause();
  TestClient c(h.port());
  Bytes s;
  for (uint64_t i = 1; i <= 50; ++i) testing::append(s, transaction_frame(i, 21));
  ASSERT_TRUE(c.send(s));
  c.shutdown_write();
  ASSERT_TRUE(eventually([&] { return h.counters().events_journaled.get() == 50; }));
  h.stand_in().resume();
  for (uint64_t i = 1; i <= 50; ++i) EXPECT_EQ(expect_decision(c).client_seq, i);
  EXPECT_TRUE(c.at_eof());
  ASSERT_TRUE(eventually([&] { return h.counters().connections_open.get() == 0; }));
}

TEST(NetworkServer, AClientThatNeverClosesAfterItsErrorIsClosedAfterTheLinger) {
  Harness h;  // linger_ns: 200 ms in the tests
  ASSERT_TRUE(h.ok());
  TestClient c(h.text_port());
  ASSERT_TRUE(c.send("HELLO,0\n"));
  std::optional<std::string> line = c.read_line();
  ASSERT_TRUE(line);
  EXPECT_EQ(line->rfind("E,5,", 0), 0u) << *line;
  EXPECT_TRUE(c.at_eof());  // the server shut its side; the client keeps its own open
  ASSERT_TRUE(eventually([&] { return h.counters().connections_closed.get() == 1; }));
  ASSERT_TRUE(eventually([&] { return h.counters().connections_open.get() == 0; }));
}

TEST(NetworkServer, StopDropsWhatIsStillOpenAfterTheDrainTimeout) {
  HarnessConfig cfg;
  cfg.options.drain_timeout_ns = 300'000'000;
  Harness h(cfg);
  ASSERT_TRUE(h.ok());
  h.stand_in().pause();  // the decision it is owed never comes
  TestClient c(h.port());
  ASSERT_TRUE(c.send(transaction_frame(1, 5)));
  ASSERT_TRUE(eventually([&] { return h.counters().events_journaled.get() == 1; }));
  h.server().stop_accepting();
  ASSERT_TRUE(eventually([&] { return h.server().drained(); }));
  EXPECT_EQ(h.counters().connections_open.get(), 0);
  h.stand_in().resume();
  ASSERT_TRUE(eventually([&] { return h.counters().decisions_gone.get() == 1; }));
}

TEST(NetworkServer, TextProtocolAnswersInLines) {
  Harness h;
  ASSERT_TRUE(h.ok());
  TestClient c(h.text_port());
  ASSERT_TRUE(c.send("HELLO,77\n"));
  EXPECT_EQ(c.read_line(), "HELLO_ACK,77,0");
  ASSERT_TRUE(c.send("T,1,1000000000000,55,100,9,978,1\r\nW,1000000000001\n\n"));
  std::optional<std::string> line = c.read_line();
  ASSERT_TRUE(line);
  text::ServerLine d = text::parse_server_line(*line);
  ASSERT_EQ(d.kind, text::ServerLine::Kind::kDecision) << *line;
  EXPECT_EQ(d.decision.client_seq, 1u);
  EXPECT_EQ(d.decision.seq, 1u);
  EXPECT_EQ(d.decision.verdict, wire::Verdict::kAccept);
  // Malformed: an E line, and the connection stays open.
  ASSERT_TRUE(c.send("T,2,oops,55,100,9,978,1\nO,3,1000000000000,55,1,7,B,5,100\n"));
  line = c.read_line();
  ASSERT_TRUE(line);
  EXPECT_EQ(*line,
            "E,11,bad event_time_ns; expected T,<client_seq>,<event_time_ns>,"
            "<account_id>,<amount_minor>,<merchant_id>,<currency>,<channel>");
  line = c.read_line();
  ASSERT_TRUE(line);
  EXPECT_EQ(text::parse_server_line(*line).decision.client_seq, 3u);
  EXPECT_EQ(text::parse_server_line(*line).decision.seq, 3u);  // the watermark took seq 2
  // INVALID values: a decision with seq 0.
  ASSERT_TRUE(c.send("T,4,1000000000000,55,-5,9,978,1\n"));
  EXPECT_EQ(c.read_line(), "D,4,0,INVALID,0,0");
  // A line over 1024 bytes: an E line, then the server closes.
  ASSERT_TRUE(c.send(std::string(1100, 'x') + "\n"));
  EXPECT_EQ(c.read_line(), "E,10,line longer than 1024 bytes");
  EXPECT_TRUE(c.at_eof());
  EXPECT_EQ(h.counters().malformed_lines.get(), 1);
  EXPECT_EQ(h.counters().protocol_errors.get(), 1);
}

TEST(NetworkServer, UdpDatagramsAreJournaledWithDuplicatesGapsAndBadOnesCounted) {
  Harness h;
  ASSERT_TRUE(h.ok());
  ASSERT_NE(h.server().udp_port(), 0);
  const int fd = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  sockaddr_in to{};
  to.sin_family = AF_INET;
  to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  to.sin_port = htons(h.server().udp_port());
  auto send = [&](uint64_t dseq, std::vector<Bytes> frames) {
    Bytes d(8);
    wire::store<uint64_t>(d.data(), dseq);
    for (const Bytes& f : frames) testing::append(d, f);
    ASSERT_EQ(::sendto(fd, d.data(), d.size(), 0, reinterpret_cast<sockaddr*>(&to), sizeof(to)),
              static_cast<ssize_t>(d.size()));
  };
  Bytes broken = transaction_frame(99, 1);
  broken[3] = std::byte{0};  // version 0
  Bytes unknown(8);
  wire::encode_header(unknown.data(), {8, 0x7E, 1});
  send(1, {transaction_frame(1, 10), order_frame(2, 10)});
  send(1, {transaction_frame(3, 10)});          // duplicate of 1
  send(3, {transaction_frame(4, 10)});          // gap: 2 missing; accepted
  send(2, {transaction_frame(5, 10)});          // below the next expected (4): duplicate
  send(4, {transaction_frame(6, 10), broken});  // a broken frame drops the whole datagram
  send(5, {unknown, transaction_frame(7, 0), watermark_frame(kBaseTime)});
  Bytes runt(5, std::byte{1});
  ASSERT_EQ(::sendto(fd, runt.data(), runt.size(), 0, reinterpret_cast<sockaddr*>(&to), sizeof(to)),
            5);
  ::close(fd);
  // Each datagram's counts are complete once the next counter moved: wait for the last ones.
  ASSERT_TRUE(eventually([&] {
    return h.counters().udp_datagrams.get() == 7 && h.counters().udp_bad_datagrams.get() == 2;
  }));
  ASSERT_TRUE(eventually([&] { return h.stand_in().events() == 4; }));
  const std::vector<testing::SeenEvent> seen = h.stand_in().seen();
  ASSERT_EQ(seen.size(), 4u);
  const uint64_t expected_client_seq[] = {1, 2, 4};
  for (size_t i = 0; i < 3; ++i) {
    EXPECT_EQ(wire::load<uint64_t>(seen[i].frame.data() + 4), expected_client_seq[i]);
    EXPECT_EQ(seen[i].connection_id, 0u);
    EXPECT_EQ(seen[i].client_id, 0u);
  }
  EXPECT_EQ(seen[3].frame[2], std::byte{static_cast<uint8_t>(wire::FrameType::kWatermark)});
  EXPECT_EQ(h.counters().udp_duplicates.get(), 2);
  EXPECT_EQ(h.counters().udp_gaps.get(), 1);
  EXPECT_EQ(h.counters().udp_bad_datagrams.get(), 2);
  EXPECT_EQ(h.counters().invalid.get(), 1);
  EXPECT_EQ(h.counters().unknown_types.get(), 1);
  // UDP events get no DECISION: the shards' answers are counted as unrouted.
  ASSERT_TRUE(eventually([&] { return h.counters().decisions_unrouted.get() == 3; }));
}

struct Hostile {
  const char* name;
  Bytes frame;
  wire::ErrorCode code;
};

std::vector<Hostile> hostile_frames() {
  auto raw = [](uint16_t length, uint8_t type, uint8_t version, size_t size) {
    Bytes b(size, std::byte{0x11});
    wire::encode_header(b.data(), {length, type, version});
    return b;
  };
  std::vector<Hostile> v;
  for (uint16_t len = 0; len < 4; ++len) {
    v.push_back({"short length", raw(len, 2, 1, 4), wire::ErrorCode::kFrameTooShort});
  }
  v.push_back({"length 1025", raw(1025, 2, 1, 1025), wire::ErrorCode::kFrameTooLong});
  v.push_back({"version 0", raw(44, 2, 0, 44), wire::ErrorCode::kBadVersion});
  v.push_back({"short HELLO", raw(19, 1, 1, 19), wire::ErrorCode::kShortPayload});
  v.push_back({"short TRANSACTION", raw(43, 2, 1, 43), wire::ErrorCode::kShortPayload});
  v.push_back({"short ORDER", raw(59, 3, 1, 59), wire::ErrorCode::kShortPayload});
  v.push_back({"short WATERMARK", raw(11, 4, 1, 11), wire::ErrorCode::kShortPayload});
  v.push_back({"short SUBSCRIBE", raw(7, 5, 1, 7), wire::ErrorCode::kShortPayload});
  return v;
}

// SPEC 1.5: everything before the bad frame is processed, then ERROR, then the server closes;
// the daemon and the other connections go on.
TEST(NetworkServer, EveryHostileFrameGetsAnErrorAfterTheEarlierEventsAreAnswered) {
  Harness h;
  ASSERT_TRUE(h.ok());
  TestClient bystander(h.port());
  uint64_t bystander_seq = 0;
  for (const Hostile& x : hostile_frames()) {
    SCOPED_TRACE(x.name);
    TestClient c(h.port());
    Bytes stream = transaction_frame(1, 31);
    testing::append(stream, transaction_frame(2, 31));
    testing::append(stream, x.frame);
    testing::append(stream, transaction_frame(3, 31));  // after the bad frame: never processed
    ASSERT_TRUE(c.send(stream));
    std::vector<Frame> before;
    EXPECT_EQ(expect_error(c, &before), static_cast<uint16_t>(x.code));
    ASSERT_EQ(before.size(), 2u);
    EXPECT_EQ(before[0].decision().client_seq, 1u);
    EXPECT_EQ(before[1].decision().client_seq, 2u);
    EXPECT_TRUE(c.at_eof());
    ASSERT_TRUE(bystander.send(transaction_frame(++bystander_seq, 32)));
    EXPECT_EQ(expect_decision(bystander).client_seq, bystander_seq);
  }
  EXPECT_EQ(h.counters().protocol_errors.get(), static_cast<int64_t>(hostile_frames().size()));
}

TEST(NetworkServer, AClientThatKeepsSendingAfterItsErrorStillReadsTheError) {
  Harness h;
  ASSERT_TRUE(h.ok());
  TestClient c(h.port());
  Bytes bad(8);
  wire::encode_header(bad.data(), {8, 2, 0});
  ASSERT_TRUE(c.send(bad));
  // More data the server will never read: with it unread, a plain close would reset the
  // connection; the server lingers instead.
  Bytes junk(64 << 10, std::byte{0x42});
  (void)c.send(junk);
  EXPECT_EQ(expect_error(c), static_cast<uint16_t>(wire::ErrorCode::kBadVersion));
  EXPECT_TRUE(c.at_eof());
}

TEST(NetworkServer, UnknownTypesNewerVersionsAndInvalidValues) {
  Harness h;
  ASSERT_TRUE(h.ok());
  TestClient c(h.port());
  Bytes unknown(40, std::byte{7});
  wire::encode_header(unknown.data(), {40, 0x70, 3});
  Bytes server_type = transaction_frame(0, 1);  // a DECISION-typed frame from a client
  wire::encode_header(server_type.data(), {static_cast<uint16_t>(server_type.size()), 0x82, 1});
  Bytes v2 = transaction_frame(5, 33);
  v2.resize(v2.size() + 20, std::byte{0xEE});
  wire::encode_header(v2.data(), {static_cast<uint16_t>(v2.size()), 2, 2});
  Bytes stream = unknown;
  testing::append(stream, server_type);
  testing::append(stream, v2);
  testing::append(stream, transaction_frame(6, 0));         // account 0: INVALID
  testing::append(stream, order_frame(7, 33, /*side=*/9));  // side 9: INVALID
  testing::append(stream, watermark_frame(-1));             // INVALID, no reply
  testing::append(stream, transaction_frame(8, 33));
  ASSERT_TRUE(c.send(stream));
  wire::Decision d = expect_decision(c);
  EXPECT_EQ(d.client_seq, 5u);
  EXPECT_EQ(d.seq, 1u);
  d = expect_decision(c);
  EXPECT_EQ(d.client_seq, 6u);
  EXPECT_EQ(d.seq, 0u);
  EXPECT_EQ(d.verdict, wire::Verdict::kInvalid);
  d = expect_decision(c);
  EXPECT_EQ(d.client_seq, 7u);
  EXPECT_EQ(d.verdict, wire::Verdict::kInvalid);
  d = expect_decision(c);
  EXPECT_EQ(d.client_seq, 8u);
  EXPECT_EQ(d.seq, 2u);
  EXPECT_EQ(h.counters().unknown_types.get(), 2);
  EXPECT_EQ(h.counters().invalid.get(), 3);
  EXPECT_EQ(h.counters().events_journaled.get(), 2);
  // The newer-version frame is journaled as received.
  ASSERT_TRUE(eventually([&] { return h.stand_in().events() == 2; }));
  EXPECT_EQ(h.stand_in().seen()[0].frame, v2);
}

TEST(NetworkServer, HelloRules) {
  Harness h;
  ASSERT_TRUE(h.ok());
  {
    TestClient c(h.port());
    ASSERT_TRUE(c.send(hello_frame(0)));
    EXPECT_EQ(expect_error(c), static_cast<uint16_t>(wire::ErrorCode::kBadHello));
    EXPECT_TRUE(c.at_eof());
  }
  {
    TestClient c(h.port());
    Bytes s = transaction_frame(1, 3);
    testing::append(s, hello_frame(5));
    ASSERT_TRUE(c.send(s));
    std::vector<Frame> before;
    EXPECT_EQ(expect_error(c, &before), static_cast<uint16_t>(wire::ErrorCode::kBadHello));
    ASSERT_EQ(before.size(), 1u);
    EXPECT_TRUE(c.at_eof());
  }
  {
    TestClient c(h.port());
    Bytes s = hello_frame(6);
    testing::append(s, hello_frame(6));
    ASSERT_TRUE(c.send(s));
    std::vector<Frame> before;
    EXPECT_EQ(expect_error(c, &before), static_cast<uint16_t>(wire::ErrorCode::kBadHello));
    ASSERT_EQ(before.size(), 1u);
    EXPECT_TRUE(before[0].is(wire::FrameType::kHelloAck));
  }
  {
    TestClient c(h.port());  // flags are reserved: non-zero ones are ignored
    ASSERT_TRUE(c.send(testing::frame_of(wire::Hello{.client_id = 9, .flags = 0xFF})));
    std::optional<Frame> f = c.read_frame();
    ASSERT_TRUE(f && f->is(wire::FrameType::kHelloAck));
    EXPECT_EQ(f->hello_ack().client_id, 9u);
  }
}

// SPEC 1.7: HELLO_ACK carries the highest journaled client_seq across reconnects and restarts
// (the table the server is built with), and anything at or below it is DUPLICATE.
TEST(NetworkServer, DeduplicatesAcrossReconnectsAndRestarts) {
  HarnessConfig cfg;
  cfg.options = test_options();
  cfg.table = {{7, 100}};
  Harness h(cfg);
  ASSERT_TRUE(h.ok());
  {
    TestClient c(h.port());
    ASSERT_TRUE(c.send(hello_frame(7)));
    std::optional<Frame> ack = c.read_frame();
    ASSERT_TRUE(ack && ack->is(wire::FrameType::kHelloAck));
    EXPECT_EQ(ack->hello_ack().last_client_seq, 100u);
    Bytes s = transaction_frame(100, 1);
    testing::append(s, transaction_frame(101, 1));
    testing::append(s, transaction_frame(50, 1));
    ASSERT_TRUE(c.send(s));
    wire::Decision d = expect_decision(c);
    EXPECT_EQ(d.verdict, wire::Verdict::kDuplicate);
    EXPECT_EQ(d.seq, 0u);
    d = expect_decision(c);
    EXPECT_EQ(d.client_seq, 101u);
    EXPECT_EQ(d.verdict, wire::Verdict::kAccept);
    EXPECT_EQ(d.seq, 1u);
    d = expect_decision(c);
    EXPECT_EQ(d.client_seq, 50u);
    EXPECT_EQ(d.verdict, wire::Verdict::kDuplicate);
  }
  {
    TestClient c(h.port());
    ASSERT_TRUE(c.send(hello_frame(7)));
    std::optional<Frame> ack = c.read_frame();
    ASSERT_TRUE(ack);
    EXPECT_EQ(ack->hello_ack().last_client_seq, 101u);
    Bytes s = transaction_frame(101, 1);
    testing::append(s, transaction_frame(102, 1));
    ASSERT_TRUE(c.send(s));
    EXPECT_EQ(expect_decision(c).verdict, wire::Verdict::kDuplicate);
    EXPECT_EQ(expect_decision(c).verdict, wire::Verdict::kAccept);
  }
  {
    TestClient c(h.port());
    ASSERT_TRUE(c.send(hello_frame(8)));
    std::optional<Frame> ack = c.read_frame();
    ASSERT_TRUE(ack);
    EXPECT_EQ(ack->hello_ack().last_client_seq, 0u);
  }
  {
    TestClient c(h.port());  // no HELLO: client_id 0, nothing deduplicated
    Bytes s = transaction_frame(1, 2);
    testing::append(s, transaction_frame(1, 2));
    ASSERT_TRUE(c.send(s));
    EXPECT_EQ(expect_decision(c).verdict, wire::Verdict::kAccept);
    EXPECT_EQ(expect_decision(c).verdict, wire::Verdict::kAccept);
  }
  EXPECT_EQ(h.counters().duplicate.get(), 3);
  ASSERT_TRUE(eventually([&] { return h.stand_in().events() == 4; }));
  EXPECT_EQ(h.stand_in().seen()[0].client_id, 7u);
}

// Replies ingest makes itself wait for the decisions owed for earlier events, even when the
// shards answer those out of order: here shard 1 answers event 2 (and later event 3) before
// shard 0 answers event 1, and the INVALID reply for a frame sent after event 2 must come
// after event 1's decision.
TEST(NetworkServer, ImmediateRepliesNeverOvertakeOwedDecisions) {
  HarnessConfig cfg;
  cfg.options = test_options();
  cfg.stand_in = false;
  Harness h(cfg);
  ASSERT_TRUE(h.ok());
  ManualShards shards(h);
  TestClient c(h.port());
  Bytes s = transaction_frame(1, 11);
  testing::append(s, transaction_frame(2, 12));
  testing::append(s, transaction_frame(3, 0));  // INVALID: the reply is held behind 1 and 2
  testing::append(s, transaction_frame(4, 13));
  ASSERT_TRUE(c.send(s));
  const InputEvent e1 = shards.take();
  const InputEvent e2 = shards.take();
  const InputEvent e4 = shards.take();
  ASSERT_TRUE(eventually([&] { return h.counters().invalid.get() == 1; }));
  EXPECT_EQ(c.ready_bytes(), 0u);  // nothing may go out before event 1 and 2 are answered
  shards.decide(1, e2);
  EXPECT_EQ(expect_decision(c).client_seq, 2u);
  shards.decide(1, e4);  // a later event may pass the held reply: it was sent after it
  EXPECT_EQ(expect_decision(c).client_seq, 4u);
  shards.decide(0, e1);
  EXPECT_EQ(expect_decision(c).client_seq, 1u);
  const wire::Decision invalid = expect_decision(c);
  EXPECT_EQ(invalid.client_seq, 3u);
  EXPECT_EQ(invalid.verdict, wire::Verdict::kInvalid);
}

TEST(NetworkServer, TextErrorLinesAndDuplicatesWaitForOwedDecisionsToo) {
  HarnessConfig cfg;
  cfg.options = test_options();
  cfg.stand_in = false;
  Harness h(cfg);
  ASSERT_TRUE(h.ok());
  ManualShards shards(h);
  TestClient c(h.text_port());
  ASSERT_TRUE(c.send("HELLO,4\n"));
  EXPECT_EQ(c.read_line(), "HELLO_ACK,4,0");
  ASSERT_TRUE(c.send("T,1,1000000000000,5,100,1,978,1\nbogus\nT,1,1000000000000,5,100,1,978,1\n"));
  const InputEvent e1 = shards.take();
  ASSERT_TRUE(eventually([&] { return h.counters().duplicate.get() == 1; }));
  EXPECT_EQ(c.ready_bytes(), 0u);
  shards.decide(0, e1);
  EXPECT_EQ(c.read_line(), "D,1,1,ACCEPT,0,0");
  EXPECT_EQ(c.read_line(), "E,11,unknown line; expected HELLO, T, O, W or SUB lines");
  EXPECT_EQ(c.read_line(), "D,1,0,DUPLICATE,0,0");
}

TEST(NetworkServer, DecisionsForGoneOrNoConnectionAreCountedNotDelivered) {
  HarnessConfig cfg;
  cfg.options = test_options();
  cfg.stand_in = false;
  Harness h(cfg);
  ASSERT_TRUE(h.ok());
  ManualShards shards(h);
  InputEvent e;
  {
    // After a plain close (EOF) the server would wait for the decision it owes (the client may
    // only have shut its sending side); a reset ends the connection at once.
    TestClient c(h.port());
    ASSERT_TRUE(c.send(transaction_frame(1, 3)));
    e = shards.take();
    c.reset();
  }
  ASSERT_TRUE(eventually([&] { return h.counters().connections_open.get() == 0; }));
  shards.decide(0, e);
  ASSERT_TRUE(eventually([&] { return h.counters().decisions_gone.get() == 1; }));
  e.connection_id = 0;
  shards.decide(1, e);
  ASSERT_TRUE(eventually([&] { return h.counters().decisions_unrouted.get() == 1; }));
  // A new connection on the freed slot has a new id: the old decision cannot reach it.
  TestClient c(h.port());
  ASSERT_TRUE(c.send(transaction_frame(1, 3)));
  const InputEvent e2 = shards.take();
  EXPECT_NE(e2.connection_id, e.connection_id);
  EXPECT_NE(e2.connection_id, 0u);
}

TEST(NetworkServer, AlertsReachSubscribersOnly) {
  HarnessConfig cfg;
  cfg.options = test_options();
  std::atomic<int> sunk{0};
  cfg.options.alert_sink = [&](const OutputEvent& a) {
    EXPECT_EQ(a.kind, OutputEvent::Kind::kAlert);
    sunk.fetch_add(1);
  };
  Harness h(cfg);
  ASSERT_TRUE(h.ok());
  TestClient binary_sub(h.port());
  ASSERT_TRUE(binary_sub.send(subscribe_frame(0x1 | 0x80)));  // unknown topic bits are ignored
  TestClient text_sub(h.text_port());
  ASSERT_TRUE(text_sub.send("SUB\n"));
  TestClient unsubscribed(h.port());
  ASSERT_TRUE(unsubscribed.send(subscribe_frame(1)));
  ASSERT_TRUE(unsubscribed.send(subscribe_frame(0)));
  TestClient plain(h.port());
  // Make sure the subscriptions are in before the alert fires: each connection's frames are
  // handled in order, so a decision for a later event proves its SUBSCRIBE was seen.
  for (TestClient* c : {&binary_sub, &unsubscribed}) {
    ASSERT_TRUE(c->send(transaction_frame(1, 5000 + c->fd())));
    EXPECT_EQ(expect_decision(*c).client_seq, 1u);
  }
  ASSERT_TRUE(text_sub.send("T,1,1000000000000,6000,100,1,978,1\n"));
  ASSERT_TRUE(text_sub.read_line().has_value());
  // Six transactions of one account inside the window: the sixth is VELOCITY_EXCEEDED.
  Bytes burst;
  for (uint64_t i = 1; i <= 6; ++i) testing::append(burst, transaction_frame(i, 4242));
  ASSERT_TRUE(plain.send(burst));
  for (uint64_t i = 1; i <= 6; ++i) {
    const wire::Decision d = expect_decision(plain);
    EXPECT_EQ(d.client_seq, i);
    EXPECT_EQ(d.verdict, i == 6 ? wire::Verdict::kFlag : wire::Verdict::kAccept);
  }
  std::optional<Frame> a = binary_sub.read_frame();
  ASSERT_TRUE(a && a->is(wire::FrameType::kAlert));
  EXPECT_EQ(a->alert().account_id, 4242u);
  EXPECT_EQ(a->alert().rule, wire::Rule::kVelocityExceeded);
  EXPECT_EQ(a->alert().value, 6);
  std::optional<std::string> line = text_sub.read_line();
  ASSERT_TRUE(line);
  EXPECT_EQ(line->rfind("A,", 0), 0u) << *line;
  EXPECT_NE(line->find(",4242,VELOCITY_EXCEEDED,6,5"), std::string::npos) << *line;
  // The others got nothing but their own decisions: a marker event's decision is next.
  for (TestClient* c : {&plain, &unsubscribed}) {
    ASSERT_TRUE(c->send(transaction_frame(99, 7000 + c->fd())));
    EXPECT_EQ(expect_decision(*c).client_seq, 99u);
  }
  EXPECT_EQ(sunk.load(), 1);
  EXPECT_EQ(h.counters().alerts_sent.get(), 2);
}

TEST(NetworkServer, ConnectionsBeyondTheLimitAreRefused) {
  HarnessConfig cfg;
  cfg.options = test_options();
  cfg.options.max_connections = 2;
  Harness h(cfg);
  ASSERT_TRUE(h.ok());
  TestClient a(h.port());
  TestClient b(h.text_port());
  ASSERT_TRUE(eventually([&] { return h.counters().connections_open.get() == 2; }));
  TestClient c(h.port());
  EXPECT_EQ(expect_error(c), static_cast<uint16_t>(wire::ErrorCode::kTooManyConnections));
  EXPECT_TRUE(c.at_eof());
  TestClient t(h.text_port());
  std::optional<std::string> line = t.read_line();
  ASSERT_TRUE(line);
  EXPECT_EQ(line->rfind("E,6,", 0), 0u) << *line;
  EXPECT_EQ(h.counters().connections_refused.get(), 2);
  a.close();
  ASSERT_TRUE(eventually([&] { return h.counters().connections_open.get() == 1; }));
  TestClient d(h.port());
  ASSERT_TRUE(d.send(transaction_frame(1, 1)));
  EXPECT_EQ(expect_decision(d).client_seq, 1u);
}

TEST(NetworkServer, InFlightBoundStopsReadingUntilAnswersDrain) {
  HarnessConfig cfg;
  cfg.options = test_options();
  cfg.options.max_in_flight = 4;
  Harness h(cfg);
  ASSERT_TRUE(h.ok());
  h.stand_in().pause();
  TestClient c(h.port());
  Bytes s;
  for (uint64_t i = 1; i <= 100; ++i) testing::append(s, transaction_frame(i, 8));
  ASSERT_TRUE(c.send(s));
  ASSERT_TRUE(eventually([&] { return h.counters().in_flight_stalls.get() >= 1; }));
  EXPECT_EQ(h.counters().events_journaled.get(), 4);
  h.stand_in().resume();
  for (uint64_t i = 1; i <= 100; ++i) EXPECT_EQ(expect_decision(c).client_seq, i);
}

TEST(NetworkServer, SnapshotBarriersRideOnEveryNthEventAndOnRequest) {
  HarnessConfig cfg;
  cfg.options = test_options();
  cfg.options.snapshot_every_events = 5;
  Harness h(cfg);
  ASSERT_TRUE(h.ok());
  TestClient c(h.port());
  for (uint64_t i = 1; i <= 12; ++i) {
    ASSERT_TRUE(c.send(transaction_frame(i, 2)));
    EXPECT_EQ(expect_decision(c).client_seq, i);
  }
  h.server().request_snapshot();
  // The request is applied by the server's next pass; the next event after it carries it.
  ASSERT_TRUE(c.send(watermark_frame(kBaseTime)));
  ASSERT_TRUE(eventually([&] { return h.stand_in().events() == 13; }));
  const std::vector<testing::SeenEvent> seen = h.stand_in().seen();
  std::vector<int64_t> flagged;
  for (const testing::SeenEvent& e : seen) {
    if (e.flags & kInputSnapshotAfter) flagged.push_back(e.sequence);
  }
  EXPECT_EQ(flagged, (std::vector<int64_t>{5, 10, 13}));
  EXPECT_EQ(h.counters().snapshot_barriers.get(), 3);
}

// A due barrier waits while the gate (the snapshot writer's ready()) is closed, counted once,
// and rides on the first event after it opens; the count to the next one restarts there.
TEST(NetworkServer, ADueSnapshotBarrierWaitsForTheGate) {
  std::atomic<bool> gate{false};
  HarnessConfig cfg;
  cfg.options = test_options();
  cfg.options.snapshot_every_events = 5;
  cfg.options.snapshot_gate = &gate;
  Harness h(cfg);
  ASSERT_TRUE(h.ok());
  TestClient c(h.port());
  for (uint64_t i = 1; i <= 8; ++i) {
    ASSERT_TRUE(c.send(transaction_frame(i, 2)));
    EXPECT_EQ(expect_decision(c).client_seq, i);
  }
  EXPECT_EQ(h.counters().snapshot_barriers.get(), 0);
  EXPECT_EQ(h.counters().snapshot_barriers_deferred.get(), 1);  // once, not per event
  gate = true;
  for (uint64_t i = 9; i <= 15; ++i) {
    ASSERT_TRUE(c.send(transaction_frame(i, 2)));
    EXPECT_EQ(expect_decision(c).client_seq, i);
  }
  std::vector<int64_t> flagged;
  for (const testing::SeenEvent& e : h.stand_in().seen()) {
    if (e.flags & kInputSnapshotAfter) flagged.push_back(e.sequence);
  }
  EXPECT_EQ(flagged, (std::vector<int64_t>{9, 14}));
  EXPECT_EQ(h.counters().snapshot_barriers.get(), 2);
  EXPECT_EQ(h.counters().snapshot_barriers_deferred.get(), 1);
}

TEST(NetworkServer, JournalSequencesAreGapFreeAcrossEveryInput) {
  HarnessConfig cfg;
  cfg.options = test_options();
  cfg.first_sequence = 1000;
  Harness h(cfg);
  ASSERT_TRUE(h.ok());
  TestClient bin(h.port());
  TestClient txt(h.text_port());
  const int fd = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  sockaddr_in to{};
  to.sin_family = AF_INET;
  to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  to.sin_port = htons(h.server().udp_port());
  for (uint64_t i = 1; i <= 20; ++i) {
    ASSERT_TRUE(bin.send(i % 4 == 0 ? watermark_frame(kBaseTime) : transaction_frame(i, 1)));
    ASSERT_TRUE(txt.send("O," + std::to_string(i) + ",1000000000000,2,1,1,S,1,1\n"));
    Bytes d(8);
    wire::store<uint64_t>(d.data(), i);
    testing::append(d, transaction_frame(i, 3));
    ASSERT_EQ(::sendto(fd, d.data(), d.size(), 0, reinterpret_cast<sockaddr*>(&to), sizeof(to)),
              static_cast<ssize_t>(d.size()));
  }
  ::close(fd);
  ASSERT_TRUE(eventually([&] { return h.stand_in().events() == 60; }));
  const std::vector<testing::SeenEvent> seen = h.stand_in().seen();
  for (size_t i = 0; i < seen.size(); ++i) EXPECT_EQ(seen[i].sequence, 1000 + int64_t(i));
}

TEST(NetworkServer, StopAcceptingAnswersWhatIsOwedThenSaysGoodbye) {
  Harness h;
  ASSERT_TRUE(h.ok());
  h.stand_in().pause();
  TestClient c(h.port());
  Bytes s;
  for (uint64_t i = 1; i <= 20; ++i) testing::append(s, transaction_frame(i, 6));
  ASSERT_TRUE(c.send(s));
  ASSERT_TRUE(eventually([&] { return h.counters().events_journaled.get() == 20; }));
  h.server().stop_accepting();
  // The listeners close: new connections are refused by the kernel.
  ASSERT_TRUE(eventually([&] {
    TestClient probe;
    return !probe.connect(h.port());
  }));
  EXPECT_FALSE(h.server().drained());
  h.stand_in().resume();
  std::vector<Frame> before;
  EXPECT_EQ(expect_error(c, &before), static_cast<uint16_t>(wire::ErrorCode::kShuttingDown));
  ASSERT_EQ(before.size(), 20u);
  for (uint64_t i = 0; i < 20; ++i) EXPECT_EQ(before[i].decision().client_seq, i + 1);
  EXPECT_TRUE(c.at_eof());
  c.close();
  ASSERT_TRUE(eventually([&] { return h.server().drained(); }));
  EXPECT_EQ(h.counters().connections_open.get(), 0);
}

TEST(NetworkServer, RefusedInputTellsEveryClientAfterItsAnswers) {
  Harness h;
  ASSERT_TRUE(h.ok());
  h.stand_in().pause();
  TestClient c(h.port());
  Bytes s;
  for (uint64_t i = 1; i <= 3; ++i) testing::append(s, transaction_frame(i, 6));
  ASSERT_TRUE(c.send(s));
  ASSERT_TRUE(eventually([&] { return h.counters().events_journaled.get() == 3; }));
  h.server().refuse_input("journal: write failed (No space left on device)");
  h.stand_in().resume();
  std::vector<Frame> before;
  std::optional<Frame> err;
  for (;;) {
    std::optional<Frame> f = c.read_frame();
    ASSERT_TRUE(f);
    if (f->is(wire::FrameType::kError)) {
      err = f;
      break;
    }
    before.push_back(*f);
  }
  EXPECT_EQ(before.size(), 3u);
  EXPECT_EQ(err->error_code(), static_cast<uint16_t>(wire::ErrorCode::kInputRefused));
  EXPECT_NE(err->error_text().find("No space left"), std::string::npos) << err->error_text();
  EXPECT_TRUE(c.at_eof());
  TestClient late(h.port());
  ASSERT_TRUE(late.send(transaction_frame(1, 6)));
  EXPECT_EQ(expect_error(late), static_cast<uint16_t>(wire::ErrorCode::kInputRefused));
  EXPECT_EQ(h.counters().events_journaled.get(), 3);
}

// A client that keeps sending and reads slowly, with its window shut: when input is refused,
// its answers and the ERROR sit in the server's kernel send queue (a large one here, so the
// server's sends complete at once and it shuts its side and lingers). Closing at the plain
// linger deadline, with the client's input unread, would reset the connection and throw them
// away; the server lingers until the client has taken them.
TEST(NetworkServer, ALingeringConnectionWaitsForAClientThatReadsSlowly) {
  HarnessConfig cfg;
  cfg.options = test_options();
  cfg.options.linger_ns = 100'000'000;
  cfg.options.send_buffer_bytes = 256 << 10;
  Harness h(cfg);
  ASSERT_TRUE(h.ok());
  TestClient c(h.port(), /*rcvbuf=*/4096);
  constexpr uint64_t kAnswered = 3000;  // 84 KB of decisions: past the client's buffer
  Bytes s;
  for (uint64_t i = 1; i <= kAnswered; ++i) testing::append(s, transaction_frame(i, 6));
  ASSERT_TRUE(c.send(s));
  ASSERT_TRUE(eventually([&] { return h.counters().decisions_sent.get() == kAnswered; }));
  h.server().refuse_input("journal: write failed (No space left on device)");
  // Input keeps coming while the client is not reading (the server discards it).
  std::atomic<bool> flooding{true};
  std::thread flood([&] {
    uint64_t seq = kAnswered;
    while (flooding.load()) {
      Bytes more;
      for (int k = 0; k < 64; ++k) testing::append(more, transaction_frame(++seq, 6));
      if (!c.send(more)) break;
    }
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(600));  // six linger periods
  EXPECT_EQ(h.counters().connections_open.get(), 1) << "closed before the client read its answers";
  flooding.store(false);
  flood.join();
  std::vector<Frame> before;
  EXPECT_EQ(expect_error(c, &before), static_cast<uint16_t>(wire::ErrorCode::kInputRefused));
  ASSERT_EQ(before.size(), kAnswered);
  for (uint64_t i = 0; i < kAnswered; ++i) ASSERT_EQ(before[i].decision().client_seq, i + 1);
  EXPECT_TRUE(c.at_eof());
  c.close();
  ASSERT_TRUE(eventually([&] { return h.counters().connections_open.get() == 0; }));
}

// ... but not forever: past linger_limit_ns a client that never reads is closed.
TEST(NetworkServer, ALingeringConnectionIsClosedAtItsLimitIfTheClientNeverReads) {
  HarnessConfig cfg;
  cfg.options = test_options();
  cfg.options.linger_ns = 50'000'000;
  cfg.options.linger_limit_ns = 500'000'000;
  cfg.options.send_buffer_bytes = 256 << 10;
  Harness h(cfg);
  ASSERT_TRUE(h.ok());
  TestClient c(h.port(), /*rcvbuf=*/4096);
  Bytes s;
  for (uint64_t i = 1; i <= 3000; ++i) testing::append(s, transaction_frame(i, 6));
  ASSERT_TRUE(c.send(s));
  ASSERT_TRUE(eventually([&] { return h.counters().decisions_sent.get() == 3000; }));
  h.server().refuse_input("journal: write failed (No space left on device)");
  std::this_thread::sleep_for(std::chrono::milliseconds(200));  // four linger periods
  EXPECT_EQ(h.counters().connections_closed.get(), 0);
  ASSERT_TRUE(eventually([&] { return h.counters().connections_closed.get() == 1; }));
  ASSERT_TRUE(eventually([&] { return h.counters().connections_open.get() == 0; }));
}

TEST(NetworkServer, WakeEndsAParkedWait) {
  HarnessConfig cfg;
  cfg.options = test_options();
  cfg.stand_in = false;
  Harness h(cfg);
  ASSERT_TRUE(h.ok());
  ManualShards shards(h);
  TestClient c(h.port());
  ASSERT_TRUE(c.send(transaction_frame(1, 3)));
  const InputEvent e = shards.take();
  // The server thread parks in wait(1 ms) loops; ManualShards::decide() wakes it. Either way
  // the decision must arrive: this checks the wake path does not lose it.
  for (int i = 0; i < 50; ++i) {
    shards.decide(i % 2, e);
    if (i == 0) {
      EXPECT_EQ(expect_decision(c).client_seq, 1u);
    }
  }
  ASSERT_TRUE(eventually([&] { return h.counters().decisions_gone.get() == 49; }));
}

TEST(NetworkServer, LatencyIsRecordedForEveryDecisionWithAReceiveTime) {
  Harness h;
  ASSERT_TRUE(h.ok());
  TestClient c(h.port());
  for (uint64_t i = 1; i <= 10; ++i) {
    ASSERT_TRUE(c.send(transaction_frame(i, 2)));
    expect_decision(c);
  }
  h.stop();
  EXPECT_EQ(h.server().latency().total_count(), 10);
  EXPECT_GT(h.server().latency().min(), 0);
}

TEST(NetworkServer, CreateReportsBadOptionsAndBusyAddresses) {
  IdleWaitStrategy wait(IdleConfig{.kind = IdleKind::kYield});
  InputRing input(8, wait);
  OutputRing output(8, wait);
  NetworkOptions o = test_options();
  o.max_connections = 0;
  EXPECT_FALSE(NetworkServer::create(o, 1, {}, input, {&output}).ok());
  o = test_options();
  EXPECT_FALSE(NetworkServer::create(o, 0, {}, input, {&output}).ok());
  o.listen = "no-port";
  EXPECT_FALSE(NetworkServer::create(o, 1, {}, input, {&output}).ok());
  auto first = NetworkServer::create(test_options(), 1, {}, input, {&output});
  ASSERT_TRUE(first.ok()) << first.status();
  o = test_options();
  o.listen = "127.0.0.1:" + std::to_string((*first)->port());
  auto second = NetworkServer::create(o, 1, {}, input, {&output});
  ASSERT_FALSE(second.ok());
  EXPECT_NE(std::string(second.status().message()).find(o.listen), std::string::npos)
      << second.status();
}

}  // namespace
}  // namespace sluice
