// The per-shard state store: flat, contiguous, snapshot-able keyed state.
//
// Everything a shard remembers lives in a handful of TrackedArrays: contiguous arrays of
// trivially copyable elements (hash-table slots, history entries, timers, small meta records).
// That is what makes a snapshot cheap: the state IS a few byte ranges, written to a file as they
// are and copied back on load, with no per-key serialisation.
//
// Layout (docs/state.md has the reasoning and the measurements):
//  - FlatTable<Slot>: open addressing with linear probing over one power-of-two array of
//    fixed-size POD slots; key 0 (all-zero key) marks an empty slot, so ids 0 can never be keys
//    (account 0 and client 0 are invalid anyway). Deletion shifts the following cluster back
//    (no tombstones), so probe lengths never degrade; with slots of a cache line or more it
//    walks a byte per slot of distance from home instead of the slots (derived, not state:
//    rebuilt on growth and restore). Grows x2 at 1/2 load while small (a few MiB), at 3/4
//    beyond; from 64 KiB incrementally, the old array's keys moving over with the inserts.
//  - HistoryState<Entry, kInline>: a FlatTable whose slot holds a key's time-sorted entries
//    inline while there are at most kInline of them, else a reference to one contiguous run in
//    a second array (the pool). Runs come in power-of-two size classes with a free list per
//    class, so steady state allocates nothing; a key's history is always one sorted run (binary
//    search, then a linear sum), and out-of-order inserts near the back or evictions from the
//    front are short memmoves.
//  - TimerQueue: event-time timers as a FIFO ring (timers registered in time order, the common
//    case: O(1)) plus a binary heap for the ones that arrive out of order; the next timer is the
//    smaller of the two fronts. Cleanup timers, which may fire late, never use the heap.
//
// Snapshots (StateCapture): copy-on-write by chunk. begin() notes every array's current extent;
// from then on copy_some() copies chunks into the image a bounded amount at a time, and every
// write to an array first copies the chunk it lands in if that chunk was not copied yet
// (TrackedArray::mut / mut_range). When every chunk is copied the image holds the state exactly
// as it was at begin(). An array that must reallocate (a table or pool growing) first copies the
// rest of its own region (a stall proportional to that array, and only when a growth meets a
// snapshot). All of it runs on the shard's thread: no atomics, no locks.
//
// Thread safety: a store and everything in it belong to one thread at a time (the shard's).
#ifndef SLUICE_PIPELINE_STATE_STORE_H_
#define SLUICE_PIPELINE_STATE_STORE_H_

#include <algorithm>
#include <bit>
#include <cassert>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "core/int128.h"
#include "core/pages.h"

namespace sluice {

class StateCapture;

// Zeroed memory for state arrays and snapshot images: large blocks are mmap'ed (zero pages on
// demand, transparent huge pages where the system allows them), small ones come from operator
// new. REQUIRES for release: the same byte count that was allocated.
std::byte* allocate_zeroed(size_t bytes);
void release_zeroed(std::byte* p, size_t bytes) noexcept;
// Asks for a large block of `bytes` to be mapped and faulted in (huge pages) by a background
// thread, for a later allocate_prepared of exactly that size to take instead of faulting its
// pages in on the caller's thread.
void prepare_zeroed(size_t bytes);
// Zeroed memory, like allocate_zeroed: the block prepare_zeroed prepared if it is ready, else a
// fresh mapping, in huge pages (as allocate_zeroed: fewer TLB misses for arrays read at random,
// but each faults in on this thread on its first write, milliseconds on a VM) or, small_pages,
// in 4 KiB pages (microseconds each; for arrays read in order). For arrays replaced under
// traffic.
std::byte* allocate_prepared(size_t bytes, bool small_pages = false);
// release_zeroed, with a large block unmapped by the background thread.
void release_zeroed_later(std::byte* p, size_t bytes) noexcept;

// The hash of table indexes: Fibonacci hashing (Knuth's multiplicative method; a table takes
// the product's top bits, which every bit of the key reaches). One multiply, where a full mixer
// (two multiplies and three shifts) sat on the path from every key to its slot load: replay ran
// 19-33 % faster with this one, on sequential and on scrambled account ids (perf/RESULTS.md,
// "Replay"). Deliberately not shard_of's mix: a shard holds only keys whose shard_of hash is
// k mod N, and reusing that hash would leave slots idle. Where a key sits depends on this
// function, so changing it is a state layout change (config_fingerprint).
inline uint64_t state_hash(uint64_t x) noexcept { return x * 0x9e3779b97f4a7c15ull; }

// The untyped part of a TrackedArray, which StateCapture reads.
class TrackedArrayBase {
 public:
  TrackedArrayBase(const TrackedArrayBase&) = delete;
  TrackedArrayBase& operator=(const TrackedArrayBase&) = delete;

  const std::byte* bytes() const noexcept { return data_; }
  // The bytes a snapshot captures: the first size() elements.
  size_t byte_size() const noexcept { return size_ * element_size_; }
  size_t element_size() const noexcept { return element_size_; }
  const std::string& name() const noexcept { return name_; }

  // Touches every page of the storage (all of its capacity) so the kernel backs it now, at
  // start, and not on a shard's first writes under traffic (a page fault each).
  void prefault() noexcept;

 protected:
  TrackedArrayBase(StateCapture& capture, std::string_view name, size_t element_size);
  ~TrackedArrayBase();

  // Declares a write to bytes [offset, offset + n): a snapshot in progress copies what it has
  // not copied of that range first.
  inline void note_write(size_t offset, size_t n);
  // Replaces the storage (the old block is released). A snapshot in progress copies what it has
  // not copied of this array first.
  void adopt(std::byte* data, size_t capacity, size_t size);
  // Grows to at least `capacity` elements keeping [0, keep); new elements are zero.
  // prepared: the block comes from allocate_prepared (an array grown under traffic).
  void reallocate(size_t capacity, size_t keep, bool prepared = false);
  // Replaces the contents with `bytes` (a whole number of elements), capacity >= their count.
  absl::Status assign(std::span<const std::byte> bytes, size_t capacity);
  // Releases the storage (release_zeroed_later): no elements, no capacity. A snapshot in
  // progress copies what it has not copied of this array first.
  void release_later();
  // Takes `from`'s storage (this array's own is released) and leaves `from` empty, with no
  // storage. A snapshot in progress copies what it has not copied of both arrays first.
  // REQUIRES: the same element size.
  void take_storage(TrackedArrayBase& from);

  std::byte* data_ = nullptr;
  size_t size_ = 0;
  size_t capacity_ = 0;

 private:
  friend class StateCapture;
  // Whether a capture is active: the capture's own flag, copied here by StateCapture so that
  // note_write, on every write to state (about a dozen an event), tests one byte of the array it
  // is writing instead of following the pointer to the capture first.
  bool tracking_ = false;
  StateCapture* capture_;
  std::string name_;
  size_t element_size_;
  uint32_t id_ = 0;
};

// Records the state's arrays and builds snapshot images of them incrementally.
//
// Image layout (the snapshot file is the image; io/snapshot_format.h has the header):
//   [0, header_bytes)           left for the header, filled by whoever writes the file
//   directory                   u32 region count, u32 0, then per region
//                               {u32 index, u32 element size, u64 offset, u64 bytes, u64 0}
//   regions                     each at a 64-byte-aligned offset, in registration order
class StateCapture {
 public:
  struct RegionInfo {
    uint32_t index = 0;
    uint32_t element_size = 0;
    uint64_t offset = 0;  // from the start of the image
    uint64_t bytes = 0;
  };
  static constexpr size_t kDirectoryEntrySize = 32;

  // REQUIRES: chunk_bytes is a power of two >= 64.
  explicit StateCapture(size_t header_bytes, size_t chunk_bytes = 1024);
  StateCapture(const StateCapture&) = delete;
  StateCapture& operator=(const StateCapture&) = delete;

  size_t chunk_bytes() const noexcept { return chunk_; }
  size_t region_count() const noexcept { return arrays_.size(); }
  const TrackedArrayBase& region(size_t i) const { return *arrays_[i]; }

  // Bytes an image of the current state needs.
  size_t image_bytes() const;

  // Starts capturing the state as it is now into `image` (REQUIRES: image_bytes() <= capacity,
  // no capture active, zeroed or not: every byte of the layout is written). Writes the
  // directory; the regions follow as chunks are copied.
  void begin(std::byte* image, size_t capacity);
  // Copies up to `budget` bytes of chunks not copied yet; returns the bytes copied.
  size_t copy_some(size_t budget);
  // Copies everything left.
  void finish();
  // Copies what is left of one region (an array about to be reallocated: its image part must be
  // complete before the old block goes; the other regions go on copying as before).
  void finish_region(uint32_t id);

  bool active() const noexcept { return active_; }
  // True once every chunk of the capture begun last is copied (until take()).
  bool complete() const noexcept { return complete_; }
  // The finished image and its length; the capture forgets it. REQUIRES: complete().
  std::pair<std::byte*, size_t> take();
  // Abandons an active capture (the image is the caller's again).
  std::byte* abandon();

  // TSC ticks spent copying since the last call (chunk copies on writes and in copy_some).
  int64_t take_work_ticks() noexcept {
    const int64_t t = work_ticks_;
    work_ticks_ = 0;
    return t;
  }
  size_t chunks_total() const noexcept { return total_chunks_; }
  size_t chunks_left() const noexcept { return remaining_; }
  // Chunks copied because a write landed in them (copy-on-write), over this store's life.
  int64_t cow_copies() const noexcept { return cow_copies_; }
  // Chunks copied because their array was reallocated during a capture, over this store's life.
  int64_t growth_copies() const noexcept { return growth_copies_; }

  // Reads and checks an image's directory (bounds, alignment, the region count and element
  // sizes of this store's arrays). The error names the region.
  absl::StatusOr<std::vector<RegionInfo>> parse_directory(std::span<const std::byte> image) const;

 private:
  friend class TrackedArrayBase;
  struct Region {
    const std::byte* src = nullptr;
    size_t bytes = 0;
    size_t image_offset = 0;
    size_t first_chunk = 0;
  };

  uint32_t add(TrackedArrayBase* array);
  void remove(TrackedArrayBase* array) noexcept;
  void before_write(uint32_t id, size_t offset, size_t n);
  void copy_chunk(size_t region, size_t global_chunk);
  void complete_if_done() noexcept;
  // active_ = on, and every array's copy of it.
  void set_active(bool on) noexcept;

  const size_t header_bytes_;
  const size_t chunk_;
  const int chunk_shift_;
  std::vector<TrackedArrayBase*> arrays_;
  std::vector<Region> regions_;
  std::vector<uint64_t> copied_;  // one bit per chunk of the active capture
  size_t total_chunks_ = 0;
  size_t remaining_ = 0;
  size_t cursor_ = 0;         // next chunk copy_some looks at
  size_t cursor_region_ = 0;  // the region that chunk is in
  std::byte* image_ = nullptr;
  size_t image_size_ = 0;
  bool active_ = false;
  bool complete_ = false;
  int64_t work_ticks_ = 0;
  int64_t cow_copies_ = 0;
  int64_t growth_copies_ = 0;
};

// Hands out an image's regions in order, to the restore() of the state objects that registered
// them (in the same order).
class RegionReader {
 public:
  RegionReader(std::span<const std::byte> image, std::vector<StateCapture::RegionInfo> regions)
      : image_(image), regions_(std::move(regions)) {}
  std::span<const std::byte> next() {
    if (next_ >= regions_.size()) return {};
    const StateCapture::RegionInfo& r = regions_[next_++];
    return image_.subspan(r.offset, r.bytes);
  }
  bool done() const noexcept { return next_ == regions_.size(); }

 private:
  std::span<const std::byte> image_;
  std::vector<StateCapture::RegionInfo> regions_;
  size_t next_ = 0;
};

inline void TrackedArrayBase::note_write(size_t offset, size_t n) {
  if (tracking_) [[unlikely]] {
    capture_->before_write(id_, offset, n);
  }
}

// A growable contiguous array of trivially copyable T whose writes a snapshot can intercept.
// Reads are plain; every write goes through mut() / mut_range() (declare, then write exactly
// that range). Not movable: the capture holds its address.
template <typename T>
class TrackedArray final : public TrackedArrayBase {
  static_assert(std::is_trivially_copyable_v<T>);

 public:
  TrackedArray(StateCapture& capture, std::string_view name)
      : TrackedArrayBase(capture, name, sizeof(T)) {}

  size_t size() const noexcept { return size_; }
  size_t capacity() const noexcept { return capacity_; }
  const T* data() const noexcept { return reinterpret_cast<const T*>(data_); }
  const T& operator[](size_t i) const noexcept {
    assert(i < capacity_);
    return data()[i];
  }

  T& mut(size_t i) {
    assert(i < capacity_);
    note_write(i * sizeof(T), sizeof(T));
    return mutable_data()[i];
  }
  T* mut_range(size_t i, size_t n) {
    assert(i + n <= capacity_);
    note_write(i * sizeof(T), n * sizeof(T));
    return mutable_data() + i;
  }

  // The extent a snapshot captures. REQUIRES: n <= capacity(). Elements past the old size keep
  // whatever they held (zero if never written).
  void set_size(size_t n) noexcept {
    assert(n <= capacity_);
    size_ = n;
  }
  // Capacity >= n, keeping the first `keep` elements; new memory is zero.
  void reserve(size_t n, size_t keep) {
    if (n > capacity_) reallocate(n, keep);
  }
  // reserve() under traffic: the new block is one prepare_zeroed asked for, if ready.
  void grow_prepared(size_t n, size_t keep) {
    if (n > capacity_) reallocate(n, keep, true);
  }
  // Takes over a block from allocate_zeroed of `capacity` elements, `size` of them in use.
  void adopt_block(T* block, size_t capacity, size_t size) {
    adopt(reinterpret_cast<std::byte*>(block), capacity, size);
  }
  // Replaces the contents from a snapshot region (capacity >= the region's element count).
  absl::Status assign_bytes(std::span<const std::byte> bytes, size_t capacity) {
    return assign(bytes, capacity);
  }
  // Moves `from`'s storage here (this array's own is released); `from` is left with none.
  void take_storage_from(TrackedArray& from) { take_storage(from); }
  // Releases the storage: no elements, no capacity.
  void release() { adopt(nullptr, 0, 0); }
  using TrackedArrayBase::release_later;

 private:
  T* mutable_data() noexcept { return reinterpret_cast<T*>(data_); }
};

// Bytes from allocate_zeroed, owned: zero pages on demand, no memset up front.
class ZeroedBytes {
 public:
  ZeroedBytes() = default;
  // prepared: from allocate_prepared (an array replaced under traffic).
  explicit ZeroedBytes(size_t n, bool prepared = false)
      : data_(reinterpret_cast<uint8_t*>(prepared ? allocate_prepared(n) : allocate_zeroed(n))),
        size_(n) {}
  ZeroedBytes(ZeroedBytes&& o) noexcept
      : data_(std::exchange(o.data_, nullptr)), size_(std::exchange(o.size_, 0)) {}
  ZeroedBytes& operator=(ZeroedBytes&& o) noexcept {
    std::swap(data_, o.data_);
    std::swap(size_, o.size_);
    return *this;
  }
  ~ZeroedBytes() { release_zeroed(reinterpret_cast<std::byte*>(data_), size_); }

  uint8_t& operator[](size_t i) noexcept { return data_[i]; }
  uint8_t operator[](size_t i) const noexcept { return data_[i]; }
  void prefault() noexcept { fault_in(reinterpret_cast<std::byte*>(data_), size_); }

 private:
  uint8_t* data_ = nullptr;
  size_t size_ = 0;
};

// Open-addressing table over a TrackedArray of slots. Slot: trivially copyable, with a member
// `key` of type Slot::Key (equality-comparable; the value-initialised key means "empty") and a
// static `uint64_t hash(const Key&)`; optionally `static constexpr bool kDistanceBytes` to choose
// how erase walks a cluster (below; tests set it to cover both ways with small slots).
//
// Growth is incremental. Past its load limit the table takes twice the slots and from then on
// moves the old array's keys over with the inserts and erases, whole clusters at a time, about
// kMoveSlotsPerInsert old slots each: no insert pays for a whole rehash, which at a million keys
// held the shard's thread for tens to hundreds of ms (perf/RESULTS.md, "Growth"). While a move is
// under way a key is in exactly one of the two arrays: lookups try the new one, then the old;
// inserts go to the new one; erase works in either. Indexes below capacity() are slots of the
// new array, those from capacity() on are slots of the old one (capacity() + i); an insert or an
// erase may invalidate any index. The old array and the move's cursor are state like the slots
// (snapshot regions), and the move advances only with inserts and erases, so the layout is a
// function of the operations alone: a restored table evolves byte for byte like the one it was
// taken from. A table smaller than `incremental_from_bytes` still grows at once: a rehash that
// small costs less than a second probe on every lookup meanwhile.
template <typename Slot>
class FlatTable {
 public:
  using Key = typename Slot::Key;
  static constexpr size_t kMinCapacity = 16;
  // Old slots an insert moves on (a whole cluster at least). At least 2: the move, C old slots,
  // must end within the C/4 (small tables) or 3C/4 inserts that bring the doubled table to its
  // own limit.
  static constexpr size_t kMoveSlotsPerInsert = 16;
  static constexpr size_t kIncrementalFromBytes = size_t{64} << 10;
  // Whether the table keeps a byte per slot of distance from home, for erase to walk instead of
  // the slots. It pays where every step of a slot walk loads a new cache line: slots of a line or
  // more. With smaller slots the next slot is mostly in the line already loaded, and the bytes
  // are one more line to miss on: with bytes for every table, risk at 10M accounts (32-byte
  // slots, an erase per event) ran 9-38 % slower in four runs, while replay at 10k accounts,
  // whose gain is the fraud history's 64-byte slots, ran 1.28-1.31x faster (perf/RESULTS.md,
  // "Replay").
  static constexpr bool kDistanceBytes = [] {
    if constexpr (requires { Slot::kDistanceBytes; }) {
      return Slot::kDistanceBytes;
    } else {
      return sizeof(Slot) >= 64;
    }
  }();

  FlatTable(StateCapture& capture, std::string_view name,
            size_t incremental_from_bytes = kIncrementalFromBytes)
      : slots_(capture, std::string(name) + ".slots"),
        old_slots_(capture, std::string(name) + ".old_slots"),
        meta_(capture, std::string(name) + ".meta"),
        incremental_from_bytes_(incremental_from_bytes) {
    meta_.reserve(1, 0);
    meta_.set_size(1);
    slots_.reserve(kMinCapacity, 0);
    slots_.set_size(kMinCapacity);
    if constexpr (kDistanceBytes) distance_ = ZeroedBytes(kMinCapacity);
    on_capacity();
  }

  size_t size() const noexcept { return meta_[0].count; }
  size_t capacity() const noexcept { return slots_.size(); }
  bool empty() const noexcept { return size() == 0; }
  // Whether keys are still moving from the old array (then indexes run up to index_end()).
  bool growing() const noexcept { return old_slots_.size() != 0; }
  size_t index_end() const noexcept { return slots_.size() + old_slots_.size(); }

  // The most a table holds before it doubles: half its slots while the doubled table stays
  // within kSmallTableBytes, three quarters beyond. With linear probing a lookup's probes, each
  // a data-dependent branch, climb steeply with the load (a miss probes ~2.5 slots on average
  // at 1/2, ~8.5 at 3/4: Knuth), so a small table, which costs little memory and sits in
  // cache, buys shorter probes with twice the slots. A large one (the state of a million
  // accounts) spends memory, and snapshot bytes, on every empty slot: it stays at 3/4.
  // Replay of 10k accounts ran ~10 % faster (perf/RESULTS.md, "Replay").
  static constexpr size_t kSmallTableBytes = size_t{4} << 20;
  static bool over_load(size_t keys, size_t capacity) noexcept {
    if (capacity * sizeof(Slot) * 2 <= kSmallTableBytes) return keys * 2 > capacity;
    return keys * 4 > capacity * 3;
  }

  // Grows now, before the traffic, so that `keys` entries fit without a growth later, and has
  // the kernel back the slots now rather than on the first writes under traffic.
  void reserve(size_t keys) {
    finish_growth();
    while (over_load(keys, capacity())) {
      start_growth(false);
      finish_growth();
    }
    slots_.prefault();
    if constexpr (kDistanceBytes) distance_.prefault();
  }
  // Moves every key still in the old array (a whole rehash's work at once).
  void finish_growth() {
    while (growing()) move_some(SIZE_MAX);
  }

  static bool is_empty_key(const Key& k) noexcept { return k == Key{}; }

  // Index of the slot holding `key`, or -1.
  int64_t find_index(const Key& key) const noexcept {
    assert(!is_empty_key(key));
    const int64_t i = probe(slots_, shift_, key);
    if (i >= 0 || !growing()) [[likely]] {
      return i;
    }
    return find_old(key);
  }
  const Slot* find(const Key& key) const noexcept {
    const int64_t i = find_index(key);
    return i < 0 ? nullptr : &at(static_cast<size_t>(i));
  }
  // The slot's home line in the new array, for software prefetching ahead of a lookup.
  const Slot* home_slot(const Key& key) const noexcept { return &slots_[home(key)]; }

  // The slot of `key`, inserted (zero but for the key) if absent. Indexes change when the table
  // grows, so use the returned one.
  std::pair<size_t, bool> insert(const Key& key) {
    assert(!is_empty_key(key));
    if (growing()) [[unlikely]] {
      move_some(kMoveSlotsPerInsert);
    }
    if (over_load(size() + 1, capacity())) [[unlikely]] {
      grow();
    }
    const size_t mask = capacity() - 1;
    size_t i = home(key);
    size_t d = 0;
    for (;; i = (i + 1) & mask, ++d) {
      const Slot& s = slots_[i];
      if (s.key == key) return {i, false};
      if (is_empty_key(s.key)) break;
    }
    if (growing()) [[unlikely]] {
      const int64_t j = find_old(key);
      if (j >= 0) return {static_cast<size_t>(j), false};
    }
    slots_.mut(i).key = key;
    set_distance(i, d);
    if (++meta_.mut(0).count == prepare_at_ && prepared_for_ != capacity()) [[unlikely]] {
      prepared_for_ = capacity();
      prepare_next();
    }
    return {i, true};
  }

  const Slot& at(size_t i) const noexcept {
    const size_t cap = capacity();
    if (i < cap) [[likely]] {
      return slots_[i];
    }
    return old_slots_[i - cap];
  }
  Slot& mut(size_t i) {
    const size_t cap = capacity();
    if (i < cap) [[likely]] {
      return slots_.mut(i);
    }
    return old_mut(i - cap);
  }

  // Removes slot i, shifting the rest of its cluster back so no lookup passes a hole. With
  // distance bytes the walk reads those, and touches only the slots that move.
  void erase_at(size_t i) {
    const size_t cap = capacity();
    if (i >= cap) [[unlikely]] {
      erase_old(i - cap);
      --meta_.mut(0).count;
      move_some(kMoveSlotsPerInsert);
      return;
    }
    const size_t mask = cap - 1;
    size_t hole = i;
    for (size_t k = (i + 1) & mask;; k = (k + 1) & mask) {
      size_t from_home;
      if constexpr (kDistanceBytes) {
        const uint8_t b = distance_[k];
        if (b == 0) break;
        from_home = b != kFar ? b - 1u : (k - home(slots_[k].key)) & mask;
      } else {
        const Slot& s = slots_[k];
        if (is_empty_key(s.key)) break;
        from_home = (k - home(s.key)) & mask;
      }
      const size_t from_hole = (k - hole) & mask;
      if (from_home >= from_hole) {
        slots_.mut(hole) = slots_[k];
        set_distance(hole, from_home - from_hole);
        hole = k;
      }
    }
    slots_.mut(hole) = Slot{};
    set_distance_empty(hole);
    --meta_.mut(0).count;
    if (growing()) [[unlikely]] {
      move_some(kMoveSlotsPerInsert);
    }
  }

  // Calls f(slot) for every occupied slot, in index order.
  template <typename F>
  void for_each(F&& f) const {
    for (const TrackedArray<Slot>* a : {&slots_, &old_slots_}) {
      const size_t n = a->size();
      for (size_t i = 0; i < n; ++i) {
        const Slot& s = (*a)[i];
        if (!is_empty_key(s.key)) f(s);
      }
    }
  }

  // Restores from the next snapshot regions (slots, old slots, then meta), checking what can be
  // checked.
  absl::Status restore(RegionReader& in);

 private:
  struct Meta {
    uint64_t count = 0;   // keys, in both arrays
    uint64_t cursor = 0;  // the next old slot the move looks at
    uint64_t left = 0;    // old slots it has not looked at (0 when not growing)
  };

  size_t home(const Key& key) const noexcept {
    return static_cast<size_t>(Slot::hash(key) >> shift_);
  }
  // After the slot array changed size: the hash shift, and when to ask for the next array.
  void on_capacity() noexcept {
    const size_t cap = capacity();
    shift_ = 64 - std::countr_zero(cap);
    const size_t limit = cap * sizeof(Slot) * 2 <= kSmallTableBytes ? cap / 2 : cap / 4 * 3;
    prepare_at_ = limit / 3 * 2;
  }
  // Two thirds of the way to the load limit: has the next (doubled) arrays faulted in by the
  // background thread meanwhile (prepare_zeroed), so the growth does not fault on this thread.
  [[gnu::noinline]] void prepare_next() {
    prepare_zeroed(capacity() * 2 * sizeof(Slot));
    if constexpr (kDistanceBytes) prepare_zeroed(capacity() * 2);
  }

  // Index of `key` in `a` (a power-of-two array whose homes take the hash's top bits past
  // `shift`), or -1.
  static int64_t probe(const TrackedArray<Slot>& a, int shift, const Key& key) noexcept {
    const size_t mask = a.size() - 1;
    for (size_t i = static_cast<size_t>(Slot::hash(key) >> shift);; i = (i + 1) & mask) {
      const Slot& s = a[i];
      if (s.key == key) return static_cast<int64_t>(i);
      if (is_empty_key(s.key)) return -1;
    }
  }

  // distance_[i] (kDistanceBytes only; empty otherwise): 0 if slot i is empty, else 1 + how far
  // the key sits past its home slot, or kFar from kFar - 1 on (the erase then hashes the key). A
  // cache line of it covers 64 slots, so an erase walks its cluster without loading a slot line
  // per step. Derived from the slots, so not part of a snapshot: growth and restore() rebuild
  // it. Only the new array has them; erases in the old one walk its slots.
  static constexpr uint8_t kFar = 255;
  static uint8_t distance_byte(size_t d) noexcept {
    return d < kFar - 1u ? static_cast<uint8_t>(d + 1) : kFar;
  }
  void set_distance(size_t i, size_t d) noexcept {
    if constexpr (kDistanceBytes) distance_[i] = distance_byte(d);
  }
  void set_distance_empty(size_t i) noexcept {
    if constexpr (kDistanceBytes) distance_[i] = 0;
  }

  [[gnu::noinline]] void grow() {
    finish_growth();  // never left over with kMoveSlotsPerInsert >= 2; kept for safety
    const bool at_once = capacity() * sizeof(Slot) < incremental_from_bytes_;
    start_growth(true);
    if (at_once) finish_growth();
  }

  // Doubles the slots; the current ones become the old array, whose keys move_some() moves.
  // under_traffic: the new arrays come from allocate_prepared (faulted in ahead when ready), not
  // from allocate_zeroed (for reserve(), which faults them in itself).
  [[gnu::noinline]] void start_growth(bool under_traffic) {
    const size_t old_cap = capacity();
    const size_t new_cap = old_cap * 2;
    const size_t bytes = new_cap * sizeof(Slot);
    auto* block =
        reinterpret_cast<Slot*>(under_traffic ? allocate_prepared(bytes) : allocate_zeroed(bytes));
    old_slots_.take_storage_from(slots_);
    slots_.adopt_block(block, new_cap, new_cap);
    if constexpr (kDistanceBytes) distance_ = ZeroedBytes(new_cap, under_traffic);
    on_capacity();
    // The move starts after an empty slot (a table under its load limit has one) and takes a
    // cluster whole, so the slots it has passed are empty and end in an empty one: no key still
    // in the old array has its home among them, and lookups and erases there stay correct.
    size_t empty = 0;
    while (!is_empty_key(old_slots_[empty].key)) ++empty;
    Meta& m = meta_.mut(0);
    m.cursor = (empty + 1) & (old_cap - 1);
    m.left = old_cap - 1;
  }

  // Moves the keys of the next `budget` old slots, and of the rest of the cluster the last of
  // them is in, to the new array; releases the old array once every slot is passed.
  [[gnu::noinline]] void move_some(size_t budget) {
    const Meta& now = meta_[0];
    size_t cursor = now.cursor;
    size_t left = now.left;
    const size_t mask = old_slots_.size() - 1;
    while (left > 0 && budget > 0) {
      if (!is_empty_key(old_slots_[cursor].key)) {
        do {
          place(old_slots_[cursor]);
          old_slots_.mut(cursor) = Slot{};
          cursor = (cursor + 1) & mask;
          --left;
          if (budget > 1) --budget;
        } while (left > 0 && !is_empty_key(old_slots_[cursor].key));
      }
      if (left == 0) break;
      cursor = (cursor + 1) & mask;  // an empty slot
      --left;
      --budget;
    }
    Meta& m = meta_.mut(0);
    m.cursor = left > 0 ? cursor : 0;
    m.left = left;
    if (left == 0) old_slots_.release_later();
  }
  // The index (capacity() + i) of `key` in the old array, or -1. Off the common path.
  [[gnu::noinline]] int64_t find_old(const Key& key) const noexcept {
    const int64_t j = probe(old_slots_, shift_ + 1, key);
    return j < 0 ? -1 : static_cast<int64_t>(capacity()) + j;
  }
  [[gnu::noinline]] Slot& old_mut(size_t i) { return old_slots_.mut(i); }
  // Puts a key from the old array into the new one (where it is not).
  void place(const Slot& s) {
    const size_t mask = capacity() - 1;
    const size_t h = home(s.key);
    size_t j = h;
    while (!is_empty_key(slots_[j].key)) j = (j + 1) & mask;
    slots_.mut(j) = s;
    set_distance(j, (j - h) & mask);
  }
  // erase_at for old slot i: the same backward shift, over the old array's slots.
  [[gnu::noinline]] void erase_old(size_t i) {
    const size_t mask = old_slots_.size() - 1;
    size_t hole = i;
    for (size_t k = (i + 1) & mask;; k = (k + 1) & mask) {
      const Slot& s = old_slots_[k];
      if (is_empty_key(s.key)) break;
      const size_t from_home = (k - static_cast<size_t>(Slot::hash(s.key) >> (shift_ + 1))) & mask;
      if (from_home >= ((k - hole) & mask)) {
        old_slots_.mut(hole) = s;
        hole = k;
      }
    }
    old_slots_.mut(hole) = Slot{};
  }

  // Checks that every key of `a` sits where a lookup finds it (at its home slot or after it
  // with no empty slot between; homes from the hash's top bits past `shift`); returns how many
  // keys it holds. set_distances: rebuild distance_ from it (the new array).
  absl::StatusOr<size_t> check_layout(const TrackedArray<Slot>& a, int shift, bool set_distances);

  TrackedArray<Slot> slots_;
  TrackedArray<Slot> old_slots_;  // while growing: the slots before the doubling
  TrackedArray<Meta> meta_;
  ZeroedBytes distance_;
  int shift_ = 64;
  size_t prepare_at_ = 0;    // the key count at which to prepare_next()
  size_t prepared_for_ = 0;  // the capacity whose successor was asked for
  size_t incremental_from_bytes_;
};

template <typename Slot>
absl::StatusOr<size_t> FlatTable<Slot>::check_layout(const TrackedArray<Slot>& a, int shift,
                                                     bool set_distances) {
  // One pass from an empty slot (a table under its load limit has one), tracking where the
  // current cluster began. A table laid out by another hash, or damaged, is refused here
  // instead of restoring keys that lookups then miss.
  const size_t n = a.size();
  const size_t mask = n - 1;
  size_t empty = 0;
  while (empty < n && !is_empty_key(a[empty].key)) ++empty;
  if (empty == n) return absl::DataLossError(a.name() + ": no empty slot");
  size_t occupied = 0;
  size_t cluster = (empty + 1) & mask;  // first slot of the current cluster
  for (size_t step = 1; step < n; ++step) {
    const size_t i = (empty + step) & mask;
    const Slot& s = a[i];
    if (is_empty_key(s.key)) {
      cluster = (i + 1) & mask;
      continue;
    }
    ++occupied;
    const size_t d = (i - static_cast<size_t>(Slot::hash(s.key) >> shift)) & mask;
    if (d > ((i - cluster) & mask)) {
      return absl::DataLossError(absl::StrCat(a.name(), ": the key in slot ", i,
                                              " is not where a lookup finds it (a table written "
                                              "with another hash function, or damaged)"));
    }
    if (set_distances) set_distance(i, d);
  }
  return occupied;
}

template <typename Slot>
absl::Status FlatTable<Slot>::restore(RegionReader& in) {
  const std::span<const std::byte> slots = in.next();
  const std::span<const std::byte> old = in.next();
  const std::span<const std::byte> meta = in.next();
  const size_t n = slots.size() / sizeof(Slot);
  if (n < kMinCapacity || !std::has_single_bit(n) || slots.size() % sizeof(Slot) != 0) {
    return absl::DataLossError(slots_.name() + ": slot array size is not a power of two");
  }
  const size_t old_n = old.size() / sizeof(Slot);
  if (old.size() % sizeof(Slot) != 0 || (old_n != 0 && old_n * 2 != n)) {
    return absl::DataLossError(old_slots_.name() + ": not half the slots");
  }
  if (meta.size() != sizeof(Meta)) return absl::DataLossError(meta_.name() + ": bad size");
  Meta m;
  std::memcpy(&m, meta.data(), sizeof(Meta));
  if (m.count * 4 > n * 3) return absl::DataLossError(meta_.name() + ": count over the load limit");
  if (old_n == 0 ? (m.cursor != 0 || m.left != 0)
                 : (m.cursor >= old_n || m.left == 0 || m.left >= old_n)) {
    return absl::DataLossError(meta_.name() + ": the growth cursor is out of range");
  }
  if (absl::Status s = slots_.assign_bytes(slots, n); !s.ok()) return s;
  if (old_n == 0) {
    old_slots_.release();
  } else if (absl::Status s = old_slots_.assign_bytes(old, old_n); !s.ok()) {
    return s;
  }
  if (absl::Status s = meta_.assign_bytes(meta, 1); !s.ok()) return s;
  on_capacity();
  if constexpr (kDistanceBytes) distance_ = ZeroedBytes(n);
  absl::StatusOr<size_t> occupied = check_layout(slots_, shift_, true);
  if (!occupied.ok()) return occupied.status();
  if (old_n != 0) {
    // The slots the move has passed, and the empty one it started after, hold no key; every key
    // left is in the old array only.
    const size_t mask = old_n - 1;
    const size_t passed = old_n - 1 - m.left;
    for (size_t k = 0; k <= passed; ++k) {
      if (!is_empty_key(old_slots_[(m.cursor - 1 - k) & mask].key)) {
        return absl::DataLossError(old_slots_.name() + ": a key behind the growth cursor");
      }
    }
    absl::StatusOr<size_t> old_occupied = check_layout(old_slots_, shift_ + 1, false);
    if (!old_occupied.ok()) return old_occupied.status();
    bool twice = false;
    for (size_t k = 0; k < old_n && !twice; ++k) {
      const Slot& s = old_slots_[k];
      twice = !is_empty_key(s.key) && probe(slots_, shift_, s.key) >= 0;
    }
    if (twice) return absl::DataLossError(old_slots_.name() + ": a key in both arrays");
    *occupied += *old_occupied;
  }
  if (*occupied != m.count) {
    return absl::DataLossError(meta_.name() + ": count does not match the occupied slots");
  }
  return absl::OkStatus();
}

// Count and sum of the entries of a window.
struct WindowStats {
  int64_t count = 0;
  Int128 sum = 0;
};

// Per-key time-ordered entries (Entry: trivially copyable, `int64_t time` member; an
// `int64_t amount` member, if present, is what query() sums). Entries of equal time keep their
// insertion order.
template <typename Entry, size_t kInline>
class HistoryState {
 public:
  struct Slot {
    using Key = uint64_t;
    uint64_t key = 0;
    uint32_t count = 0;
    uint32_t run = 0;  // count > kInline: offset of the run's header unit in the pool
    Entry inline_entries[kInline] = {};
    static uint64_t hash(uint64_t k) noexcept { return state_hash(k); }
  };

  HistoryState(StateCapture& capture, std::string_view name)
      : table_(capture, name),
        pool_(capture, std::string(name) + ".pool"),
        meta_(capture, std::string(name) + ".pool_meta") {
    meta_.reserve(1, 0);
    meta_.set_size(1);
    Meta& m = meta_.mut(0);
    for (uint32_t& head : m.free_heads) head = kNil;
  }

  size_t keys() const noexcept { return table_.size(); }
  void reserve_keys(size_t keys) { table_.reserve(keys); }
  size_t entries() const noexcept { return meta_[0].entries; }
  size_t pool_units() const noexcept { return pool_.size(); }
  const FlatTable<Slot>& table() const noexcept { return table_; }

  // The entries of `key` (empty if none), valid until the next change.
  std::span<const Entry> get(uint64_t key) const noexcept {
    const Slot* s = table_.find(key);
    if (s == nullptr) return {};
    return {entries_of(*s), s->count};
  }

  // Count (and sum of amounts) of the entries of `key` with lo < time <= hi.
  WindowStats query(uint64_t key, int64_t lo, int64_t hi) const noexcept {
    return query(find(key), lo, hi);
  }

  // Adds `e` after the last entry of `key` with time <= e.time.
  void add(uint64_t key, const Entry& e) { add_at(table_.insert(key).first, e); }

  // A lookup that query() and add() can reuse: valid until the next change to this state.
  struct Found {
    uint64_t key;
    int64_t index;  // -1: the key has no entries
  };
  Found find(uint64_t key) const noexcept { return {key, table_.find_index(key)}; }
  WindowStats query(const Found& f, int64_t lo, int64_t hi) const noexcept {
    if (f.index < 0) return {};
    const Slot& s = table_.at(static_cast<size_t>(f.index));
    return window(entries_of(s), s.count, lo, hi);
  }
  // add(f.key, e) without a second lookup. REQUIRES: no change to the state since find().
  void add(const Found& f, const Entry& e) {
    add_at(f.index >= 0 ? static_cast<size_t>(f.index) : table_.insert(f.key).first, e);
  }

  // query(key, lo, hi) of the entries before `e`, then add(key, e): one lookup for both.
  WindowStats query_then_add(uint64_t key, int64_t lo, int64_t hi, const Entry& e) {
    const size_t i = table_.insert(key).first;
    const Slot& s = table_.at(i);
    const WindowStats stats = window(entries_of(s), s.count, lo, hi);
    add_at(i, e);
    return stats;
  }

 private:
  static WindowStats window(const Entry* v, size_t n, int64_t lo, int64_t hi) noexcept {
    WindowStats stats;
    if (n <= kInline) {  // the slot's own array: test every place, no branch on the times
      for (size_t i = 0; i < kInline; ++i) {
        const bool in = (i < n) & (v[i].time > lo) & (v[i].time <= hi);
        stats.count += in;
        if constexpr (requires { v[i].amount; }) stats.sum += v[i].amount & -int64_t{in};
      }
      return stats;
    }
    const Entry* first =
        std::upper_bound(v, v + n, lo, [](int64_t t, const Entry& e) { return t < e.time; });
    for (const Entry* e = first; e != v + n && e->time <= hi; ++e) {
      ++stats.count;
      if constexpr (requires { e->amount; }) stats.sum += e->amount;
    }
    return stats;
  }

  void add_at(size_t i, const Entry& e) {
    const Slot& s = table_.at(i);
    const uint32_t n = s.count;
    if (n < kInline) {
      Slot& w = table_.mut(i);
      const size_t at = position(w.inline_entries, n, e.time);
      std::memmove(&w.inline_entries[at + 1], &w.inline_entries[at], (n - at) * sizeof(Entry));
      w.inline_entries[at] = e;
      w.count = n + 1;
    } else if (n == kInline) {
      const uint32_t run = allocate_run(0);
      Entry* dst = pool_.mut_range(run + 1, n + 1);
      const size_t at = position(s.inline_entries, n, e.time);
      std::memcpy(dst, s.inline_entries, at * sizeof(Entry));
      dst[at] = e;
      std::memcpy(dst + at + 1, s.inline_entries + at, (n - at) * sizeof(Entry));
      Slot& w = table_.mut(i);
      for (Entry& x : w.inline_entries) x = Entry{};
      w.run = run;
      w.count = n + 1;
    } else {
      uint32_t run = s.run;
      if (n == run_capacity(run)) run = move_run(run, n, run_class(run) + 1);
      const Entry* v = pool_.data() + run + 1;
      const size_t at = position(v, n, e.time);
      Entry* w = pool_.mut_range(run + 1 + at, n - at + 1);
      std::memmove(w + 1, w, (n - at) * sizeof(Entry));
      w[0] = e;
      Slot& ws = table_.mut(i);
      ws.run = run;
      ws.count = n + 1;
    }
    ++meta_.mut(0).entries;
  }

 public:
  // Drops the entries of `key` with time <= cutoff; forgets the key when none is left.
  void evict(uint64_t key, int64_t cutoff) {
    const int64_t found = table_.find_index(key);
    if (found < 0) return;
    const auto i = static_cast<size_t>(found);
    const Slot& s = table_.at(i);
    const uint32_t n = s.count;
    const auto k = static_cast<uint32_t>(count_until(entries_of(s), n, cutoff));
    if (k == 0) return;
    meta_.mut(0).entries -= k;
    const uint32_t left = n - k;
    if (left == 0) {
      if (n > kInline) free_run(s.run);
      table_.erase_at(i);
      return;
    }
    if (n <= kInline) {
      Slot& w = table_.mut(i);
      std::memmove(&w.inline_entries[0], &w.inline_entries[k], left * sizeof(Entry));
      for (uint32_t j = left; j < n; ++j) w.inline_entries[j] = Entry{};
      w.count = left;
      return;
    }
    const uint32_t run = s.run;
    if (left <= kInline) {
      Slot& w = table_.mut(i);
      std::memcpy(w.inline_entries, pool_.data() + run + 1 + k, left * sizeof(Entry));
      w.count = left;
      w.run = 0;
      free_run(run);
      return;
    }
    const uint32_t cls = run_class(run);
    if (cls > 0 && left <= run_capacity(run) / 4) {
      // Shrink so a burst does not pin a large run: copy the survivors into a smaller class.
      const uint32_t smaller = allocate_run(cls - 1);
      std::memcpy(pool_.mut_range(smaller + 1, left), pool_.data() + run + 1 + k,
                  left * sizeof(Entry));
      free_run(run);
      Slot& w = table_.mut(i);
      w.run = smaller;
      w.count = left;
      return;
    }
    Entry* w = pool_.mut_range(run + 1, left);
    std::memmove(w, w + k, left * sizeof(Entry));
    table_.mut(i).count = left;
  }

  template <typename F>
  void for_each(F&& f) const {
    table_.for_each(
        [&](const Slot& s) { f(s.key, std::span<const Entry>(entries_of(s), s.count)); });
  }

  absl::Status restore(RegionReader& in);

 private:
  static constexpr uint32_t kNil = UINT32_MAX;
  static constexpr int kClasses = 27;
  static constexpr uint32_t kMinRunUnits = 8;  // class c: 8 << c units, one of them the header
  static_assert(sizeof(Entry) >= 8, "a run header must fit in one entry");
  static_assert(kInline + 1 <= kMinRunUnits - 1);

  struct Meta {
    uint64_t entries = 0;
    uint32_t free_heads[kClasses] = {};
    uint32_t reserved = 0;
  };
  struct RunHeader {
    uint32_t cls = 0;
    uint32_t next_free = 0;
  };

  // How many of v[0, n) (sorted by time) have time <= t. REQUIRES: n <= kInline only for a
  // slot's inline array, which it then reads whole, without a branch on the times (the binary
  // search's branches mispredicted on most evictions).
  static size_t count_until(const Entry* v, size_t n, int64_t t) noexcept {
    if (n <= kInline) {
      size_t k = 0;
      for (size_t i = 0; i < kInline; ++i) k += (i < n) & (v[i].time <= t);
      return k;
    }
    return static_cast<size_t>(
        std::upper_bound(v, v + n, t, [](int64_t x, const Entry& e) { return x < e.time; }) - v);
  }
  // Where an entry of `time` goes: after every entry of time <= time. Out-of-order entries land
  // near the back of a run: scan back from its end.
  static size_t position(const Entry* v, size_t n, int64_t time) noexcept {
    if (n <= kInline) return count_until(v, n, time);
    size_t at = n;
    while (at > 0 && v[at - 1].time > time) --at;
    return at;
  }
  const Entry* entries_of(const Slot& s) const noexcept {
    return s.count <= kInline ? s.inline_entries : pool_.data() + s.run + 1;
  }
  RunHeader header(uint32_t run) const noexcept {
    RunHeader h;
    std::memcpy(static_cast<void*>(&h), static_cast<const void*>(&pool_[run]), sizeof(h));
    return h;
  }
  void set_header(uint32_t run, RunHeader h) {
    std::memcpy(static_cast<void*>(&pool_.mut(run)), &h, sizeof(h));
  }
  uint32_t run_class(uint32_t run) const noexcept { return header(run).cls; }
  uint32_t run_capacity(uint32_t run) const noexcept {
    return (kMinRunUnits << run_class(run)) - 1;
  }

  uint32_t allocate_run(uint32_t cls) {
    uint32_t run = meta_[0].free_heads[cls];
    if (run != kNil) {
      meta_.mut(0).free_heads[cls] = header(run).next_free;
    } else {
      const size_t units = size_t{kMinRunUnits} << cls;
      const size_t used = pool_.size();
      if (used + units > kNil) abort_pool_full();
      if (used + units > pool_.capacity()) {
        pool_.grow_prepared(next_pool_capacity(used + units), used);
      } else if (used + units > pool_.capacity() / 4 * 3 && prepared_for_ != pool_.capacity())
          [[unlikely]] {
        // Three quarters full: have the next pool faulted in ahead (prepare_zeroed).
        prepared_for_ = pool_.capacity();
        prepare_zeroed(next_pool_capacity(pool_.capacity() + 1) * sizeof(Entry));
      }
      pool_.set_size(used + units);
      run = static_cast<uint32_t>(used);
    }
    set_header(run, RunHeader{cls, 0});
    return run;
  }
  void free_run(uint32_t run) {
    const uint32_t cls = run_class(run);
    set_header(run, RunHeader{cls, meta_[0].free_heads[cls]});
    meta_.mut(0).free_heads[cls] = run;
  }
  // Copies n entries to a new run of class `cls` and frees the old one.
  uint32_t move_run(uint32_t run, uint32_t n, uint32_t cls) {
    if (cls >= kClasses) abort_pool_full();
    const uint32_t to = allocate_run(cls);
    std::memcpy(pool_.mut_range(to + 1, n), pool_.data() + run + 1, n * sizeof(Entry));
    free_run(run);
    return to;
  }
  [[noreturn]] static void abort_pool_full();
  // The pool's capacity once it must hold `units`: doubled at least.
  size_t next_pool_capacity(size_t units) const noexcept {
    return std::max(units, std::max<size_t>(pool_.capacity() * 2, 1024));
  }

  FlatTable<Slot> table_;
  TrackedArray<Entry> pool_;
  TrackedArray<Meta> meta_;
  size_t prepared_for_ = 0;  // the pool capacity whose successor was asked for
};

[[noreturn]] void abort_state_pool_full();

template <typename Entry, size_t kInline>
void HistoryState<Entry, kInline>::abort_pool_full() {
  abort_state_pool_full();
}

template <typename Entry, size_t kInline>
absl::Status HistoryState<Entry, kInline>::restore(RegionReader& in) {
  if (absl::Status s = table_.restore(in); !s.ok()) return s;
  const std::span<const std::byte> pool = in.next();
  const std::span<const std::byte> pool_meta = in.next();
  if (pool.size() % sizeof(Entry) != 0 || pool.size() / sizeof(Entry) >= kNil) {
    return absl::DataLossError(pool_.name() + ": bad size");
  }
  if (pool_meta.size() != sizeof(Meta)) return absl::DataLossError(meta_.name() + ": bad size");
  const size_t units = pool.size() / sizeof(Entry);
  if (absl::Status s = pool_.assign_bytes(pool, units); !s.ok()) return s;
  if (absl::Status s = meta_.assign_bytes(pool_meta, 1); !s.ok()) return s;
  // Every reference must stay inside the pool: a bad one would read or write out of bounds.
  uint64_t total = 0;
  bool ok = true;
  table_.for_each([&](const Slot& s) {
    total += s.count;
    if (s.count > kInline) {
      if (static_cast<size_t>(s.run) + 1 > units) {
        ok = false;
        return;
      }
      const RunHeader h = header(s.run);
      if (h.cls >= kClasses || s.run + (size_t{kMinRunUnits} << h.cls) > units ||
          s.count > run_capacity(s.run)) {
        ok = false;
      }
    }
  });
  for (uint32_t head : meta_[0].free_heads) ok = ok && (head == kNil || head < units);
  if (!ok || total != meta_[0].entries) {
    return absl::DataLossError(pool_.name() + ": inconsistent run references");
  }
  return absl::OkStatus();
}

// A per-key map from a 32-bit user key to a trivially copyable Value (Flink's MapState), as one
// FlatTable keyed by (key, user key). The value-initialised Value is "absent": put() of it
// erases, so an account whose values all return to zero holds no state.
template <typename Value>
class MapState {
 public:
  struct Key {
    uint64_t key = 0;
    uint32_t user_key = 0;
    uint32_t reserved = 0;
    bool operator==(const Key&) const = default;
  };
  struct Slot {
    using Key = MapState::Key;
    Key key;
    Value value{};
    static uint64_t hash(const Key& k) noexcept {
      return state_hash(k.key ^ (uint64_t{k.user_key} * 0x9e3779b97f4a7c15ull));
    }
  };

  MapState(StateCapture& capture, std::string_view name) : table_(capture, name) {}
  void reserve_keys(size_t keys) { table_.reserve(keys); }

  Value get(uint64_t key, uint32_t user_key) const noexcept { return find(key, user_key).value; }
  void put(uint64_t key, uint32_t user_key, const Value& value) {
    put(find(key, user_key), value);
  }

  // A lookup that a put() can reuse: valid until the next change to this map.
  struct Found {
    Key key;
    int64_t index;  // -1: absent
    Value value;    // Value{} when absent
  };
  Found find(uint64_t key, uint32_t user_key) const noexcept {
    const Key k{key, user_key};
    const int64_t i = table_.find_index(k);
    return {k, i, i < 0 ? Value{} : table_.at(static_cast<size_t>(i)).value};
  }
  // put(f.key, value) without a second lookup. REQUIRES: no change to the map since find().
  void put(const Found& f, const Value& value) {
    if (value == Value{}) {
      if (f.index >= 0) table_.erase_at(static_cast<size_t>(f.index));
      return;
    }
    const size_t i = f.index >= 0 ? static_cast<size_t>(f.index) : table_.insert(f.key).first;
    table_.mut(i).value = value;
  }
  size_t size() const noexcept { return table_.size(); }
  const FlatTable<Slot>& table() const noexcept { return table_; }
  const Slot* home_slot(uint64_t key, uint32_t user_key) const noexcept {
    return table_.home_slot(Key{key, user_key});
  }
  template <typename F>
  void for_each(F&& f) const {
    table_.for_each([&](const Slot& s) { f(s.key.key, s.key.user_key, s.value); });
  }
  absl::Status restore(RegionReader& in) { return table_.restore(in); }

 private:
  FlatTable<Slot> table_;
};

// A single trivially copyable record kept as a one-element region (a shard's clock and such).
template <typename T>
class ValueState {
 public:
  ValueState(StateCapture& capture, std::string_view name) : array_(capture, name) {
    array_.reserve(1, 0);
    array_.set_size(1);
    array_.mut(0) = T{};
  }
  const T& get() const noexcept { return array_[0]; }
  T& mut() { return array_.mut(0); }
  absl::Status restore(RegionReader& in) {
    const std::span<const std::byte> bytes = in.next();
    if (bytes.size() != sizeof(T)) return absl::DataLossError(array_.name() + ": bad size");
    return array_.assign_bytes(bytes, 1);
  }

 private:
  TrackedArray<T> array_;
};

// An event-time timer: fire `key` once the watermark reaches `time`.
struct Timer {
  int64_t time = 0;
  uint64_t key = 0;
  bool operator==(const Timer&) const = default;
};

// Event-time timers in time order: a FIFO ring for timers that arrive in order, a binary heap
// for the rest. Timers equal to the last one registered are dropped (they would fire together).
class TimerQueue {
 public:
  TimerQueue(StateCapture& capture, std::string_view name);

  // A timer that fires exactly when the watermark reaches `time`, in time order with the rest:
  // O(1) if no timer in the FIFO is later, else O(log n) through the heap.
  void add(int64_t time, uint64_t key);
  // A cleanup timer: fires once the watermark reaches `time`, or later. It joins the FIFO
  // whatever its time, taking the time of the latest FIFO timer if that is later, so it fires
  // with that one, and fire() sees the time it was queued with. Always O(1), and its key can be
  // prefetched (fifo_key_ahead). For work whose moment changes no answer (evicting state no
  // future event can see); with times of event time plus a constant, a cleanup timer fires at
  // most as late as the event's out-of-orderness.
  void add_cleanup(int64_t time, uint64_t key) {
    Timer t{time, key};
    if (meta_[0].fifo_count > 0) t.time = std::max(time, fifo_back().time);
    if (repeats_last(t)) return;
    push_fifo(t);
  }

  // Sizes the arrays for this many pending timers up front, `out_of_order` of them exact timers
  // registered out of time order (the heap), so there is no growth while they come.
  void reserve(size_t timers, size_t out_of_order);

  // Pops every timer with time <= now in time order, calling fire(key, time) for each.
  template <typename F>
  void advance(int64_t now, F&& fire) {
    // Only the FIFO while the heap is empty (always, for a queue of cleanup timers): no choice
    // between two fronts. fire() may add a timer out of order; then on with both.
    while (meta_[0].heap_size == 0) {
      const Meta& m = meta_[0];
      if (m.fifo_count == 0) return;
      const Timer t = ring_[m.fifo_head];
      if (t.time > now) return;
      pop_fifo();
      fire(t.key, t.time);
    }
    for (;;) {
      const Meta& m = meta_[0];
      const bool has_fifo = m.fifo_count > 0;
      const bool has_heap = m.heap_size > 0;
      if (!has_fifo && !has_heap) return;
      const Timer* f = has_fifo ? &ring_[m.fifo_head] : nullptr;
      const Timer* h = has_heap ? &heap_[0] : nullptr;
      const bool from_fifo = f != nullptr && (h == nullptr || f->time <= h->time);
      const Timer t = from_fifo ? *f : *h;
      if (t.time > now) return;
      if (from_fifo) {
        pop_fifo();
      } else {
        pop_heap();
      }
      fire(t.key, t.time);
    }
  }

  size_t size() const noexcept { return meta_[0].fifo_count + meta_[0].heap_size; }
  size_t heap_size() const noexcept { return meta_[0].heap_size; }
  // Calls f(timer) for every timer, in no particular order.
  template <typename F>
  void for_each(F&& f) const {
    const Meta& m = meta_[0];
    const size_t mask = ring_.size() - 1;
    for (uint64_t i = 0; i < m.fifo_count; ++i) f(ring_[(m.fifo_head + i) & mask]);
    for (uint64_t i = 0; i < m.heap_size; ++i) f(heap_[i]);
  }
  // The key of the timer `ahead` places behind the FIFO's front (for prefetching), or 0.
  uint64_t fifo_key_ahead(size_t ahead) const noexcept {
    const Meta& m = meta_[0];
    if (ahead >= m.fifo_count) return 0;
    return ring_[(m.fifo_head + ahead) & (ring_.size() - 1)].key;
  }

  absl::Status restore(RegionReader& in);

 private:
  struct Meta {
    uint64_t fifo_head = 0;
    uint64_t fifo_count = 0;
    uint64_t heap_size = 0;
    Timer last;  // the last timer added (for dropping repeats)
  };
  static bool less(const Timer& a, const Timer& b) noexcept {
    return a.time < b.time || (a.time == b.time && a.key < b.key);
  }
  // The latest timer in the FIFO. REQUIRES: the FIFO is not empty.
  const Timer& fifo_back() const noexcept {
    const Meta& m = meta_[0];
    return ring_[(m.fifo_head + m.fifo_count - 1) & (ring_.size() - 1)];
  }
  // `t` is the timer added last and still pending (a repeat would fire with it: drop it).
  bool repeats_last(const Timer& t) const noexcept {
    const Meta& m = meta_[0];
    return m.fifo_count + m.heap_size > 0 && m.last == t;
  }
  void push_fifo(Timer t) {
    const uint64_t count = meta_[0].fifo_count;
    if (count == ring_.size()) [[unlikely]] {
      grow_ring(2 * ring_.size());
    } else if (count == ring_.size() / 4 * 3 && prepared_for_ != ring_.size()) [[unlikely]] {
      prepared_for_ = ring_.size();
      prepare_zeroed(2 * ring_.size() * sizeof(Timer));  // the next ring, faulted in ahead
    }
    const Meta& m = meta_[0];
    ring_.mut((m.fifo_head + m.fifo_count) & (ring_.size() - 1)) = t;
    Meta& w = meta_.mut(0);
    ++w.fifo_count;
    w.last = t;
  }
  void pop_fifo() {
    Meta& w = meta_.mut(0);
    w.fifo_head = (w.fifo_head + 1) & (ring_.size() - 1);
    --w.fifo_count;
  }
  void pop_heap();
  void grow_ring(size_t capacity);

  TrackedArray<Timer> ring_;
  TrackedArray<Timer> heap_;
  TrackedArray<Meta> meta_;
  size_t prepared_for_ = 0;  // the ring size whose successor was asked for
};

// One shard's store: the capture and, through it, every array of every state object built on
// it. Processors declare their state (HistoryState, FlatTable, TimerQueue) with the store's
// capture at construction; the order of construction is the order of regions in a snapshot.
class StateStore {
 public:
  struct Options {
    size_t header_bytes = 128;  // left free at the start of an image (the snapshot header)
    // Copy-on-write granularity: a write during a capture copies this much first. 1 KiB keeps
    // that copy short (perf/RESULTS.md compares 1 and 4 KiB).
    size_t chunk_bytes = 1024;
  };
  explicit StateStore(Options options) : capture_(options.header_bytes, options.chunk_bytes) {}
  StateStore() : StateStore(Options{}) {}
  StateStore(const StateStore&) = delete;
  StateStore& operator=(const StateStore&) = delete;

  StateCapture& capture() noexcept { return capture_; }
  const StateCapture& capture() const noexcept { return capture_; }

 private:
  StateCapture capture_;
};

}  // namespace sluice

#endif  // SLUICE_PIPELINE_STATE_STORE_H_
