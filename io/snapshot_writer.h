// SnapshotWriter: the thread that writes snapshot images to files, so that neither the write nor
// the fsync (0.4-3.6 ms here, more for a large file) happens on a shard's thread.
//
// A shard stage acquire()s an image buffer, fills it incrementally (pipeline/state_store.h), and
// submit()s it with its header; the writer thread seals it (body CRC, header), writes it
// atomically (temp file, fsync, rename, directory fsync: io/snapshot_file.h), prunes the shard's
// snapshots to the newest `keep`, and returns the buffer to its pool for the next snapshot. The
// thread sleeps on a condition variable when there is nothing to write; it never spins.
//
// Buffers are mmap'ed. A fresh buffer is populated lazily by whoever touches it first (the shard,
// as it copies chunks); prepare() lets the writer thread fault one in ahead of time instead.
//
// Thread safety: acquire, release, submit, prepare, flush and the counters may be called from
// any thread. write_now runs on the caller's thread, serialised with the writer thread.
#ifndef SLUICE_IO_SNAPSHOT_WRITER_H_
#define SLUICE_IO_SNAPSHOT_WRITER_H_

#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "io/snapshot_format.h"

namespace sluice::snapshot {

// An image buffer: `capacity` bytes of zero-initialised (or reused) memory.
struct ImageBuffer {
  std::byte* data = nullptr;
  size_t capacity = 0;
  // Mapped by acquire() because no pooled buffer was big enough: its pages fault in on the
  // thread that first writes them, inside the copies of a snapshot.
  bool unprepared = false;
};

struct WriterOptions {
  std::string dir;  // created if missing
  int keep = 3;     // snapshots kept per shard (shard index and count)
  size_t max_pooled_buffers = 4;
  // The writer thread's nice value: its CRC, copies into the page cache and page faulting are
  // background work, and on a small machine it must not take time slices from the shards and
  // the network agent (a shard preempted for a tick is a 4 ms stall). 0 leaves it as is.
  int nice = 10;
  // Runs on the writing thread before a snapshot's file is written (so before it can exist
  // under its name); an error abandons that snapshot. The daemon uses it to make sure the
  // alerts log holds, on disk, every alert up to the snapshot's sequence first.
  std::function<absl::Status(const Header&)> before_commit;
};

class SnapshotWriter {
 public:
  // Creates the directory, removes temp files a crash left, starts the thread.
  static absl::StatusOr<std::unique_ptr<SnapshotWriter>> start(const WriterOptions& options);
  // Writes what was submitted, then stops the thread and frees the buffers.
  ~SnapshotWriter();
  SnapshotWriter(const SnapshotWriter&) = delete;
  SnapshotWriter& operator=(const SnapshotWriter&) = delete;

  // A buffer of at least `bytes`: a pooled one if one is big enough, else a new mapping of
  // buffer_capacity(bytes).
  ImageBuffer acquire(size_t bytes);
  // What acquire() and prepare() map for an image of `bytes`: a quarter more, so that a slowly
  // growing state does not need a new buffer at every snapshot, in whole 2 MiB pages.
  static size_t buffer_capacity(size_t bytes);
  // Returns a buffer that will not be submitted (an abandoned capture).
  void release(ImageBuffer buffer);
  // Asks the thread to have one more populated buffer of at least `bytes` in the pool (each
  // call counts: N shards calling it get N buffers, up to max_pooled_buffers).
  void prepare(size_t bytes);

  // Queues `size` bytes of `buffer` (header space first) to be written as `header`'s file.
  // Never blocks on the disk.
  void submit(const Header& header, ImageBuffer buffer, size_t size);
  // Writes on the calling thread (after what is queued) and returns the outcome; the buffer
  // goes back to the pool.
  absl::Status write_now(const Header& header, ImageBuffer buffer, size_t size);
  // Waits until everything submitted so far is written; returns the first error since the last
  // flush (and clears it).
  absl::Status flush();

  const std::string& dir() const { return options_.dir; }
  int64_t written() const { return written_.load(std::memory_order_acquire); }
  int64_t failed() const { return failed_.load(std::memory_order_acquire); }
  // acquire() calls that found no pooled buffer big enough and mapped a fresh one (whose pages
  // then fault in on the caller's thread).
  int64_t unprepared_acquires() const {
    return unprepared_acquires_.load(std::memory_order_acquire);
  }
  // The largest buffer in the pool now (0: none).
  size_t largest_pooled() const;
  // True while nothing is queued or being written and every prepare() is covered by a populated
  // buffer: a barrier now gets a prepared buffer and adds no writing to a backlog. Ingest holds
  // a due barrier back until then (NetworkOptions::snapshot_gate), as Flink does not start a
  // checkpoint while the last one is still in progress.
  const std::atomic<bool>& ready() const noexcept { return ready_; }
  // Wall time of the last write (seal + write + fsync + rename + prune), ns.
  int64_t last_write_ns() const { return last_write_ns_.load(std::memory_order_acquire); }

 private:
  struct Job {
    Header header;
    ImageBuffer buffer;
    size_t size = 0;
  };
  explicit SnapshotWriter(const WriterOptions& options);
  void run();
  absl::Status write(const Job& job);
  // A mapping of `capacity` bytes; populate: faulted in (stopped early by the destructor).
  ImageBuffer allocate(size_t capacity, bool populate);
  static void free_buffer(ImageBuffer b);
  void pool(ImageBuffer b);  // REQUIRES: mu_ held
  void publish_ready();      // REQUIRES: mu_ held

  const WriterOptions options_;
  std::mutex io_mu_;  // one file write at a time (the thread's or write_now's)
  mutable std::mutex mu_;
  std::condition_variable wake_;  // the thread waits here for jobs
  std::condition_variable idle_;  // flush waits here
  std::deque<Job> jobs_;
  size_t prepare_bytes_ = 0;   // the largest size asked for since the pool last covered it
  size_t prepare_wanted_ = 0;  // prepare() calls not yet covered
  bool busy_ = false;
  // Set under mu_; atomic because a prepare under way reads it without the lock.
  std::atomic<bool> stop_{false};
  std::vector<ImageBuffer> free_;
  absl::Status first_error_;
  std::atomic<int64_t> written_{0};
  std::atomic<int64_t> failed_{0};
  std::atomic<int64_t> unprepared_acquires_{0};
  std::atomic<int64_t> last_write_ns_{0};
  std::atomic<bool> ready_{true};
  std::thread thread_;
};

}  // namespace sluice::snapshot

#endif  // SLUICE_IO_SNAPSHOT_WRITER_H_
