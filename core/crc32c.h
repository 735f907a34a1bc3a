// CRC-32C (Castagnoli): reflected polynomial 0x82F63B78, initial value ~0, final xor ~0, the
// variant used by iSCSI, ext4 and most storage formats. crc32c("123456789") == 0xE3069283.
//
// Contract:
//   - crc32c_extend(crc32c(a), b) == crc32c(a followed by b), so data can be checksummed in
//     pieces; crc32c_extend(0, p, n) == crc32c(p, n).
//   - data may have any alignment; n == 0 returns crc unchanged (data may then be null).
//   - crc32c / crc32c_extend use the SSE4.2 crc32 instruction when the CPU has it (checked once,
//     at first call) and a slicing-by-8 table otherwise. No allocation; tables are constexpr.
//
// Thread safety: all functions are pure and safe to call concurrently.
#ifndef SLUICE_CORE_CRC32C_H_
#define SLUICE_CORE_CRC32C_H_

#include <cstddef>
#include <cstdint>
#include <cstring>

#if defined(__SSE4_2__)
#include <nmmintrin.h>
#endif

namespace sluice {

uint32_t crc32c_extend(uint32_t crc, const void* data, size_t n) noexcept;

inline uint32_t crc32c(const void* data, size_t n) noexcept { return crc32c_extend(0, data, n); }

// The two implementations behind crc32c_extend, exposed so tests and benchmarks can compare.
uint32_t crc32c_extend_portable(uint32_t crc, const void* data, size_t n) noexcept;
// REQUIRES: crc32c_hardware_available(); otherwise the process dies of SIGILL.
uint32_t crc32c_extend_hardware(uint32_t crc, const void* data, size_t n) noexcept;
bool crc32c_hardware_available() noexcept;

#if defined(__SSE4_2__)
namespace crc32c_internal {
// The crc32 instruction over n bytes from the raw register `reg` (no initial or final inversion):
// 8 bytes a step, then one 4-, one 2- and one 1-byte step for the tail. The instructions take
// their operand's bytes in memory order, so this is the CRC the bytewise loop would give, with
// three dependent steps at most for the tail instead of seven.
inline uint32_t sse42_update(uint32_t reg, const void* data, size_t n) noexcept {
  const auto* p = static_cast<const unsigned char*>(data);
  uint64_t wide = reg;
  for (; n >= 8; p += 8, n -= 8) {
    uint64_t word;
    std::memcpy(&word, p, 8);
    wide = _mm_crc32_u64(wide, word);
  }
  auto r = static_cast<uint32_t>(wide);
  if (n & 4) {
    uint32_t word;
    std::memcpy(&word, p, 4);
    r = _mm_crc32_u32(r, word);
    p += 4;
  }
  if (n & 2) {
    uint16_t half;
    std::memcpy(&half, p, 2);
    r = _mm_crc32_u16(r, half);
    p += 2;
  }
  if (n & 1) r = _mm_crc32_u8(r, *p);
  return r;
}
}  // namespace crc32c_internal
#endif

// crc32c_extend for short buffers (a journal record, a frame), inlined where it is called: one
// crc32 instruction per 8 bytes, no alignment prologue, no dispatch through a function pointer.
// For ~100-byte records that overhead is most of the cost. When the build targets SSE4.2
// (sluice builds with -march=x86-64-v2, which includes it) this is the instruction itself;
// otherwise it is crc32c_extend. Same results as crc32c_extend for every input.
inline uint32_t crc32c_extend_short(uint32_t crc, const void* data, size_t n) noexcept {
#if defined(__SSE4_2__)
  return ~crc32c_internal::sse42_update(~crc, data, n);
#else
  return crc32c_extend(crc, data, n);
#endif
}

}  // namespace sluice

#endif  // SLUICE_CORE_CRC32C_H_
