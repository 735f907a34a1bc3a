// First-touch cost of fresh memory, huge pages (MADV_HUGEPAGE) and small (MADV_NOHUGEPAGE),
// twice each. Build: g++ -O2 -o pf page_fault_probe.cc
#include <sys/mman.h>
#include <chrono>
#include <cstdio>
#include <cstddef>
int main() {
  for (int huge = 0; huge < 2; ++huge) for (int rep = 0; rep < 2; ++rep) {
    size_t bytes = size_t{256} << 20;
    char* p = (char*)mmap(nullptr, bytes, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0);
    if (huge) madvise(p, bytes, MADV_HUGEPAGE); else madvise(p, bytes, MADV_NOHUGEPAGE);
    auto t0 = std::chrono::steady_clock::now();
    for (size_t off = 0; off < bytes; off += 4096) ((volatile char*)p)[off] = 1;
    auto t1 = std::chrono::steady_clock::now();
    double ms = std::chrono::duration<double, std::milli>(t1 - t0).count();
    std::printf("huge=%d: %.1f ms for 256 MB = %.2f ms/MB, %.2f us per 4K page\n", huge, ms, ms/256, ms*1000/(bytes/4096));
    auto t2 = std::chrono::steady_clock::now();
    munmap(p, bytes);
    std::printf("  munmap %.1f ms\n", std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t2).count());
  }
}
