// Runs the real sluiced as a child process on loopback for the integration tests, and speaks
// the wire protocol to it over real sockets.
//
// The daemon is started on ephemeral ports (port 0) in a fresh data directory; once it listens
// it writes <data>/listening ("binary HOST:PORT", "text ...", "udp ...", "metrics ..." lines),
// which is how the harness learns its ports and that it is ready.
#ifndef SLUICE_TESTS_DAEMON_DAEMON_HARNESS_H_
#define SLUICE_TESTS_DAEMON_DAEMON_HARNESS_H_

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "core/wire_format.h"
#include "tests/tools/tool_run.h"

namespace sluice::testing {

// Generous: a loaded 2-core CI machine running sanitizers must never trip these.
inline constexpr auto kStartTimeout = std::chrono::seconds(60);
inline constexpr int kReplyTimeoutMs = 30'000;

inline std::string make_scratch_dir(const char* what) {
  std::string tmpl = (std::filesystem::temp_directory_path() / (std::string("sluice-") + what + "-XXXXXX")).string();
  return ::mkdtemp(tmpl.data());
}

class Daemon {
 public:
  // `scratch` holds the data directory ("data") and the daemon's stdout/stderr.
  explicit Daemon(std::string scratch) : scratch_(std::move(scratch)), data_(scratch_ + "/data") {}
  ~Daemon() {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      wait_tool(pid_);
    }
  }

  const std::string& data_dir() const { return data_; }
  std::string log() const { return read_file(scratch_ + "/sluiced.err"); }
  pid_t pid() const { return pid_; }

  // Starts sluiced with the extra args; true once it listens. On failure the log says why.
  // `wrapper` (e.g. {"/usr/bin/prlimit", "--fsize=N", "--"}) runs sluiced under another program.
  bool start(std::vector<std::string> extra = {}, std::vector<std::string> wrapper = {}) {
    std::filesystem::remove(data_ + "/listening");
    std::vector<std::string> args = {"--data-dir", data_, "--listen", "127.0.0.1:0",
                                     "--text-listen", "127.0.0.1:0"};
    args.insert(args.end(), extra.begin(), extra.end());
    std::string program = SLUICED_PATH;
    if (!wrapper.empty()) {
      program = wrapper.front();
      args.insert(args.begin(), SLUICED_PATH);
      args.insert(args.begin(), wrapper.begin() + 1, wrapper.end());
    }
    pid_ = spawn_tool(program, args, scratch_ + "/sluiced.out", scratch_ + "/sluiced.err");
    if (pid_ <= 0) return false;
    const auto deadline = std::chrono::steady_clock::now() + kStartTimeout;
    while (std::chrono::steady_clock::now() < deadline) {
      int status = 0;
      if (::waitpid(pid_, &status, WNOHANG) == pid_) {  // it died while starting
        exit_code_ = WIFSIGNALED(status) ? 128 + WTERMSIG(status) : WEXITSTATUS(status);
        pid_ = -1;
        return false;
      }
      if (read_listening()) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return false;
  }

  // Runs sluiced to completion (for start-up errors); returns its exit status.
  int run_to_exit(std::vector<std::string> args) {
    const pid_t pid = spawn_tool(SLUICED_PATH, args, scratch_ + "/sluiced.out", scratch_ + "/sluiced.err");
    return wait_tool(pid);
  }

  // Waits for the daemon to exit by itself (up to `timeout`); its exit status, or -1.
  int wait_exit(std::chrono::seconds timeout) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (pid_ > 0 && std::chrono::steady_clock::now() < deadline) {
      int status = 0;
      if (::waitpid(pid_, &status, WNOHANG) == pid_) {
        exit_code_ = WIFSIGNALED(status) ? 128 + WTERMSIG(status) : WEXITSTATUS(status);
        pid_ = -1;
        return exit_code_;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return pid_ > 0 ? -1 : exit_code_;
  }

  // SIGTERM and wait: the exit status.
  int stop() {
    if (pid_ <= 0) return exit_code_;
    ::kill(pid_, SIGTERM);
    exit_code_ = wait_tool(pid_);
    pid_ = -1;
    return exit_code_;
  }
  // SIGKILL and wait.
  void kill() {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGKILL);
    exit_code_ = wait_tool(pid_);
    pid_ = -1;
  }
  bool running() const { return pid_ > 0 && ::kill(pid_, 0) == 0; }
  int exit_code() const { return exit_code_; }

  uint16_t port(const std::string& what) const {
    auto it = ports_.find(what);
    return it == ports_.end() ? 0 : it->second;
  }

 private:
  bool read_listening() {
    const std::string text = read_file(data_ + "/listening");
    if (text.empty() || text.back() != '\n') return false;
    ports_.clear();
    for (absl::string_view line : absl::StrSplit(text, '\n', absl::SkipEmpty())) {
      std::vector<absl::string_view> f = absl::StrSplit(line, ' ');
      if (f.size() != 2) continue;
      const size_t colon = f[1].rfind(':');
      uint32_t port = 0;
      if (colon != absl::string_view::npos && absl::SimpleAtoi(f[1].substr(colon + 1), &port)) {
        ports_[std::string(f[0])] = static_cast<uint16_t>(port);
      }
    }
    return ports_.count("binary") == 1;
  }

  std::string scratch_;
  std::string data_;
  pid_t pid_ = -1;
  int exit_code_ = -1;
  std::map<std::string, uint16_t> ports_;
};

// A blocking TCP client of the binary (or text) protocol.
class Client {
 public:
  explicit Client(uint16_t port) {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::connect(fd_, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0) {
      ::close(fd_);
      fd_ = -1;
      return;
    }
    const int one = 1;
    ::setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  }
  ~Client() { close(); }
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  bool connected() const { return fd_ >= 0; }
  void close() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }
  int fd() const { return fd_; }

  bool send_bytes(const void* data, size_t n) {
    const char* p = static_cast<const char*>(data);
    while (n > 0) {
      const ssize_t k = ::send(fd_, p, n, MSG_NOSIGNAL);
      if (k < 0 && errno == EINTR) continue;
      if (k <= 0) return false;
      p += k;
      n -= static_cast<size_t>(k);
    }
    return true;
  }
  bool send_text(const std::string& s) { return send_bytes(s.data(), s.size()); }

  template <typename M>
  bool send(const M& m) {
    std::byte buf[wire::kMaxFrameSize];
    const size_t n = wire::encode(m, buf);
    return send_bytes(buf, n);
  }

  // Reads exactly n bytes; false on EOF, error or timeout.
  bool read_exact(void* out, size_t n, int timeout_ms = kReplyTimeoutMs) {
    char* p = static_cast<char*>(out);
    while (n > 0) {
      if (buffered_.empty()) {
        pollfd pfd{fd_, POLLIN, 0};
        if (::poll(&pfd, 1, timeout_ms) <= 0) return false;
        char buf[65536];
        const ssize_t k = ::recv(fd_, buf, sizeof(buf), 0);
        if (k <= 0) {
          eof_ = true;
          return false;
        }
        buffered_.append(buf, static_cast<size_t>(k));
      }
      const size_t take = std::min(n, buffered_.size());
      std::memcpy(p, buffered_.data(), take);
      buffered_.erase(0, take);
      p += take;
      n -= take;
    }
    return true;
  }

  // The next whole frame, or nullopt (EOF / timeout).
  std::optional<std::vector<std::byte>> read_frame(int timeout_ms = kReplyTimeoutMs) {
    std::byte header[wire::kHeaderSize];
    if (!read_exact(header, sizeof(header), timeout_ms)) return std::nullopt;
    const wire::FrameHeader h = wire::decode_header(header);
    if (h.length < wire::kHeaderSize) return std::nullopt;
    std::vector<std::byte> frame(h.length);
    std::memcpy(frame.data(), header, sizeof(header));
    if (!read_exact(frame.data() + wire::kHeaderSize, h.length - wire::kHeaderSize, timeout_ms)) {
      return std::nullopt;
    }
    return frame;
  }

  // The next text line without its newline, or nullopt.
  std::optional<std::string> read_line(int timeout_ms = kReplyTimeoutMs) {
    std::string line;
    char c;
    while (read_exact(&c, 1, timeout_ms)) {
      if (c == '\n') return line;
      line.push_back(c);
    }
    return std::nullopt;
  }

  // True once the server closed the connection (reads drain what it sent first).
  bool closed_by_server(int timeout_ms = kReplyTimeoutMs) {
    char c;
    while (read_exact(&c, 1, timeout_ms)) {
    }
    return eof_;
  }

  // HELLO and its HELLO_ACK; the ack's last_client_seq, or nullopt.
  std::optional<uint64_t> hello(uint64_t client_id) {
    if (!send(wire::Hello{client_id, 0})) return std::nullopt;
    auto f = read_frame();
    if (!f || wire::decode_header(f->data()).type != static_cast<uint8_t>(wire::FrameType::kHelloAck)) {
      return std::nullopt;
    }
    return wire::decode_hello_ack(*f).last_client_seq;
  }

 private:
  int fd_ = -1;
  std::string buffered_;
  bool eof_ = false;
};

inline uint8_t frame_type(const std::vector<std::byte>& f) { return wire::decode_header(f.data()).type; }

}  // namespace sluice::testing

#endif  // SLUICE_TESTS_DAEMON_DAEMON_HARNESS_H_
