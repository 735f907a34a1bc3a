// Where an I/O errno becomes an absl::Status (through core/errno_status.h): the operation, the
// file (or socket) and strerror, so every I/O error names what failed and where.
#ifndef SLUICE_IO_IO_ERROR_H_
#define SLUICE_IO_IO_ERROR_H_

#include <cstdint>
#include <string_view>

#include "absl/status/status.h"

namespace sluice {

// "<op> <where>: <strerror>" with the code that errno maps to (ENOSPC -> ResourceExhausted,
// ENOENT -> NotFound, ...). errnum may be negative (io_uring's res) or positive.
absl::Status io_error(int errnum, std::string_view op, std::string_view where);

// As above, with the byte offset the operation was at.
absl::Status io_error_at(int errnum, std::string_view op, std::string_view where,
                         uint64_t offset);

}  // namespace sluice

#endif  // SLUICE_IO_IO_ERROR_H_
