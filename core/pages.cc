#include "core/pages.h"

#include <algorithm>

namespace sluice {
namespace {

constexpr size_t kPage = 4096;
constexpr size_t kStopCheckBytes = size_t{2} << 20;

}  // namespace

void fault_in(std::byte* p, size_t bytes) noexcept {
  for (size_t off = 0; off < bytes; off += kPage) {
    reinterpret_cast<volatile std::byte*>(p)[off] = p[off];
  }
}

bool fault_in(std::byte* p, size_t bytes, const std::atomic<bool>& stop) noexcept {
  for (size_t off = 0; off < bytes; off += kStopCheckBytes) {
    if (stop.load(std::memory_order_relaxed)) return false;
    fault_in(p + off, std::min(kStopCheckBytes, bytes - off));
  }
  return true;
}

}  // namespace sluice
