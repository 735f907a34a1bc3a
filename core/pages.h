// Faulting memory in ahead of use: a write per 4 KiB page, so the kernel backs every page of a
// block now, on the calling thread, rather than on whichever thread writes it first.
//
// Why not MAP_POPULATE or MADV_POPULATE_WRITE: both hold the process's mmap lock for the whole
// range (seconds for gigabytes on a VM whose fresh memory comes from the host), and a hot thread
// that maps or faults anything meanwhile would wait for all of it. A page at a time takes the
// lock per fault.
//
// Thread safety: any thread; the caller owns the block.
#ifndef SLUICE_CORE_PAGES_H_
#define SLUICE_CORE_PAGES_H_

#include <atomic>
#include <cstddef>

namespace sluice {

// Has the kernel back every page of [p, p + bytes) (contents kept: each write stores the byte it
// read; reading alone would map the shared zero page and fault again on the first real write).
void fault_in(std::byte* p, size_t bytes) noexcept;

// The same, giving up between 2 MiB steps once `stop` is set: a thread that faults in hundreds
// of megabytes (a second or more here) can still be stopped promptly. True if it got to the end.
bool fault_in(std::byte* p, size_t bytes, const std::atomic<bool>& stop) noexcept;

}  // namespace sluice

#endif  // SLUICE_CORE_PAGES_H_
