#include "pipeline/state_store.h"

#include <sys/mman.h>

#include <algorithm>
#include <atomic>
#include <bit>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <list>
#include <mutex>
#include <new>
#include <thread>
#include <utility>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "core/clock.h"
#include "core/cpu.h"

namespace sluice {
namespace {

// Below this, operator new (the allocator's free lists beat a system call per small table).
constexpr size_t kMmapThreshold = 1 << 20;
constexpr size_t kAlign = 64;

uint32_t load_u32(const std::byte* p) {
  uint32_t v;
  std::memcpy(&v, p, 4);
  return v;
}
uint64_t load_u64(const std::byte* p) {
  uint64_t v;
  std::memcpy(&v, p, 8);
  return v;
}
void store_u32(std::byte* p, uint32_t v) { std::memcpy(p, &v, 4); }
void store_u64(std::byte* p, uint64_t v) { std::memcpy(p, &v, 8); }

size_t align_up(size_t n, size_t a) { return (n + a - 1) & ~(a - 1); }

// An mmap'ed block of zero pages (none backed yet), or nullptr.
std::byte* map_zeroed(size_t bytes, bool huge) noexcept {
  void* p = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) return nullptr;
  // Large state arrays are read at random: huge pages save TLB misses (a no-op where disabled).
  (void)::madvise(p, bytes, huge ? MADV_HUGEPAGE : MADV_NOHUGEPAGE);
  return static_cast<std::byte*>(p);
}

// Zeroed blocks faulted in ahead of need by one background thread: a table's next array, asked
// for well before the table doubles, so that neither the doubling nor the writes that follow it
// take the page faults on the shard's thread. On a KVM guest a first touch of fresh memory costs
// the host's faults too: ~5 ms a 2 MiB page here, half a second for a table of 200 MB
// (perf/RESULTS.md, "Growth"). The thread starts with the first request and sleeps on a
// condition variable between them.
class Prefaulter {
 public:
  static Prefaulter& instance() {
    static Prefaulter p;
    return p;
  }

  void request(size_t bytes) {
    std::lock_guard<std::mutex> lock(mu_);
    size_t pending = 0;
    for (const Block& b : blocks_) {
      if (b.bytes == bytes && !b.unwanted) return;  // asked for already
      pending += b.bytes;
    }
    if (pending + bytes > kMaxPendingBytes) return;
    blocks_.push_back(Block{.bytes = bytes});
    if (!thread_.joinable()) thread_ = std::thread([this] { run(); });
    wake_.notify_one();
  }

  // A block of exactly `bytes` faulted in, or nullptr (none asked for, or not ready yet: then
  // it is dropped when ready rather than waited for).
  std::byte* take(size_t bytes) {
    std::lock_guard<std::mutex> lock(mu_);
    for (auto it = blocks_.begin(); it != blocks_.end(); ++it) {
      if (it->bytes != bytes || it->unwanted) continue;
      if (it->data == nullptr) {
        it->unwanted = true;
        return nullptr;
      }
      std::byte* p = it->data;
      blocks_.erase(it);
      return p;
    }
    return nullptr;
  }

  // Unmaps a block on the background thread (milliseconds to tens of ms for hundreds of MB).
  void release(std::byte* p, size_t bytes) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      releases_.push_back(Block{.bytes = bytes, .data = p});
      if (!thread_.joinable()) thread_ = std::thread([this] { run(); });
    }
    wake_.notify_one();
  }

  ~Prefaulter() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_ = true;  // also ends a fault-in under way
    }
    wake_.notify_one();
    if (thread_.joinable()) thread_.join();
    for (const std::list<Block>* list : {&blocks_, &releases_}) {
      for (const Block& b : *list) {
        if (b.data != nullptr) ::munmap(b.data, b.bytes);
      }
    }
  }

 private:
  struct Block {
    size_t bytes = 0;
    std::byte* data = nullptr;  // set once faulted in
    bool started = false;
    bool unwanted = false;  // take() found it unready: free it when done
  };
  // More than a few tables' next arrays at once is a sign of many shards growing together;
  // the rest fault in on their own threads, as without this.
  static constexpr size_t kMaxPendingBytes = size_t{4} << 30;

  void run() {
    (void)set_current_thread_name("prefault");  // for top -H and perf; cosmetic
    // Started by the first shard that asks, on its (maybe pinned) thread.
    (void)move_current_thread_to_housekeeping();
    std::unique_lock<std::mutex> lock(mu_);
    while (!stop_) {
      if (!releases_.empty()) {
        const Block b = releases_.front();
        releases_.pop_front();
        lock.unlock();
        ::munmap(b.data, b.bytes);
        lock.lock();
        continue;
      }
      auto next = std::find_if(blocks_.begin(), blocks_.end(),
                               [](const Block& b) { return !b.started && !b.unwanted; });
      if (next == blocks_.end()) {
        wake_.wait(lock);
        continue;
      }
      next->started = true;
      const size_t bytes = next->bytes;
      lock.unlock();
      std::byte* p = map_zeroed(bytes, true);
      if (p != nullptr) (void)fault_in(p, bytes, stop_);  // stop_ discards a partial one
      lock.lock();
      // std::list: `next` is still valid, nobody else erases a started block.
      if (next->unwanted || p == nullptr || stop_) {
        blocks_.erase(next);
        lock.unlock();
        if (p != nullptr) ::munmap(p, bytes);
        lock.lock();
      } else {
        next->data = p;
      }
    }
  }

  std::mutex mu_;
  std::condition_variable wake_;
  std::list<Block> blocks_;
  std::list<Block> releases_;
  std::thread thread_;
  // Set under mu_; atomic because a fault-in under way reads it without the lock.
  std::atomic<bool> stop_{false};
};

}  // namespace

std::byte* allocate_zeroed(size_t bytes) {
  if (bytes == 0) bytes = kAlign;
  if (bytes < kMmapThreshold) {
    auto* p = static_cast<std::byte*>(::operator new (bytes, std::align_val_t{kAlign}));
    std::memset(p, 0, bytes);
    return p;
  }
  std::byte* p = map_zeroed(bytes, true);
  if (p == nullptr) throw std::bad_alloc();
  return p;
}

void prepare_zeroed(size_t bytes) {
  if (bytes >= kMmapThreshold) Prefaulter::instance().request(bytes);
}

std::byte* allocate_prepared(size_t bytes, bool small_pages) {
  if (bytes < kMmapThreshold) return allocate_zeroed(bytes);
  if (std::byte* p = Prefaulter::instance().take(bytes)) return p;
  // Not ready. Small pages fault in ~2 us each here, a huge page ~5 ms (a KVM guest whose free
  // memory went back to the host), but small pages cost a table read at random its TLB reach
  // for as long as it lives: processor_bench's fraud shard ran 10-25 % slower on them.
  std::byte* p = map_zeroed(bytes, !small_pages);
  if (p == nullptr) throw std::bad_alloc();
  return p;
}

void release_zeroed_later(std::byte* p, size_t bytes) noexcept {
  if (p == nullptr) return;
  if (bytes < kMmapThreshold) {
    release_zeroed(p, bytes);
    return;
  }
  try {
    Prefaulter::instance().release(p, bytes);
  } catch (...) {  // no thread or no memory for the request: unmap here
    ::munmap(p, bytes);
  }
}

void release_zeroed(std::byte* p, size_t bytes) noexcept {
  if (p == nullptr) return;
  if (bytes == 0) bytes = kAlign;
  if (bytes < kMmapThreshold) {
    ::operator delete (p, std::align_val_t{kAlign});
    return;
  }
  ::munmap(p, bytes);
}

void abort_state_pool_full() {
  std::fputs("sluice: state pool exceeds 2^32 entries; a shard's state cannot grow further\n",
             stderr);
  std::abort();
}

// ---- TrackedArrayBase --------------------------------------------------------------------------

TrackedArrayBase::TrackedArrayBase(StateCapture& capture, std::string_view name,
                                   size_t element_size)
    : capture_(&capture), name_(name), element_size_(element_size) {
  id_ = capture.add(this);
}

TrackedArrayBase::~TrackedArrayBase() {
  capture_->remove(this);
  release_zeroed(data_, capacity_ * element_size_);
}

void TrackedArrayBase::adopt(std::byte* data, size_t capacity, size_t size) {
  // The capture reads the old block: this array's part must be complete before it goes away.
  if (capture_->active()) capture_->finish_region(id_);
  release_zeroed(data_, capacity_ * element_size_);
  data_ = data;
  capacity_ = capacity;
  size_ = size;
}

void TrackedArrayBase::reallocate(size_t capacity, size_t keep, bool prepared) {
  std::byte* block = prepared ? allocate_prepared(capacity * element_size_)
                              : allocate_zeroed(capacity * element_size_);
  if (keep > 0) std::memcpy(block, data_, keep * element_size_);
  adopt(block, capacity, std::min(size_, capacity));
}

void TrackedArrayBase::prefault() noexcept { fault_in(data_, capacity_ * element_size_); }

void TrackedArrayBase::release_later() {
  if (capture_->active()) capture_->finish_region(id_);
  release_zeroed_later(data_, capacity_ * element_size_);
  data_ = nullptr;
  capacity_ = 0;
  size_ = 0;
}

void TrackedArrayBase::take_storage(TrackedArrayBase& from) {
  assert(from.element_size_ == element_size_ && &from != this);
  if (capture_->active()) {
    capture_->finish_region(from.id_);
    capture_->finish_region(id_);
  }
  release_zeroed(data_, capacity_ * element_size_);
  data_ = std::exchange(from.data_, nullptr);
  capacity_ = std::exchange(from.capacity_, 0);
  size_ = std::exchange(from.size_, 0);
}

absl::Status TrackedArrayBase::assign(std::span<const std::byte> bytes, size_t capacity) {
  if (bytes.size() % element_size_ != 0) {
    return absl::DataLossError(
        absl::StrCat(name_, ": ", bytes.size(), " bytes is not a whole number of elements"));
  }
  const size_t n = bytes.size() / element_size_;
  if (capacity < n) capacity = n;
  if (capacity == 0) capacity = 1;
  std::byte* block = allocate_zeroed(capacity * element_size_);
  if (!bytes.empty()) std::memcpy(block, bytes.data(), bytes.size());
  adopt(block, capacity, n);
  return absl::OkStatus();
}

// ---- StateCapture ------------------------------------------------------------------------------

StateCapture::StateCapture(size_t header_bytes, size_t chunk_bytes)
    : header_bytes_(align_up(header_bytes, kAlign)),
      chunk_(chunk_bytes),
      chunk_shift_(std::countr_zero(chunk_bytes)) {
  assert(std::has_single_bit(chunk_bytes) && chunk_bytes >= 64);
}

uint32_t StateCapture::add(TrackedArrayBase* array) {
  assert(!active_);
  arrays_.push_back(array);
  return static_cast<uint32_t>(arrays_.size() - 1);
}

void StateCapture::remove(TrackedArrayBase* array) noexcept {
  if (active_) abandon();
  for (auto& a : arrays_) {
    if (a == array) a = nullptr;
  }
}

size_t StateCapture::image_bytes() const {
  size_t offset = header_bytes_ + align_up(8 + kDirectoryEntrySize * arrays_.size(), kAlign);
  for (const TrackedArrayBase* a : arrays_) {
    if (a == nullptr) continue;
    offset += align_up(a->byte_size(), kAlign);
  }
  return offset;
}

void StateCapture::begin(std::byte* image, size_t capacity) {
  assert(!active_);
  assert(capacity >= image_bytes());
  (void)capacity;
  image_ = image;
  regions_.assign(arrays_.size(), Region{});
  std::byte* dir = image + header_bytes_;
  store_u32(dir, static_cast<uint32_t>(arrays_.size()));
  store_u32(dir + 4, 0);
  size_t offset = header_bytes_ + align_up(8 + kDirectoryEntrySize * arrays_.size(), kAlign);
  std::memset(dir + 8, 0, offset - header_bytes_ - 8);
  size_t chunks = 0;
  for (size_t r = 0; r < arrays_.size(); ++r) {
    const TrackedArrayBase* a = arrays_[r];
    Region& region = regions_[r];
    region.src = a->bytes();
    region.bytes = a->byte_size();
    region.image_offset = offset;
    region.first_chunk = chunks;
    std::byte* e = dir + 8 + kDirectoryEntrySize * r;
    store_u32(e, static_cast<uint32_t>(r));
    store_u32(e + 4, static_cast<uint32_t>(a->element_size()));
    store_u64(e + 8, offset);
    store_u64(e + 16, region.bytes);
    store_u64(e + 24, 0);
    const size_t padded = align_up(region.bytes, kAlign);
    // Padding bytes are part of the file (and its CRC): make them zero, not stale memory.
    if (padded > region.bytes) std::memset(image + offset + region.bytes, 0, padded - region.bytes);
    offset += padded;
    chunks += (region.bytes + chunk_ - 1) >> chunk_shift_;
  }
  image_size_ = offset;
  total_chunks_ = chunks;
  remaining_ = chunks;
  copied_.assign((chunks + 63) / 64, 0);
  cursor_ = 0;
  cursor_region_ = 0;
  complete_ = false;
  set_active(true);
  complete_if_done();
}

void StateCapture::copy_chunk(size_t region, size_t global_chunk) {
  const Region& r = regions_[region];
  const size_t local = global_chunk - r.first_chunk;
  const size_t from = local << chunk_shift_;
  const size_t n = std::min(chunk_, r.bytes - from);
  std::memcpy(image_ + r.image_offset + from, r.src + from, n);
  copied_[global_chunk >> 6] |= uint64_t{1} << (global_chunk & 63);
  --remaining_;
}

void StateCapture::before_write(uint32_t id, size_t offset, size_t n) {
  const Region& r = regions_[id];
  if (offset >= r.bytes || n == 0) return;
  const size_t end = std::min(offset + n, r.bytes);
  const size_t c0 = r.first_chunk + (offset >> chunk_shift_);
  const size_t c1 = r.first_chunk + ((end - 1) >> chunk_shift_);
  int64_t start = 0;
  for (size_t c = c0; c <= c1; ++c) {
    if (copied_[c >> 6] & (uint64_t{1} << (c & 63))) continue;
    if (start == 0) start = now_ticks();
    copy_chunk(id, c);
    ++cow_copies_;
  }
  if (start != 0) work_ticks_ += now_ticks() - start;
  complete_if_done();
}

size_t StateCapture::copy_some(size_t budget) {
  if (!active_) return 0;
  const int64_t start = now_ticks();
  size_t copied = 0;
  while (copied < budget && remaining_ > 0) {
    // Skip whole words of copied chunks quickly: copy-on-write fills the bitmap at random.
    while (cursor_ < total_chunks_ && copied_[cursor_ >> 6] == ~uint64_t{0} &&
           (cursor_ & 63) == 0) {
      cursor_ += 64;
    }
    if (cursor_ >= total_chunks_) break;
    if (copied_[cursor_ >> 6] & (uint64_t{1} << (cursor_ & 63))) {
      ++cursor_;
      continue;
    }
    while (cursor_region_ + 1 < regions_.size() &&
           regions_[cursor_region_ + 1].first_chunk <= cursor_) {
      ++cursor_region_;
    }
    // Regions of zero bytes own no chunk: move to the one that owns this chunk.
    copy_chunk(cursor_region_, cursor_);
    copied += chunk_;
    ++cursor_;
  }
  work_ticks_ += now_ticks() - start;
  complete_if_done();
  return copied;
}

void StateCapture::finish() {
  while (active_) copy_some(SIZE_MAX);
}

void StateCapture::finish_region(uint32_t id) {
  if (!active_) return;
  const Region& r = regions_[id];
  if (r.bytes == 0) return;
  const int64_t start = now_ticks();
  const size_t first = r.first_chunk;
  const size_t last = r.first_chunk + ((r.bytes - 1) >> chunk_shift_);
  for (size_t c = first; c <= last; ++c) {
    if ((copied_[c >> 6] & (uint64_t{1} << (c & 63))) == 0) {
      copy_chunk(id, c);
      ++growth_copies_;
    }
  }
  work_ticks_ += now_ticks() - start;
  complete_if_done();
}

void StateCapture::complete_if_done() noexcept {
  if (active_ && remaining_ == 0) {
    set_active(false);
    complete_ = true;
  }
}

void StateCapture::set_active(bool on) noexcept {
  active_ = on;
  for (TrackedArrayBase* a : arrays_) {
    if (a != nullptr) a->tracking_ = on;
  }
}

std::pair<std::byte*, size_t> StateCapture::take() {
  assert(complete_);
  complete_ = false;
  std::byte* image = image_;
  image_ = nullptr;
  return {image, image_size_};
}

std::byte* StateCapture::abandon() {
  std::byte* image = image_;
  set_active(false);
  complete_ = false;
  image_ = nullptr;
  return image;
}

absl::StatusOr<std::vector<StateCapture::RegionInfo>> StateCapture::parse_directory(
    std::span<const std::byte> image) const {
  const size_t dir_at = header_bytes_;
  if (image.size() < dir_at + 8) return absl::DataLossError("image too short for its directory");
  const uint32_t count = load_u32(image.data() + dir_at);
  if (count != arrays_.size()) {
    return absl::DataLossError(
        absl::StrCat("image has ", count, " regions, this build keeps ", arrays_.size()));
  }
  const size_t first = dir_at + align_up(8 + kDirectoryEntrySize * count, kAlign);
  if (image.size() < first) return absl::DataLossError("image too short for its directory");
  std::vector<RegionInfo> out(count);
  uint64_t expect = first;
  for (uint32_t r = 0; r < count; ++r) {
    const std::byte* e = image.data() + dir_at + 8 + kDirectoryEntrySize * r;
    RegionInfo& info = out[r];
    info.index = load_u32(e);
    info.element_size = load_u32(e + 4);
    info.offset = load_u64(e + 8);
    info.bytes = load_u64(e + 16);
    const std::string name = arrays_[r] != nullptr ? arrays_[r]->name() : "?";
    if (info.index != r || arrays_[r] == nullptr ||
        info.element_size != arrays_[r]->element_size()) {
      return absl::DataLossError(
          absl::StrCat("region ", r, " (", name, "): index or element size differs"));
    }
    if (info.offset != expect || info.bytes > image.size() ||
        info.offset > image.size() - info.bytes || info.bytes % info.element_size != 0) {
      return absl::DataLossError(absl::StrCat("region ", r, " (", name, "): offset ", info.offset,
                                              " length ", info.bytes, " out of place"));
    }
    expect = info.offset + align_up(info.bytes, kAlign);
  }
  if (expect != image.size()) {
    return absl::DataLossError(
        absl::StrCat("image is ", image.size(), " bytes, its regions end at ", expect));
  }
  return out;
}

// ---- TimerQueue --------------------------------------------------------------------------------

TimerQueue::TimerQueue(StateCapture& capture, std::string_view name)
    : ring_(capture, std::string(name) + ".fifo"),
      heap_(capture, std::string(name) + ".heap"),
      meta_(capture, std::string(name) + ".meta") {
  meta_.reserve(1, 0);
  meta_.set_size(1);
  ring_.reserve(16, 0);
  ring_.set_size(16);
}

// Unwraps the FIFO into a ring of `capacity` slots (a power of two, at least its count).
void TimerQueue::grow_ring(size_t capacity) {
  const Meta& m = meta_[0];
  const size_t cap = ring_.size();
  // Read in order, so small pages cost it no TLB misses to speak of.
  auto* block = reinterpret_cast<Timer*>(allocate_prepared(capacity * sizeof(Timer), true));
  for (size_t i = 0; i < m.fifo_count; ++i) block[i] = ring_[(m.fifo_head + i) & (cap - 1)];
  ring_.adopt_block(block, capacity, capacity);
  meta_.mut(0).fifo_head = 0;
}

void TimerQueue::reserve(size_t timers, size_t out_of_order) {
  if (timers > ring_.size()) grow_ring(std::bit_ceil(timers));
  if (out_of_order > heap_.capacity()) heap_.reserve(out_of_order, meta_[0].heap_size);
  ring_.prefault();
  heap_.prefault();
}

void TimerQueue::add(int64_t time, uint64_t key) {
  const Timer t{time, key};
  const Meta& m = meta_[0];
  if (repeats_last(t)) return;
  if (m.fifo_count == 0 || fifo_back().time <= time) {
    push_fifo(t);
    return;
  }
  // Out of order: sift up in the heap.
  size_t i = m.heap_size;
  if (i == heap_.capacity()) heap_.reserve(std::max<size_t>(16, 2 * i), i);
  heap_.set_size(i + 1);
  while (i > 0) {
    const size_t parent = (i - 1) / 2;
    if (!less(t, heap_[parent])) break;
    heap_.mut(i) = heap_[parent];
    i = parent;
  }
  heap_.mut(i) = t;
  Meta& w = meta_.mut(0);
  ++w.heap_size;
  w.last = t;
}

void TimerQueue::pop_heap() {
  const size_t n = meta_[0].heap_size - 1;
  meta_.mut(0).heap_size = n;
  if (n == 0) {
    heap_.set_size(0);
    return;
  }
  const Timer last = heap_[n];
  size_t i = 0;
  for (;;) {
    size_t child = 2 * i + 1;
    if (child >= n) break;
    if (child + 1 < n && less(heap_[child + 1], heap_[child])) ++child;
    if (!less(heap_[child], last)) break;
    heap_.mut(i) = heap_[child];
    i = child;
  }
  heap_.mut(i) = last;
  heap_.set_size(n);
}

absl::Status TimerQueue::restore(RegionReader& in) {
  const std::span<const std::byte> ring = in.next();
  const std::span<const std::byte> heap = in.next();
  const std::span<const std::byte> meta = in.next();
  const size_t cap = ring.size() / sizeof(Timer);
  if (cap == 0 || !std::has_single_bit(cap) || ring.size() % sizeof(Timer) != 0) {
    return absl::DataLossError(ring_.name() + ": ring size is not a power of two");
  }
  if (meta.size() != sizeof(Meta)) return absl::DataLossError(meta_.name() + ": bad size");
  Meta m;
  std::memcpy(&m, meta.data(), sizeof(Meta));
  if (m.fifo_head >= cap || m.fifo_count > cap || heap.size() != m.heap_size * sizeof(Timer)) {
    return absl::DataLossError(meta_.name() + ": inconsistent with the timer arrays");
  }
  if (absl::Status s = ring_.assign_bytes(ring, cap); !s.ok()) return s;
  if (absl::Status s = heap_.assign_bytes(heap, m.heap_size); !s.ok()) return s;
  return meta_.assign_bytes(meta, 1);
}

}  // namespace sluice
