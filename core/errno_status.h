// errno -> absl::Status, thread-safe under ThreadSanitizer.
//
// errno_status(e, what) is absl::ErrnoToStatus(e, what): the code errno maps to (ENOSPC ->
// ResourceExhausted, ENOENT -> NotFound, ...) and the message "<what>: <strerror>". It formats
// strerror with strerror_r on the caller's stack, where Abseil's StrError fills a process-wide
// table on first use, which ThreadSanitizer (not seeing into the uninstrumented library)
// reports as a race when two threads report their first errors at once. errnum may be
// negative (io_uring's res) or positive.
#ifndef SLUICE_CORE_ERRNO_STATUS_H_
#define SLUICE_CORE_ERRNO_STATUS_H_

#include <string_view>

#include "absl/status/status.h"

namespace sluice {

absl::Status errno_status(int errnum, std::string_view what);

}  // namespace sluice

#endif  // SLUICE_CORE_ERRNO_STATUS_H_
