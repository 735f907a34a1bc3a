// Faulting memory in ahead of use, so the kernel backs every page of a block now, on the
// calling thread, rather than on whichever thread writes it first.
//
// MADV_POPULATE_WRITE, 2 MiB at a time (a write per page where the kernel lacks it). Not one call
// for the whole block, nor MAP_POPULATE: those hold the process's mmap lock for the whole range
// (seconds for gigabytes on a VM whose fresh memory comes from the host), and a hot thread that
// maps memory meanwhile would wait for all of it.
//
// Thread safety: any thread; the caller owns the block.
#ifndef SLUICE_CORE_PAGES_H_
#define SLUICE_CORE_PAGES_H_

#include <atomic>
#include <cstddef>

namespace sluice {

// Has the kernel back every page of [p, p + bytes), writable; contents kept.
void fault_in(std::byte* p, size_t bytes) noexcept;

// The same, giving up between 2 MiB steps once `stop` is set: a thread that faults in hundreds
// of megabytes (a second or more here) can still be stopped promptly. True if it got to the end.
bool fault_in(std::byte* p, size_t bytes, const std::atomic<bool>& stop) noexcept;

}  // namespace sluice

#endif  // SLUICE_CORE_PAGES_H_
