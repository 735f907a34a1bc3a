#include "core/errno_status.h"

#include <cstring>

#include "absl/strings/str_cat.h"
#include "core/absl_compat.h"

namespace sluice {

absl::Status errno_status(int errnum, std::string_view what) {
  const int e = errnum < 0 ? -errnum : errnum;
  char buffer[128];
  // The GNU strerror_r: returns the message, in buffer or a static string.
  const char* text = ::strerror_r(e, buffer, sizeof(buffer));
  return absl::Status(absl::ErrnoToStatusCode(e), absl::StrCat(to_absl(what), ": ", text));
}

}  // namespace sluice
