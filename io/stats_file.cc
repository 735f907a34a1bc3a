#include "io/stats_file.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "core/absl_compat.h"
#include "core/clock.h"
#include "io/io_error.h"

namespace sluice {
namespace {

constexpr size_t kPage = 4096;

constexpr size_t page_round(size_t n) { return (n + kPage - 1) / kPage * kPage; }

// The header's pages; the blocks' data starts after them.
constexpr size_t kHeaderBytes = page_round(sizeof(StatsHeader));

void copy_name(char* dst, size_t size, std::string_view name) {
  std::memset(dst, 0, size);
  std::memcpy(dst, name.data(), std::min(name.size(), size - 1));
}

std::string read_name(const char* src, size_t size) {
  return std::string(src, strnlen(src, size));
}

}  // namespace

std::string_view daemon_state_name(DaemonState state) {
  switch (state) {
    case DaemonState::kStarting: return "starting";
    case DaemonState::kRecovering: return "recovering";
    case DaemonState::kRunning: return "running";
    case DaemonState::kStopping: return "stopping";
    case DaemonState::kStopped: return "stopped";
    case DaemonState::kFailed: return "failed";
  }
  return "unknown";
}

absl::StatusOr<std::unique_ptr<StatsFile>> StatsFile::create(const std::string& path,
                                                            const StatsLayout& layout) {
  const size_t blocks = layout.counter_blocks.size() + layout.histograms.size();
  if (blocks > kStatsMaxBlocks) {
    return absl::InvalidArgumentError(
        absl::StrCat("stats file ", path, ": ", blocks, " blocks, at most ", kStatsMaxBlocks));
  }
  // Offsets first, so the file is sized once.
  std::vector<StatsBlockEntry> entries;
  size_t at = kHeaderBytes;
  for (const auto& b : layout.counter_blocks) {
    StatsBlockEntry e{};
    copy_name(e.name, sizeof(e.name), b.name);
    e.kind = StatsBlockKind::kCounters;
    e.fields = static_cast<uint32_t>(b.fields.size());
    e.offset = at;
    e.bytes = b.fields.size() * sizeof(Counter);
    e.names_offset = at + e.bytes;
    at = page_round(e.names_offset + b.fields.size() * kStatsFieldNameSize);
    entries.push_back(e);
  }
  for (const auto& name : layout.histograms) {
    StatsBlockEntry e{};
    copy_name(e.name, sizeof(e.name), name);
    e.kind = StatsBlockKind::kHistogram;
    e.offset = at;
    e.bytes = sizeof(SharedHistogram);
    at = page_round(at + e.bytes);
    entries.push_back(e);
  }
  const size_t size = at;

  // A fresh file (not truncating one a reader may have mapped: it would die of SIGBUS), renamed
  // over the old one once complete.
  const std::string tmp = path + ".tmp";
  const int fd = ::open(tmp.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return io_error(errno, "create stats file", tmp);
  if (::ftruncate(fd, static_cast<off_t>(size)) != 0) {
    const int err = errno;
    ::close(fd);
    return io_error(err, "size stats file", tmp);
  }
  void* base = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  const int map_errno = errno;
  ::close(fd);
  if (base == MAP_FAILED) return io_error(map_errno, "map stats file", tmp);

  std::unique_ptr<StatsFile> file(new StatsFile());
  file->path_ = path;
  file->base_ = base;
  file->size_ = size;
  auto* bytes = static_cast<std::byte*>(base);
  file->header_ = new (base) StatsHeader();
  StatsHeader& h = *file->header_;
  h.version = kStatsVersion;
  h.block_count = static_cast<uint32_t>(entries.size());
  h.pid = ::getpid();
  h.start_time_ns = realtime_ns();
  h.heartbeat_ns.set(h.start_time_ns);
  for (size_t i = 0; i < entries.size(); ++i) h.blocks[i] = entries[i];
  size_t i = 0;
  for (const auto& b : layout.counter_blocks) {
    const StatsBlockEntry& e = entries[i++];
    auto* counters = new (bytes + e.offset) Counter[b.fields.size()];
    file->counter_blocks_.emplace_back(counters, b.fields.size());
    for (size_t f = 0; f < b.fields.size(); ++f) {
      copy_name(reinterpret_cast<char*>(bytes + e.names_offset + f * kStatsFieldNameSize),
                kStatsFieldNameSize, b.fields[f]);
    }
  }
  for (size_t k = 0; k < layout.histograms.size(); ++k) {
    const StatsBlockEntry& e = entries[i++];
    file->histograms_.push_back(new (bytes + e.offset) SharedHistogram());
  }
  // Readers open the file by its name, which it only gets (rename) once complete.
  std::memcpy(h.magic, kStatsMagic, sizeof(h.magic));
  if (::rename(tmp.c_str(), path.c_str()) != 0) return io_error(errno, "rename stats file to", path);
  return file;
}

StatsFile::~StatsFile() {
  if (base_ != nullptr) ::munmap(base_, size_);
}

void StatsFile::heartbeat() noexcept { header_->heartbeat_ns.set(realtime_ns()); }

absl::StatusOr<std::unique_ptr<StatsView>> StatsView::open(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return io_error(errno, "open stats file", path);
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    const int err = errno;
    ::close(fd);
    return io_error(err, "stat stats file", path);
  }
  const auto size = static_cast<size_t>(st.st_size);
  if (size < kHeaderBytes) {
    ::close(fd);
    return absl::DataLossError(absl::StrCat(path, ": ", size, " bytes, too short for a stats file"));
  }
  const void* base = ::mmap(nullptr, size, PROT_READ, MAP_SHARED, fd, 0);
  const int map_errno = errno;
  ::close(fd);
  if (base == MAP_FAILED) return io_error(map_errno, "map stats file", path);
  std::unique_ptr<StatsView> view(new StatsView());
  view->path_ = path;
  view->base_ = base;
  view->size_ = size;
  view->header_ = static_cast<const StatsHeader*>(base);
  const StatsHeader& h = *view->header_;
  if (std::memcmp(h.magic, kStatsMagic, sizeof(h.magic)) != 0) {
    return absl::DataLossError(absl::StrCat(path, ": not a sluice stats file (bad magic)"));
  }
  if (h.version != kStatsVersion) {
    return absl::DataLossError(absl::StrCat(path, ": stats format version ", h.version,
                                            ", this build reads ", kStatsVersion));
  }
  if (h.block_count > kStatsMaxBlocks) {
    return absl::DataLossError(absl::StrCat(path, ": ", h.block_count, " blocks, at most ",
                                            kStatsMaxBlocks));
  }
  const auto* bytes = static_cast<const std::byte*>(base);
  for (uint32_t i = 0; i < h.block_count; ++i) {
    const StatsBlockEntry& e = h.blocks[i];
    const size_t names_end = e.kind == StatsBlockKind::kCounters
                                 ? e.names_offset + size_t{e.fields} * kStatsFieldNameSize
                                 : 0;
    if (e.offset + e.bytes > size || names_end > size ||
        (e.kind == StatsBlockKind::kCounters && e.bytes != e.fields * sizeof(Counter)) ||
        (e.kind == StatsBlockKind::kHistogram && e.bytes != sizeof(SharedHistogram)) ||
        (e.kind != StatsBlockKind::kCounters && e.kind != StatsBlockKind::kHistogram)) {
      return absl::DataLossError(absl::StrCat(path, ": block ", i, " is out of bounds or malformed"));
    }
    Block b;
    b.name = read_name(e.name, sizeof(e.name));
    b.kind = e.kind;
    if (e.kind == StatsBlockKind::kCounters) {
      b.values = std::span<const Counter>(reinterpret_cast<const Counter*>(bytes + e.offset),
                                          e.fields);
      for (uint32_t f = 0; f < e.fields; ++f) {
        b.fields.push_back(read_name(
            reinterpret_cast<const char*>(bytes + e.names_offset + f * kStatsFieldNameSize),
            kStatsFieldNameSize));
      }
    } else {
      b.histogram = reinterpret_cast<const SharedHistogram*>(bytes + e.offset);
    }
    view->blocks_.push_back(std::move(b));
  }
  return view;
}

StatsView::~StatsView() {
  if (base_ != nullptr) ::munmap(const_cast<void*>(base_), size_);
}

const StatsView::Block* StatsView::find(std::string_view name) const noexcept {
  for (const Block& b : blocks_) {
    if (b.name == name) return &b;
  }
  return nullptr;
}

int64_t StatsView::value(std::string_view block, std::string_view field) const noexcept {
  const Block* b = find(block);
  if (b == nullptr || b->kind != StatsBlockKind::kCounters) return -1;
  for (size_t i = 0; i < b->fields.size(); ++i) {
    if (b->fields[i] == field) return b->values[i].get();
  }
  return -1;
}

bool StatsView::writer_alive() const noexcept {
  return header_->pid > 0 && (::kill(static_cast<pid_t>(header_->pid), 0) == 0 || errno == EPERM);
}

std::string prometheus_text(const StatsView& view) {
  std::string out;
  auto metric = [](std::string_view block, std::string_view field) {
    std::string name = absl::StrCat("sluice_", to_absl(block), "_", to_absl(field));
    for (char& c : name) {
      const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                      c == '_';
      if (!ok) c = '_';
    }
    return name;
  };
  absl::StrAppend(&out, "# TYPE sluice_up gauge\nsluice_up ",
                  view.state() == DaemonState::kRunning ? 1 : 0, "\n");
  absl::StrAppend(&out, "# TYPE sluice_start_time_seconds gauge\nsluice_start_time_seconds ",
                  absl::StrFormat("%.3f", static_cast<double>(view.start_time_ns()) / 1e9), "\n");
  for (const auto& b : view.blocks()) {
    if (b.kind == StatsBlockKind::kCounters) {
      for (size_t i = 0; i < b.fields.size(); ++i) {
        const std::string name = metric(b.name, b.fields[i]);
        const bool counter = absl::EndsWith(b.fields[i], "_total");
        absl::StrAppend(&out, "# TYPE ", name, counter ? " counter\n" : " gauge\n", name, " ",
                        b.values[i].get(), "\n");
      }
    } else {
      const std::string name = metric(b.name, "seconds");
      Histogram h(SharedHistogram::kHighest);
      b.histogram->copy_to(&h);
      absl::StrAppend(&out, "# TYPE ", name, " summary\n");
      for (double q : {0.5, 0.9, 0.99, 0.999, 0.9999}) {
        absl::StrAppend(&out, name, "{quantile=\"", q, "\"} ",
                        absl::StrFormat("%.9f", static_cast<double>(h.value_at_percentile(q * 100)) / 1e9),
                        "\n");
      }
      absl::StrAppend(&out, name, "_sum ",
                      absl::StrFormat("%.9f", h.mean() * static_cast<double>(h.total_count()) / 1e9),
                      "\n", name, "_count ", h.total_count(), "\n");
    }
  }
  return out;
}

}  // namespace sluice
