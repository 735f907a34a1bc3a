#include <chrono>
#include <cstdio>
#include <cstring>
#include <vector>
#include "pipeline/state_store.h"
using namespace sluice;
struct KvSlot { using Key = uint64_t; uint64_t key = 0; uint64_t value = 0; uint64_t pad[6] = {}; static uint64_t hash(uint64_t k) noexcept { return state_hash(k); } };
int main() {
  StateStore store;
  FlatTable<KvSlot> t(store.capture(), "t");
  const uint64_t n = 1'000'000;
  for (uint64_t k = 1; k <= n; ++k) t.mut(t.insert(k * 0x9e37 + 11).first).value = k;
  StateCapture& c = store.capture();
  std::vector<std::byte> image(c.image_bytes());
  c.begin(image.data(), image.size()); c.finish(); c.take();
  for (int rep = 0; rep < 5; ++rep) {
    StateStore s2; FlatTable<KvSlot> u(s2.capture(), "t");
    auto regions = s2.capture().parse_directory(image);
    RegionReader in(image, *regions);
    auto a = std::chrono::steady_clock::now();
    auto st = u.restore(in);
    auto b = std::chrono::steady_clock::now();
    std::vector<std::byte> copy(image.size());
    auto c0 = std::chrono::steady_clock::now();
    std::memcpy(copy.data(), image.data(), image.size());
    auto c1 = std::chrono::steady_clock::now();
    std::printf("capacity %zu slots (%zu MB): restore %.1f ms (ok=%d), plain memcpy of the image %.1f ms\n", u.capacity(), u.capacity()*sizeof(KvSlot)>>20,
      std::chrono::duration<double,std::milli>(b-a).count(), st.ok(), std::chrono::duration<double,std::milli>(c1-c0).count());
  }
}
