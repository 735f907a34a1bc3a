// 128-bit integers for the products SPEC 2 requires to be exact (q * price, x * |P| * 1000).
// GCC and Clang provide __int128 as an extension; __extension__ keeps -Wpedantic quiet.
#ifndef SLUICE_CORE_INT128_H_
#define SLUICE_CORE_INT128_H_

namespace sluice {

__extension__ typedef __int128 Int128;
__extension__ typedef unsigned __int128 Uint128;

}  // namespace sluice

#endif  // SLUICE_CORE_INT128_H_
