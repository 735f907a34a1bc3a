// Runs the built `sluice` binary (SLUICE_TOOL_PATH): `sluice load` against a fake daemon on
// loopback, and `sluice floor`. Checks what they print (the JSON parsed, the .hgrm file) and
// how they exit (0 ok, 1 failed run, 2 bad usage).
#include <fcntl.h>
#include <poll.h>
#include <pty.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cctype>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_split.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/tools/tool_run.h"
#include "tests/tools/fake_sluice_server.h"

extern char** environ;

namespace sluice::tools {
namespace {

using ::sluice::testing::FakeServerConfig;
using ::sluice::testing::FakeSluiceServer;
using ::testing::AllOf;
using ::testing::HasSubstr;
using ::testing::StartsWith;

// ---- A small JSON reader: enough to check the tools' output field by field -----------------

struct Json {
  enum class Kind { kNull, kBool, kNumber, kString, kArray, kObject };
  Kind kind = Kind::kNull;
  bool boolean = false;
  double number = 0;
  bool integral = false;  // written without a fraction or exponent
  int64_t integer = 0;
  std::string text;
  std::vector<Json> items;
  std::map<std::string, Json> fields;

  bool has(const std::string& key) const { return fields.count(key) != 0; }
  const Json& operator[](const std::string& key) const { return fields.at(key); }
};

class JsonParser {
 public:
  explicit JsonParser(std::string_view s) : s_(s) {}

  // Parses exactly one value filling the whole input (whitespace aside); false on any error.
  bool parse(Json* out) {
    if (!value(out)) return false;
    skip();
    return pos_ == s_.size();
  }

 private:
  void skip() {
    while (pos_ < s_.size() && std::isspace(static_cast<unsigned char>(s_[pos_]))) ++pos_;
  }
  bool eat(char c) {
    skip();
    if (pos_ < s_.size() && s_[pos_] == c) {
      ++pos_;
      return true;
    }
    return false;
  }
  bool literal(std::string_view word) {
    if (s_.substr(pos_, word.size()) != word) return false;
    pos_ += word.size();
    return true;
  }
  bool string(std::string* out) {
    if (!eat('"')) return false;
    while (pos_ < s_.size() && s_[pos_] != '"') {
      if (s_[pos_] == '\\') {
        if (++pos_ >= s_.size()) return false;
        const char e = s_[pos_];
        if (e == 'u') {
          if (pos_ + 4 >= s_.size()) return false;
          out->push_back(
              static_cast<char>(std::stoi(std::string(s_.substr(pos_ + 1, 4)), nullptr, 16)));
          pos_ += 4;
        } else {
          out->push_back(e == 'n' ? '\n' : e == 't' ? '\t' : e == 'r' ? '\r' : e);
        }
      } else {
        if (static_cast<unsigned char>(s_[pos_]) < 0x20) return false;
        out->push_back(s_[pos_]);
      }
      ++pos_;
    }
    if (pos_ >= s_.size()) return false;
    ++pos_;
    return true;
  }
  bool value(Json* out) {
    skip();
    if (pos_ >= s_.size()) return false;
    const char c = s_[pos_];
    if (c == '{') {
      out->kind = Json::Kind::kObject;
      ++pos_;
      if (eat('}')) return true;
      do {
        std::string key;
        Json v;
        if (!string(&key) || !eat(':') || !value(&v)) return false;
        if (out->fields.count(key) != 0) return false;  // duplicate keys are a bug here
        out->fields.emplace(std::move(key), std::move(v));
      } while (eat(','));
      return eat('}');
    }
    if (c == '[') {
      out->kind = Json::Kind::kArray;
      ++pos_;
      if (eat(']')) return true;
      do {
        Json v;
        if (!value(&v)) return false;
        out->items.push_back(std::move(v));
      } while (eat(','));
      return eat(']');
    }
    if (c == '"') {
      out->kind = Json::Kind::kString;
      return string(&out->text);
    }
    if (literal("true") || literal("false")) {
      out->kind = Json::Kind::kBool;
      out->boolean = s_[pos_ - 1] == 'e' && s_[pos_ - 2] == 'u';
      return true;
    }
    if (literal("null")) return true;
    const size_t start = pos_;
    if (s_[pos_] == '-') ++pos_;
    bool fraction = false;
    while (pos_ < s_.size() &&
           (std::isdigit(static_cast<unsigned char>(s_[pos_])) || s_[pos_] == '.' ||
            s_[pos_] == 'e' || s_[pos_] == 'E' || s_[pos_] == '+' || s_[pos_] == '-')) {
      fraction |= !std::isdigit(static_cast<unsigned char>(s_[pos_]));
      ++pos_;
    }
    const std::string number(s_.substr(start, pos_ - start));
    if (number.empty() || number == "-") return false;
    out->kind = Json::Kind::kNumber;
    out->number = std::strtod(number.c_str(), nullptr);
    out->integral = !fraction;
    if (out->integral) out->integer = std::strtoll(number.c_str(), nullptr, 10);
    return true;
  }

  std::string_view s_;
  size_t pos_ = 0;
};

// ---- Running the tool --------------------------------------------------------------------------

using sluice::testing::read_file;
using sluice::testing::ToolRun;

class SluiceLoadCli : public ::testing::Test {
 protected:
  void SetUp() override {
    const ::testing::TestInfo* info = ::testing::UnitTest::GetInstance()->current_test_info();
    root_ = (std::filesystem::temp_directory_path() /
             (std::string("sluice_load_cli_") + info->name() + "_" + std::to_string(::getpid())))
                .string();
    std::filesystem::remove_all(root_);
    std::filesystem::create_directories(root_);
  }
  void TearDown() override { std::filesystem::remove_all(root_); }

  ToolRun run(const std::vector<std::string>& args) {
    return sluice::testing::run_tool(SLUICE_TOOL_PATH, args, root_);
  }

  std::string root_;
};

// Parses stdout as exactly one JSON object on one line.
Json parse_json_line(const std::string& out) {
  EXPECT_FALSE(out.empty());
  EXPECT_EQ(out.back(), '\n');
  EXPECT_EQ(out.find('\n'), out.size() - 1) << "more than one line:\n" << out;
  Json json;
  EXPECT_TRUE(JsonParser(out).parse(&json)) << "not JSON: " << out;
  EXPECT_EQ(json.kind, Json::Kind::kObject);
  return json;
}

void expect_integer(const Json& j, const std::string& key) {
  ASSERT_TRUE(j.has(key)) << key;
  EXPECT_EQ(j[key].kind, Json::Kind::kNumber) << key;
  EXPECT_TRUE(j[key].integral) << key << " is not an integer";
}

// The SPEC 3 fields and types, shared by load and floor.
void expect_report_shape(const Json& j) {
  for (const char* key : {"rate_target", "rate_achieved"}) {
    ASSERT_TRUE(j.has(key)) << key;
    EXPECT_EQ(j[key].kind, Json::Kind::kNumber) << key;
  }
  for (const char* key : {"sent", "decided", "errors"}) expect_integer(j, key);
  ASSERT_TRUE(j.has("latency_ns"));
  const Json& l = j["latency_ns"];
  ASSERT_EQ(l.kind, Json::Kind::kObject);
  for (const char* key : {"p50", "p90", "p99", "p999", "p9999", "max"}) expect_integer(l, key);
  EXPECT_LE(l["p50"].integer, l["p90"].integer);
  EXPECT_LE(l["p90"].integer, l["p99"].integer);
  EXPECT_LE(l["p99"].integer, l["p999"].integer);
  EXPECT_LE(l["p999"].integer, l["p9999"].integer);
  EXPECT_LE(l["p9999"].integer, l["max"].integer);
}

// ---- sluice load -------------------------------------------------------------------------------

TEST_F(SluiceLoadCli, JsonHasTheSpecFieldsAndSendsExactlyTheScheduledEvents) {
  FakeSluiceServer server;
  ASSERT_TRUE(server.ok());
  const ToolRun r = run({"load", "--target", server.target(), "--rate", "2000", "--duration", "2",
                         "--connections", "2", "--mix", "fraud", "--accounts", "1000", "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.err, "");
  const Json j = parse_json_line(r.out);
  expect_report_shape(j);
  EXPECT_EQ(j["rate_target"].number, 2000);
  EXPECT_EQ(j["sent"].integer, 4000);
  EXPECT_EQ(j["decided"].integer, 4000);
  EXPECT_EQ(j["errors"].integer, 0);
  EXPECT_EQ(j["missing"].integer, 0);
  EXPECT_EQ(j["measured"].integer, 4000);
  // The scheduler never runs ahead, and at 2000/s it does not fall far behind either.
  EXPECT_LE(j["rate_achieved"].number, 2002);
  EXPECT_GE(j["rate_achieved"].number, 1600);
  EXPECT_GT(j["latency_ns"]["p50"].integer, 0);
  // The fake flags every tenth client_seq.
  EXPECT_EQ(j["verdicts"]["FLAG"].integer, 400);
  EXPECT_EQ(j["verdicts"]["ACCEPT"].integer, 3600);
  EXPECT_EQ(j["connections"].integer, 2);
  EXPECT_EQ(j["mix"].text, "fraud");
  EXPECT_EQ(j["error_messages"].items.size(), 0u);
}

TEST_F(SluiceLoadCli, TextReportShowsRatesPercentilesAndVerdicts) {
  FakeSluiceServer server;
  ASSERT_TRUE(server.ok());
  const ToolRun r = run({"load", "--target", server.target(), "--rate", "1000", "--duration", "0.2",
                         "--mix", "risk"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, AllOf(HasSubstr("sent 200 of 200, decided 200, missing 0, errors 0"),
                           HasSubstr("latency, intended send time to decision (200 events)"),
                           HasSubstr("p99.99 "), HasSubstr("REJECT=20")));
}

TEST_F(SluiceLoadCli, HgrmFileIsAPercentileDistributionOfEveryMeasuredEvent) {
  FakeSluiceServer server;
  ASSERT_TRUE(server.ok());
  const std::string hgrm = root_ + "/latency.hgrm";
  const ToolRun r = run({"load", "--target", server.target(), "--rate", "2000", "--duration", "0.5",
                         "--warmup", "0.1", "--hgrm", hgrm, "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const Json j = parse_json_line(r.out);
  EXPECT_EQ(j["decided"].integer, 1200);
  EXPECT_EQ(j["measured"].integer, 1000);
  const std::string text = read_file(hgrm);
  const std::vector<std::string> lines = absl::StrSplit(text, '\n', absl::SkipEmpty());
  ASSERT_GT(lines.size(), 10u);
  EXPECT_EQ(lines[0], "       Value     Percentile TotalCount 1/(1-Percentile)");
  // Data lines: value (us), percentile, cumulative count, 1/(1-p); the percentile grows to 1.
  double last_percentile = -1;
  int64_t last_count = 0;
  size_t data_lines = 0;
  for (const std::string& line : lines) {
    if (line[0] == '#' || line == lines[0]) continue;
    std::istringstream in(line);
    double value = 0;
    double percentile = 0;
    int64_t count = 0;
    ASSERT_TRUE(in >> value >> percentile >> count) << line;
    EXPECT_GT(value, 0) << line;
    EXPECT_GE(percentile, last_percentile) << line;
    EXPECT_GE(count, last_count) << line;
    last_percentile = percentile;
    last_count = count;
    ++data_lines;
  }
  EXPECT_GT(data_lines, 5u);
  EXPECT_EQ(last_percentile, 1.0);
  EXPECT_EQ(last_count, 1000);
  EXPECT_THAT(text, HasSubstr("#[Mean    = "));
  EXPECT_THAT(text, HasSubstr("Total count    =         1000]"));
  // Values are microseconds: the max line agrees with the JSON max in ns.
  const size_t max_at = text.find("#[Max     = ");
  ASSERT_NE(max_at, std::string::npos);
  const double max_us = std::strtod(text.c_str() + max_at + 12, nullptr);
  EXPECT_NEAR(max_us, static_cast<double>(j["latency_ns"]["max"].integer) / 1000.0, 0.001);
}

TEST_F(SluiceLoadCli, MissingDecisionsExitOneNamingTheTargetAndConnection) {
  FakeSluiceServer server(FakeServerConfig{.drop_every = 50});
  ASSERT_TRUE(server.ok());
  const ToolRun r = run({"load", "--target", server.target(), "--rate", "1000", "--duration", "0.5",
                         "--connections", "2", "--drain-timeout", "1", "--json"});
  EXPECT_EQ(r.exit_code, 1);
  const Json j = parse_json_line(r.out);
  EXPECT_EQ(j["sent"].integer, 500);
  EXPECT_EQ(j["decided"].integer, 490);
  EXPECT_EQ(j["missing"].integer, 10);
  const std::vector<std::string> errors = absl::StrSplit(r.err, '\n', absl::SkipEmpty());
  ASSERT_EQ(errors.size(), 2u) << r.err;
  EXPECT_THAT(errors[0], AllOf(StartsWith("sluice: load: connection 0 to " + server.target()),
                               HasSubstr("5 of 250 events got no DECISION within the 1 s drain "
                                         "timeout")));
  EXPECT_THAT(errors[1], StartsWith("sluice: load: connection 1 to " + server.target()));
}

TEST_F(SluiceLoadCli, ClosedConnectionExitsOne) {
  FakeSluiceServer server(FakeServerConfig{.close_after = 20});
  ASSERT_TRUE(server.ok());
  const ToolRun r =
      run({"load", "--target", server.target(), "--rate", "1000", "--duration", "0.3"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, AllOf(StartsWith("sluice: load: connection 0 to " + server.target()),
                           HasSubstr("closed by the server after")));
}

TEST_F(SluiceLoadCli, AServerStallShowsInTheHighPercentiles) {
  FakeSluiceServer server(FakeServerConfig{.stall_after = 1000, .stall_ms = 300});
  ASSERT_TRUE(server.ok());
  const ToolRun r =
      run({"load", "--target", server.target(), "--rate", "2000", "--duration", "2", "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const Json j = parse_json_line(r.out);
  EXPECT_EQ(j["decided"].integer, 4000);
  // ~600 of the 4000 events were scheduled during the stall; the slowest waited ~300 ms.
  EXPECT_GE(j["latency_ns"]["p99"].integer, 100'000'000);
  EXPECT_GE(j["latency_ns"]["max"].integer, 250'000'000);
}

TEST_F(SluiceLoadCli, RefusedConnectionExitsOne) {
  uint16_t port = 0;
  {
    FakeSluiceServer closed;
    port = closed.port();
  }
  const ToolRun r = run(
      {"load", "--target", "127.0.0.1:" + std::to_string(port), "--rate", "10", "--duration", "1"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err,
              AllOf(StartsWith("sluice: load: connection 0 to 127.0.0.1:" + std::to_string(port)),
                    HasSubstr("connect")));
  EXPECT_EQ(r.err.find('\n'), r.err.size() - 1) << "one line: " << r.err;
}

TEST_F(SluiceLoadCli, BadUsageExitsTwo) {
  const std::vector<std::vector<std::string>> cases = {
      {"load"},  // --target is required
      {"load", "--target", "localhost"},
      {"load", "--target", "localhost:99999"},
      {"load", "--target", "127.0.0.1:7700", "--rate", "0"},
      {"load", "--target", "127.0.0.1:7700", "--rate", "-5"},
      {"load", "--target", "127.0.0.1:7700", "--rate", "fast"},
      {"load", "--target", "127.0.0.1:7700", "--duration", "0"},
      {"load", "--target", "127.0.0.1:7700", "--connections", "0"},
      {"load", "--target", "127.0.0.1:7700", "--connections", "2", "--threads", "3"},
      {"load", "--target", "127.0.0.1:7700", "--mix", "payments"},
      {"load", "--target", "127.0.0.1:7700", "--accounts", "0"},
      {"load", "--target", "127.0.0.1:7700", "--skew", "-1"},
      {"load", "--target", "127.0.0.1:7700", "--no-such-flag"},
      {"load", "--target", "127.0.0.1:7700", "--hgrm-unit", "parsecs"},
      {"floor", "--size", "4"},
      {"floor", "--duration", "0"},
      {"floor", "--rate", "-1"},
  };
  for (const std::vector<std::string>& args : cases) {
    const ToolRun r = run(args);
    std::string joined;
    for (const std::string& a : args) joined += a + " ";
    EXPECT_EQ(r.exit_code, 2) << joined << "\n" << r.err;
    EXPECT_THAT(r.err, StartsWith("sluice: ")) << joined;
    EXPECT_EQ(r.err.find('\n'), r.err.size() - 1) << joined << ": not one line: " << r.err;
    EXPECT_EQ(r.out, "") << joined;
  }
}

// On a terminal, a progress line on stderr is redrawn once a second (and cleared at the end);
// the JSON on stdout is unchanged by it.
TEST_F(SluiceLoadCli, ProgressLineIsDrawnOnlyOnATerminal) {
  FakeSluiceServer server;
  ASSERT_TRUE(server.ok());
  int master = -1;
  int slave = -1;
  ASSERT_EQ(::openpty(&master, &slave, nullptr, nullptr, nullptr), 0) << std::strerror(errno);
  const std::string out_path = root_ + "/stdout";
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 1, out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC,
                                   0644);
  posix_spawn_file_actions_adddup2(&actions, slave, 2);
  posix_spawn_file_actions_addclose(&actions, master);
  std::vector<std::string> args = {SLUICE_TOOL_PATH, "load",   "--target",
                                   server.target(),  "--rate", "1000",
                                   "--duration",     "2.5",    "--json"};
  std::vector<char*> argv;
  for (std::string& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  pid_t pid = 0;
  ASSERT_EQ(posix_spawn(&pid, SLUICE_TOOL_PATH, &actions, nullptr, argv.data(), environ), 0);
  posix_spawn_file_actions_destroy(&actions);
  ::close(slave);
  std::string progress;
  char buffer[4096];
  while (true) {
    pollfd p{master, POLLIN, 0};
    if (::poll(&p, 1, 30'000) <= 0) break;
    const ssize_t n = ::read(master, buffer, sizeof(buffer));
    if (n <= 0) break;  // EIO once the child closed its end
    progress.append(buffer, static_cast<size_t>(n));
  }
  ::close(master);
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0) << progress;
  EXPECT_THAT(progress, HasSubstr(" s  sent "));
  EXPECT_THAT(progress, HasSubstr("  decided "));
  EXPECT_THAT(progress, HasSubstr("\r\033[K"));
  const Json j = parse_json_line(read_file(out_path));
  EXPECT_EQ(j["decided"].integer, 2500);
}

// SIGINT cuts the schedule short: what was scheduled is drained and reported, and the run
// still passes if every scheduled event got its DECISION.
TEST_F(SluiceLoadCli, InterruptStopsTheScheduleDrainsAndReports) {
  FakeSluiceServer server;
  ASSERT_TRUE(server.ok());
  const std::string out_path = root_ + "/stdout";
  const std::string err_path = root_ + "/stderr";
  const pid_t pid = sluice::testing::spawn_tool(
      SLUICE_TOOL_PATH, {"load", "--target", server.target(), "--rate", "1000", "--duration", "60", "--json"},
      out_path, err_path);
  ASSERT_GT(pid, 0);
  // Interrupt once the run is under way (the fake has seen events), not during start-up.
  const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (std::chrono::steady_clock::now() < give_up) {
    const std::vector<sluice::testing::FakeConnectionLog> log = server.log();
    if (!log.empty() && log[0].client_seqs.size() >= 100) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  ASSERT_EQ(::kill(pid, SIGINT), 0);
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status)) << "killed by signal " << WTERMSIG(status);
  EXPECT_EQ(WEXITSTATUS(status), 0) << read_file(err_path);
  EXPECT_THAT(read_file(err_path), HasSubstr("interrupted"));
  const Json j = parse_json_line(read_file(out_path));
  EXPECT_GE(j["sent"].integer, 100);
  EXPECT_LT(j["sent"].integer, 60'000);
  EXPECT_EQ(j["decided"].integer, j["sent"].integer);
  EXPECT_EQ(j["missing"].integer, 0);
}

// ---- sluice floor ------------------------------------------------------------------------------

TEST_F(SluiceLoadCli, FloorPrintsTheSameJsonShapeWithSaneRoundTrips) {
  const std::string hgrm = root_ + "/floor.hgrm";
  const ToolRun r = run({"floor", "--rate", "2000", "--duration", "0.3", "--json", "--hgrm", hgrm});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const Json j = parse_json_line(r.out);
  expect_report_shape(j);
  EXPECT_EQ(j["sent"].integer, 600);
  EXPECT_EQ(j["decided"].integer, 600);
  EXPECT_EQ(j["errors"].integer, 0);
  EXPECT_EQ(j["size"].integer, 44);
  EXPECT_EQ(j["mode"].text, "blocking");
  // A loopback round trip takes at least a microsecond and well under the test's patience.
  EXPECT_GE(j["latency_ns"]["p50"].integer, 1'000);
  EXPECT_LT(j["latency_ns"]["p50"].integer, 1'000'000'000);
  EXPECT_LE(j["rate_achieved"].number, 2002);
  EXPECT_THAT(read_file(hgrm), HasSubstr("Total count    =          600]"));
}

TEST_F(SluiceLoadCli, FloorBackToBackRunsForTheDuration) {
  const ToolRun r = run({"floor", "--rate", "0", "--duration", "0.2", "--size", "128", "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const Json j = parse_json_line(r.out);
  expect_report_shape(j);
  EXPECT_GT(j["sent"].integer, 0);
  EXPECT_EQ(j["sent"].integer, j["decided"].integer);
  EXPECT_EQ(j["size"].integer, 128);
  EXPECT_EQ(j["rate_target"].number, 0);
}

// The disk's floor: real pwrite + fdatasync into the given directory, the file removed after.
TEST_F(SluiceLoadCli, FloorFdatasyncMeasuresTheDiskAndCleansUp) {
  const ToolRun r = run({"floor", "--fdatasync", root_, "--rate", "200", "--duration", "0.25",
                         "--size", "4096", "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const Json j = parse_json_line(r.out);
  expect_report_shape(j);
  EXPECT_EQ(j["mode"].text, "fdatasync");
  EXPECT_EQ(j["sent"].integer, 50);
  EXPECT_EQ(j["decided"].integer, 50);
  EXPECT_EQ(j["size"].integer, 4096);
  EXPECT_GT(j["latency_ns"]["p50"].integer, 0);
  for (const auto& entry : std::filesystem::directory_iterator(root_)) {
    EXPECT_EQ(entry.path().filename().string().find("sluice-floor-"), std::string::npos)
        << entry.path();
  }
  const ToolRun missing = run({"floor", "--fdatasync", root_ + "/no/such/dir", "--duration", "0.1"});
  EXPECT_EQ(missing.exit_code, 1);
  EXPECT_THAT(missing.err, HasSubstr(root_ + "/no/such/dir"));
}

}  // namespace
}  // namespace sluice::tools
