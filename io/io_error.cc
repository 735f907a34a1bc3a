#include "io/io_error.h"

#include "absl/strings/str_cat.h"
#include "core/absl_compat.h"
#include "core/errno_status.h"

namespace sluice {

absl::Status io_error(int errnum, std::string_view op, std::string_view where) {
  return errno_status(errnum, absl::StrCat(to_absl(op), " ", to_absl(where)));
}

absl::Status io_error_at(int errnum, std::string_view op, std::string_view where,
                         uint64_t offset) {
  return errno_status(errnum,
                      absl::StrCat(to_absl(op), " ", to_absl(where), " at offset ", offset));
}

}  // namespace sluice
