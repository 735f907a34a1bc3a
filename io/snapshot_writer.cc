#include "io/snapshot_writer.h"

#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <new>

#include "absl/strings/str_cat.h"
#include "core/clock.h"
#include "core/cpu.h"
#include "core/pages.h"
#include "io/io_error.h"
#include "io/snapshot_file.h"

namespace sluice::snapshot {
namespace {

constexpr size_t kGranule = size_t{2} << 20;

}  // namespace

size_t SnapshotWriter::buffer_capacity(size_t bytes) {
  const size_t want = std::max<size_t>(bytes + bytes / 4, 1);
  return (want + kGranule - 1) / kGranule * kGranule;
}

absl::StatusOr<std::unique_ptr<SnapshotWriter>> SnapshotWriter::start(
    const WriterOptions& options) {
  if (options.dir.empty()) return absl::InvalidArgumentError("snapshot directory not set");
  if (options.keep < 1) return absl::InvalidArgumentError("keep at least one snapshot per shard");
  if (::mkdir(options.dir.c_str(), 0755) != 0 && errno != EEXIST) {
    return io_error(errno, "create snapshot directory", options.dir);
  }
  remove_temp_files(options.dir);
  std::unique_ptr<SnapshotWriter> w(new SnapshotWriter(options));
  w->thread_ = std::thread([p = w.get()] { p->run(); });
  return w;
}

SnapshotWriter::SnapshotWriter(const WriterOptions& options) : options_(options) {}

SnapshotWriter::~SnapshotWriter() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;  // also ends a prepare under way
  }
  wake_.notify_all();
  if (thread_.joinable()) thread_.join();
  for (ImageBuffer b : free_) free_buffer(b);
}

ImageBuffer SnapshotWriter::allocate(size_t capacity, bool populate) {
  void* p = ::mmap(nullptr, capacity, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) throw std::bad_alloc();
  if (populate) (void)fault_in(static_cast<std::byte*>(p), capacity, stop_);
  return ImageBuffer{static_cast<std::byte*>(p), capacity};
}

void SnapshotWriter::publish_ready() {
  ready_.store(jobs_.empty() && !busy_ && prepare_wanted_ == 0, std::memory_order_release);
}

void SnapshotWriter::free_buffer(ImageBuffer b) {
  if (b.data != nullptr) ::munmap(b.data, b.capacity);
}

void SnapshotWriter::pool(ImageBuffer b) {
  b.unprepared = false;  // its pages are in now
  free_.push_back(b);
  if (free_.size() > options_.max_pooled_buffers) {
    // Drop the smallest: state grows, and big buffers serve small images too.
    auto smallest = std::min_element(free_.begin(), free_.end(),
                                     [](auto& a, auto& c) { return a.capacity < c.capacity; });
    free_buffer(*smallest);
    free_.erase(smallest);
  }
}

ImageBuffer SnapshotWriter::acquire(size_t bytes) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto best = free_.end();
    for (auto it = free_.begin(); it != free_.end(); ++it) {
      if (it->capacity >= bytes && (best == free_.end() || it->capacity < best->capacity)) {
        best = it;
      }
    }
    if (best != free_.end()) {
      const ImageBuffer b = *best;
      free_.erase(best);
      return b;
    }
  }
  unprepared_acquires_.fetch_add(1, std::memory_order_acq_rel);
  ImageBuffer b = allocate(buffer_capacity(bytes), false);
  b.unprepared = true;
  return b;
}

size_t SnapshotWriter::largest_pooled() const {
  std::lock_guard<std::mutex> lock(mu_);
  size_t largest = 0;
  for (const ImageBuffer& b : free_) largest = std::max(largest, b.capacity);
  return largest;
}

void SnapshotWriter::release(ImageBuffer buffer) {
  if (buffer.data == nullptr) return;
  std::lock_guard<std::mutex> lock(mu_);
  pool(buffer);
}

void SnapshotWriter::prepare(size_t bytes) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    prepare_bytes_ = std::max(prepare_bytes_, bytes);
    prepare_wanted_ = std::min(prepare_wanted_ + 1, options_.max_pooled_buffers);
    publish_ready();
  }
  wake_.notify_one();
}

void SnapshotWriter::submit(const Header& header, ImageBuffer buffer, size_t size) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    jobs_.push_back(Job{header, buffer, size});
    publish_ready();
  }
  wake_.notify_one();
}

absl::Status SnapshotWriter::write_now(const Header& header, ImageBuffer buffer, size_t size) {
  if (absl::Status s = flush(); !s.ok()) {
    release(buffer);
    return s;
  }
  const absl::Status s = write(Job{header, buffer, size});
  release(buffer);
  return s;
}

absl::Status SnapshotWriter::flush() {
  std::unique_lock<std::mutex> lock(mu_);
  idle_.wait(lock, [&] { return jobs_.empty() && !busy_; });
  absl::Status s = first_error_;
  first_error_ = absl::OkStatus();
  return s;
}

absl::Status SnapshotWriter::write(const Job& job) {
  std::lock_guard<std::mutex> io(io_mu_);
  const int64_t start = monotonic_ns();
  std::span<std::byte> file(job.buffer.data, job.size);
  Header h = job.header;
  h.created_ns = realtime_ns();
  seal(h, file);
  const Name name{h.shard_index, h.shard_count, h.sequence};
  absl::Status s = options_.before_commit ? options_.before_commit(h) : absl::OkStatus();
  if (s.ok()) s = write_file_atomically(options_.dir, file_name(name), file);
  if (s.ok()) s = prune(options_.dir, h.shard_index, h.shard_count, options_.keep);
  last_write_ns_.store(monotonic_ns() - start, std::memory_order_release);
  if (s.ok()) {
    written_.fetch_add(1, std::memory_order_acq_rel);
  } else {
    failed_.fetch_add(1, std::memory_order_acq_rel);
  }
  return s;
}

void SnapshotWriter::run() {
  (void)set_current_thread_name("snapshot-writer");  // for top -H and perf; cosmetic
  (void)move_current_thread_to_housekeeping();
  if (options_.nice != 0) {
    // Linux: setpriority on a thread id changes that thread only. Failure (a container that
    // forbids it) just leaves the default priority.
    (void)::setpriority(PRIO_PROCESS, static_cast<id_t>(::gettid()), options_.nice);
  }
  std::unique_lock<std::mutex> lock(mu_);
  for (;;) {
    wake_.wait(lock, [&] { return stop_ || !jobs_.empty() || prepare_wanted_ > 0; });
    if (!jobs_.empty()) {
      Job job = jobs_.front();
      jobs_.pop_front();
      busy_ = true;
      lock.unlock();
      const absl::Status s = write(job);
      if (!s.ok()) std::fprintf(stderr, "sluice: snapshot: %s\n", std::string(s.message()).c_str());
      lock.lock();
      if (!s.ok() && first_error_.ok()) first_error_ = s;
      pool(job.buffer);
      busy_ = false;
      publish_ready();
      idle_.notify_all();
      continue;
    }
    if (stop_) return;
    if (prepare_wanted_ > 0) {
      // One populated buffer per prepare() call not yet covered by the pool.
      const size_t bytes = prepare_bytes_;
      size_t fit = 0;
      for (const ImageBuffer& b : free_) fit += b.capacity >= bytes;
      if (fit >= prepare_wanted_) {
        prepare_wanted_ = 0;
        prepare_bytes_ = 0;
        publish_ready();
        continue;
      }
      lock.unlock();
      const ImageBuffer b = allocate(buffer_capacity(bytes), true);
      lock.lock();
      free_.push_back(b);
      continue;
    }
  }
}

}  // namespace sluice::snapshot
