#include "io/io_error.h"

#include <cstring>
#include <string>

#include "absl/strings/str_cat.h"
#include "core/absl_compat.h"

namespace sluice {

absl::Status io_error(int errnum, std::string_view op, std::string_view where) {
  const int e = errnum < 0 ? -errnum : errnum;
  return absl::ErrnoToStatus(e, absl::StrCat(to_absl(op), " ", to_absl(where)));
}

absl::Status io_error_at(int errnum, std::string_view op, std::string_view where,
                         uint64_t offset) {
  const int e = errnum < 0 ? -errnum : errnum;
  return absl::ErrnoToStatus(
      e, absl::StrCat(to_absl(op), " ", to_absl(where), " at offset ", offset));
}

}  // namespace sluice
