#include "core/pages.h"

#include <sys/mman.h>
#include <unistd.h>

#include <atomic>
#include <cstddef>
#include <vector>

#include "gtest/gtest.h"

namespace sluice {
namespace {

// A private anonymous mapping in small pages, so that residency counts page by page.
class Mapping {
 public:
  explicit Mapping(size_t bytes) : bytes_(bytes) {
    void* p = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    data_ = p == MAP_FAILED ? nullptr : static_cast<std::byte*>(p);
    if (data_ != nullptr) (void)::madvise(data_, bytes, MADV_NOHUGEPAGE);
  }
  ~Mapping() {
    if (data_ != nullptr) ::munmap(data_, bytes_);
  }
  std::byte* data() const { return data_; }

  // Pages of [data + from, data + to) the kernel reports resident (mincore).
  size_t resident(size_t from, size_t to) const {
    const size_t page = static_cast<size_t>(::sysconf(_SC_PAGESIZE));
    std::vector<unsigned char> v((to - from) / page);
    if (::mincore(data_ + from, to - from, v.data()) != 0) return SIZE_MAX;
    size_t n = 0;
    for (unsigned char c : v) n += c & 1;
    return n;
  }

 private:
  size_t bytes_;
  std::byte* data_;
};

constexpr size_t kMiB = size_t{1} << 20;

TEST(FaultIn, BacksEveryPageAndKeepsTheContents) {
  Mapping m(8 * kMiB);
  ASSERT_NE(m.data(), nullptr);
  ASSERT_EQ(m.resident(0, 8 * kMiB), 0);
  m.data()[5 * 4096 + 7] = std::byte{42};
  fault_in(m.data(), 8 * kMiB);
  EXPECT_EQ(m.resident(0, 8 * kMiB), 8 * kMiB / 4096);
  EXPECT_EQ(m.data()[5 * 4096 + 7], std::byte{42});
  EXPECT_EQ(m.data()[5 * 4096], std::byte{0});
}

// An unaligned start (a small heap array) takes the write-per-page path; the same pages end up
// resident, contents kept.
TEST(FaultIn, AnUnalignedBlockIsFaultedInToo) {
  Mapping m(4 * kMiB);
  ASSERT_NE(m.data(), nullptr);
  m.data()[3 * 4096 + 100] = std::byte{7};
  fault_in(m.data() + 100, 2 * kMiB);
  EXPECT_EQ(m.resident(0, 2 * kMiB + 4096), 2 * kMiB / 4096 + 1);  // the last page it reaches
  EXPECT_EQ(m.resident(2 * kMiB + 4096, 4 * kMiB), 0);
  EXPECT_EQ(m.data()[3 * 4096 + 100], std::byte{7});
}

TEST(FaultIn, WithAStopFlagItGoesToTheEndUnlessStopped) {
  Mapping m(8 * kMiB);
  ASSERT_NE(m.data(), nullptr);
  std::atomic<bool> stop{false};
  EXPECT_TRUE(fault_in(m.data(), 4 * kMiB + 4096, stop));
  EXPECT_EQ(m.resident(0, 4 * kMiB + 4096), 4 * kMiB / 4096 + 1);
  EXPECT_EQ(m.resident(4 * kMiB + 4096, 8 * kMiB), 0);  // not past the range asked for
  stop = true;
  EXPECT_FALSE(fault_in(m.data() + 6 * kMiB, 2 * kMiB, stop));
  EXPECT_EQ(m.resident(6 * kMiB, 8 * kMiB), 0);
}

}  // namespace
}  // namespace sluice
