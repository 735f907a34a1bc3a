#include "core/crc32c.h"

#include <array>
#include <bit>
#include <cstring>

#if defined(__x86_64__)
#include <nmmintrin.h>
#define SLUICE_CRC32C_HAVE_SSE42_PATH 1
#endif

namespace sluice {
namespace {

constexpr uint32_t kPolynomial = 0x82F63B78;  // Castagnoli, bit-reversed

// ---- Slicing-by-8 tables -----------------------------------------------------------------
// table[k][b] is the register contribution of byte b followed by k zero bytes, so eight input
// bytes fold into the register with eight independent lookups instead of eight dependent ones.
using SlicingTables = std::array<std::array<uint32_t, 256>, 8>;

constexpr SlicingTables make_slicing_tables() {
  SlicingTables t{};
  for (uint32_t b = 0; b < 256; ++b) {
    uint32_t reg = b;
    for (int bit = 0; bit < 8; ++bit) reg = (reg >> 1) ^ ((reg & 1u) != 0 ? kPolynomial : 0u);
    t[0][b] = reg;
  }
  for (size_t k = 1; k < t.size(); ++k) {
    for (size_t b = 0; b < 256; ++b) t[k][b] = (t[k - 1][b] >> 8) ^ t[0][t[k - 1][b] & 0xFF];
  }
  return t;
}

constexpr SlicingTables kSlicing = make_slicing_tables();
static_assert(kSlicing[0][1] == 0xF26B8303, "CRC-32C table generation is off");

uint64_t load_le64(const unsigned char* p) noexcept {
  uint64_t v;
  if constexpr (std::endian::native == std::endian::little) {
    std::memcpy(&v, p, sizeof(v));
  } else {
    v = 0;
    for (int i = 7; i >= 0; --i) v = (v << 8) | p[i];
  }
  return v;
}

#if defined(SLUICE_CRC32C_HAVE_SSE42_PATH)

// ---- Combining independent lanes ----------------------------------------------------------
// The crc32 instruction has 3-cycle latency but 1-cycle throughput, so one dependent chain uses
// a third of the unit. Splitting a block into three lanes and running them in parallel needs a
// way to join them: the register after "A then B" is Z_|B|(reg after A) ^ (reg after B started
// from 0), where Z_n (feeding n zero bytes) is linear over GF(2). Z_n for a fixed n is therefore
// a 32x32 bit matrix, applied as four byte-indexed tables, all computed at compile time.
using BitMatrix = std::array<uint32_t, 32>;  // column j = image of bit j

constexpr uint32_t apply(const BitMatrix& m, uint32_t v) {
  uint32_t result = 0;
  for (int j = 0; j < 32; ++j) {
    if (((v >> j) & 1u) != 0) result ^= m[static_cast<size_t>(j)];
  }
  return result;
}

// a after b.
constexpr BitMatrix compose(const BitMatrix& a, const BitMatrix& b) {
  BitMatrix result{};
  for (size_t j = 0; j < 32; ++j) result[j] = apply(a, b[j]);
  return result;
}

constexpr BitMatrix zero_bytes_operator(size_t n) {
  BitMatrix one_bit{};  // one zero bit: reg -> (reg >> 1) ^ (reg & 1 ? poly : 0)
  one_bit[0] = kPolynomial;
  for (size_t j = 1; j < 32; ++j) one_bit[j] = uint32_t{1} << (j - 1);
  BitMatrix result{};
  for (size_t j = 0; j < 32; ++j) result[j] = uint32_t{1} << j;
  BitMatrix power = one_bit;
  for (uint64_t bits = uint64_t{n} * 8; bits != 0; bits >>= 1) {
    if ((bits & 1) != 0) result = compose(power, result);
    power = compose(power, power);
  }
  return result;
}

using ShiftTables = std::array<std::array<uint32_t, 256>, 4>;

constexpr ShiftTables make_shift_tables(size_t n) {
  const BitMatrix op = zero_bytes_operator(n);
  ShiftTables t{};
  for (size_t k = 0; k < 4; ++k) {
    for (uint32_t b = 0; b < 256; ++b) t[k][b] = apply(op, b << (8 * k));
  }
  return t;
}

uint32_t shift(const ShiftTables& t, uint32_t reg) noexcept {
  return t[0][reg & 0xFF] ^ t[1][(reg >> 8) & 0xFF] ^ t[2][(reg >> 16) & 0xFF] ^ t[3][reg >> 24];
}

// Lane lengths: long lanes amortise the combine on big buffers; short ones still give the
// 3x speed-up from a few hundred bytes on.
constexpr size_t kLongLane = 8192;
constexpr size_t kShortLane = 256;
constexpr ShiftTables kShiftLong = make_shift_tables(kLongLane);
constexpr ShiftTables kShiftShort = make_shift_tables(kShortLane);

template <size_t kLane>
__attribute__((target("sse4.2"))) uint64_t three_lanes(uint64_t reg, const unsigned char*& p,
                                                       size_t& n, const ShiftTables& shift_lane) {
  while (n >= 3 * kLane) {
    uint64_t reg1 = 0;
    uint64_t reg2 = 0;
    const unsigned char* const lane_end = p + kLane;
    do {
      reg = _mm_crc32_u64(reg, load_le64(p));
      reg1 = _mm_crc32_u64(reg1, load_le64(p + kLane));
      reg2 = _mm_crc32_u64(reg2, load_le64(p + 2 * kLane));
      p += 8;
    } while (p < lane_end);
    reg = shift(shift_lane, static_cast<uint32_t>(reg)) ^ reg1;
    reg = shift(shift_lane, static_cast<uint32_t>(reg)) ^ reg2;
    p += 2 * kLane;
    n -= 3 * kLane;
  }
  return reg;
}

#endif  // SLUICE_CRC32C_HAVE_SSE42_PATH

}  // namespace

uint32_t crc32c_extend_portable(uint32_t crc, const void* data, size_t n) noexcept {
  const auto* p = static_cast<const unsigned char*>(data);
  uint32_t reg = ~crc;
  for (; n >= 8; p += 8, n -= 8) {
    const uint64_t w = load_le64(p) ^ reg;
    reg = kSlicing[7][w & 0xFF] ^ kSlicing[6][(w >> 8) & 0xFF] ^ kSlicing[5][(w >> 16) & 0xFF] ^
          kSlicing[4][(w >> 24) & 0xFF] ^ kSlicing[3][(w >> 32) & 0xFF] ^
          kSlicing[2][(w >> 40) & 0xFF] ^ kSlicing[1][(w >> 48) & 0xFF] ^ kSlicing[0][w >> 56];
  }
  for (; n > 0; ++p, --n) reg = kSlicing[0][(reg ^ *p) & 0xFF] ^ (reg >> 8);
  return ~reg;
}

#if defined(SLUICE_CRC32C_HAVE_SSE42_PATH)

__attribute__((target("sse4.2"))) uint32_t crc32c_extend_hardware(uint32_t crc, const void* data,
                                                                  size_t n) noexcept {
  const auto* p = static_cast<const unsigned char*>(data);
  uint64_t reg = ~crc;
  // Aligned 8-byte loads never straddle a cache line.
  for (; n > 0 && (reinterpret_cast<uintptr_t>(p) & 7) != 0; ++p, --n) {
    reg = _mm_crc32_u8(static_cast<uint32_t>(reg), *p);
  }
  reg = three_lanes<kLongLane>(reg, p, n, kShiftLong);
  reg = three_lanes<kShortLane>(reg, p, n, kShiftShort);
  for (; n >= 8; p += 8, n -= 8) reg = _mm_crc32_u64(reg, load_le64(p));
  for (; n > 0; ++p, --n) reg = _mm_crc32_u8(static_cast<uint32_t>(reg), *p);
  return ~static_cast<uint32_t>(reg);
}

bool crc32c_hardware_available() noexcept {
  static const bool available = [] {
    __builtin_cpu_init();  // may run before the CPU model is initialised (static init)
    return __builtin_cpu_supports("sse4.2") != 0;
  }();
  return available;
}

#else

uint32_t crc32c_extend_hardware(uint32_t crc, const void* data, size_t n) noexcept {
  return crc32c_extend_portable(crc, data, n);
}

bool crc32c_hardware_available() noexcept { return false; }

#endif  // SLUICE_CRC32C_HAVE_SSE42_PATH

uint32_t crc32c_extend(uint32_t crc, const void* data, size_t n) noexcept {
  using Impl = uint32_t (*)(uint32_t, const void*, size_t) noexcept;
  static const Impl impl =
      crc32c_hardware_available() ? &crc32c_extend_hardware : &crc32c_extend_portable;
  return impl(crc, data, n);
}

}  // namespace sluice
