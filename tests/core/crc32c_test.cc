#include "core/crc32c.h"

#include <cstdint>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace sluice {
namespace {

using ExtendFn = uint32_t (*)(uint32_t, const void*, size_t) noexcept;

// Bit-at-a-time CRC-32C straight from the definition, independent of both implementations.
uint32_t crc32c_bitwise(const void* data, size_t n) {
  const auto* p = static_cast<const unsigned char*>(data);
  uint32_t reg = 0xFFFFFFFF;
  for (size_t i = 0; i < n; ++i) {
    reg ^= p[i];
    for (int bit = 0; bit < 8; ++bit) reg = (reg >> 1) ^ ((reg & 1u) != 0 ? 0x82F63B78u : 0u);
  }
  return ~reg;
}

std::vector<unsigned char> random_bytes(size_t n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<unsigned char> bytes(n);
  for (auto& b : bytes) b = static_cast<unsigned char>(rng());
  return bytes;
}

struct Impl {
  const char* name;
  ExtendFn extend;
  bool available;
};

std::vector<Impl> implementations() {
  return {{"dispatch", &crc32c_extend, true},
          {"portable", &crc32c_extend_portable, true},
          {"hardware", &crc32c_extend_hardware, crc32c_hardware_available()}};
}

TEST(Crc32c, MatchesTheStandardCheckValue) {
  EXPECT_EQ(crc32c("123456789", 9), 0xE3069283u);
  for (const Impl& impl : implementations()) {
    if (!impl.available) continue;
    EXPECT_EQ(impl.extend(0, "123456789", 9), 0xE3069283u) << impl.name;
  }
}

TEST(Crc32c, MatchesRfc3720TestVectors) {
  unsigned char zeros[32] = {};
  unsigned char ones[32];
  std::memset(ones, 0xFF, sizeof(ones));
  unsigned char ascending[32];
  unsigned char descending[32];
  for (int i = 0; i < 32; ++i) {
    ascending[i] = static_cast<unsigned char>(i);
    descending[i] = static_cast<unsigned char>(31 - i);
  }
  for (const Impl& impl : implementations()) {
    if (!impl.available) continue;
    EXPECT_EQ(impl.extend(0, zeros, 32), 0x8A9136AAu) << impl.name;
    EXPECT_EQ(impl.extend(0, ones, 32), 0x62A8AB43u) << impl.name;
    EXPECT_EQ(impl.extend(0, ascending, 32), 0x46DD794Eu) << impl.name;
    EXPECT_EQ(impl.extend(0, descending, 32), 0x113FDB5Cu) << impl.name;
  }
}

TEST(Crc32c, EmptyInputLeavesTheCrcUnchanged) {
  EXPECT_EQ(crc32c(nullptr, 0), 0u);
  for (const Impl& impl : implementations()) {
    if (!impl.available) continue;
    EXPECT_EQ(impl.extend(0xDEADBEEF, nullptr, 0), 0xDEADBEEFu) << impl.name;
  }
}

TEST(Crc32c, ExtendChainsAtEverySplitPoint) {
  const std::vector<unsigned char> data = random_bytes(300, 7);
  const uint32_t whole = crc32c_bitwise(data.data(), data.size());
  ASSERT_EQ(crc32c(data.data(), data.size()), whole);
  for (const Impl& impl : implementations()) {
    if (!impl.available) continue;
    for (size_t split = 0; split <= data.size(); ++split) {
      const uint32_t head = impl.extend(0, data.data(), split);
      ASSERT_EQ(impl.extend(head, data.data() + split, data.size() - split), whole)
          << impl.name << " split=" << split;
    }
  }
}

TEST(Crc32c, ExtendChainsAcrossManyUnevenPieces) {
  const std::vector<unsigned char> data = random_bytes(100'000, 8);
  const uint32_t whole = crc32c_extend_portable(0, data.data(), data.size());
  std::mt19937 rng(9);
  std::uniform_int_distribution<size_t> piece(0, 30'000);
  uint32_t crc = 0;
  size_t offset = 0;
  while (offset < data.size()) {
    const size_t n = std::min(piece(rng), data.size() - offset);
    crc = crc32c_extend(crc, data.data() + offset, n);
    offset += n;
  }
  EXPECT_EQ(crc, whole);
}

TEST(Crc32c, PortableMatchesTheBitwiseDefinition) {
  const std::vector<unsigned char> data = random_bytes(1100, 10);
  for (size_t offset = 0; offset < 8; ++offset) {
    for (size_t n = 0; offset + n <= 1000; n += 7) {
      ASSERT_EQ(crc32c_extend_portable(0, data.data() + offset, n),
                crc32c_bitwise(data.data() + offset, n))
          << "offset=" << offset << " n=" << n;
    }
  }
}

TEST(Crc32c, HardwareMatchesPortableForEveryLengthAndAlignment) {
  if (!crc32c_hardware_available()) GTEST_SKIP() << "CPU lacks SSE4.2: no hardware CRC to compare";
  const std::vector<unsigned char> data = random_bytes(1008 + 8, 11);
  for (size_t offset = 0; offset < 8; ++offset) {
    for (size_t n = 0; n <= 1000; ++n) {
      const unsigned char* p = data.data() + offset;
      ASSERT_EQ(crc32c_extend_hardware(0, p, n), crc32c_extend_portable(0, p, n))
          << "offset=" << offset << " n=" << n;
      ASSERT_EQ(crc32c_extend_hardware(0x12345678, p, n), crc32c_extend_portable(0x12345678, p, n))
          << "offset=" << offset << " n=" << n;
    }
  }
}

TEST(Crc32c, HardwareMatchesPortableOnLargeBuffersThatUseTheInterleavedLanes) {
  if (!crc32c_hardware_available()) GTEST_SKIP() << "CPU lacks SSE4.2: no hardware CRC to compare";
  // Lengths around the 3 x 8 KiB and 3 x 256 byte lane boundaries, plus one large buffer.
  const std::vector<unsigned char> data = random_bytes(1 << 20, 12);
  const size_t lengths[] = {767,   768,   769,   1535,  1536,  24575,  24576,
                            24577, 25344, 49151, 49152, 49160, 1 << 20};
  for (size_t offset = 0; offset < 8; ++offset) {
    for (const size_t n : lengths) {
      const size_t len = std::min(n, data.size() - offset);
      const unsigned char* p = data.data() + offset;
      ASSERT_EQ(crc32c_extend_hardware(0, p, len), crc32c_extend_portable(0, p, len))
          << "offset=" << offset << " n=" << len;
    }
  }
  EXPECT_EQ(crc32c_extend_portable(0, data.data(), 50'000), crc32c_bitwise(data.data(), 50'000));
}

TEST(Crc32c, DetectsSingleBitFlips) {
  std::vector<unsigned char> data = random_bytes(4096, 13);
  const uint32_t original = crc32c(data.data(), data.size());
  for (size_t bit = 0; bit < data.size() * 8; bit += 61) {
    data[bit / 8] ^= static_cast<unsigned char>(1u << (bit % 8));
    EXPECT_NE(crc32c(data.data(), data.size()), original) << "bit " << bit;
    data[bit / 8] ^= static_cast<unsigned char>(1u << (bit % 8));
  }
  EXPECT_EQ(crc32c(data.data(), data.size()), original);
}

}  // namespace
}  // namespace sluice

namespace sluice {
namespace {

TEST(Crc32c, ShortInlineFormAgreesWithTheDispatchedOneForEveryLengthAndOffset) {
  std::vector<unsigned char> data(1200 + 8);
  uint64_t x = 0x243f6a8885a308d3ull;
  for (auto& b : data) {
    x = x * 6364136223846793005ull + 1442695040888963407ull;
    b = static_cast<unsigned char>(x >> 56);
  }
  for (size_t offset = 0; offset < 8; ++offset) {
    for (size_t n = 0; n <= 1200; n += (n < 64 ? 1 : 7)) {
      const uint32_t seed = static_cast<uint32_t>(n * 2654435761u);
      ASSERT_EQ(crc32c_extend_short(seed, data.data() + offset, n),
                crc32c_extend(seed, data.data() + offset, n))
          << "n=" << n << " offset=" << offset;
    }
  }
  EXPECT_EQ(crc32c_extend_short(0, "123456789", 9), 0xE3069283u);
}

}  // namespace
}  // namespace sluice
