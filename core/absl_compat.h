// Bridges std::string_view and Debian's Abseil.
//
// Debian 12's Abseil (20220623) is built with ABSL_OPTION_USE_STD_STRING_VIEW 0, so
// absl::string_view is its own type and StrCat / StrFormat / Status do not take a
// std::string_view. sluice uses std::string_view in its own interfaces and converts here.
#ifndef SLUICE_CORE_ABSL_COMPAT_H_
#define SLUICE_CORE_ABSL_COMPAT_H_

#include <string_view>

#include "absl/strings/string_view.h"

namespace sluice {

inline absl::string_view to_absl(std::string_view s) { return {s.data(), s.size()}; }
inline std::string_view to_std(absl::string_view s) { return {s.data(), s.size()}; }

}  // namespace sluice

#endif  // SLUICE_CORE_ABSL_COMPAT_H_
