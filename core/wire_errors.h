// The codes of the wire protocol's ERROR frame (0x8F) and text `E` line (docs/protocol.md).
//
// SPEC section 1 defines the ERROR frame but leaves its codes to the implementation; these are
// sluice's, numbered for good: a code is never reused for another meaning, new ones are
// appended. A client that meets a code it does not know treats it as a generic error.
//
// Thread safety: constants and a pure function.
#ifndef SLUICE_CORE_WIRE_ERRORS_H_
#define SLUICE_CORE_WIRE_ERRORS_H_

#include <cstdint>
#include <string_view>

namespace sluice::wire {

enum class ErrorCode : uint16_t {
  kFrameTooShort = 1,       // header length < 4; the connection is closed
  kFrameTooLong = 2,        // header length > 1024; closed
  kBadVersion = 3,          // header version 0; closed
  kShortPayload = 4,        // a known type shorter than its payload; closed
  kBadHello = 5,            // HELLO with client_id 0, or not the connection's first frame; closed
  kTooManyConnections = 6,  // the server is at its connection limit; closed at once
  kSlowConsumer = 7,        // the client's unsent output passed its bound; dropped
  kInputRefused = 8,        // the server can no longer journal input; closed after its answers
  kShuttingDown = 9,        // the server is stopping; closed after its answers
  kLineTooLong = 10,        // text: a line over 1024 bytes; closed
  kMalformedLine = 11,      // text: a line that does not parse; the connection stays open
};

// "FRAME_TOO_SHORT" ...; "UNKNOWN" for a code not listed above.
constexpr std::string_view error_code_name(ErrorCode code) {
  switch (code) {
    case ErrorCode::kFrameTooShort: return "FRAME_TOO_SHORT";
    case ErrorCode::kFrameTooLong: return "FRAME_TOO_LONG";
    case ErrorCode::kBadVersion: return "BAD_VERSION";
    case ErrorCode::kShortPayload: return "SHORT_PAYLOAD";
    case ErrorCode::kBadHello: return "BAD_HELLO";
    case ErrorCode::kTooManyConnections: return "TOO_MANY_CONNECTIONS";
    case ErrorCode::kSlowConsumer: return "SLOW_CONSUMER";
    case ErrorCode::kInputRefused: return "INPUT_REFUSED";
    case ErrorCode::kShuttingDown: return "SHUTTING_DOWN";
    case ErrorCode::kLineTooLong: return "LINE_TOO_LONG";
    case ErrorCode::kMalformedLine: return "MALFORMED_LINE";
  }
  return "UNKNOWN";
}

// True for an error after which the server closes the connection (all but kMalformedLine).
constexpr bool error_closes(ErrorCode code) { return code != ErrorCode::kMalformedLine; }

}  // namespace sluice::wire

#endif  // SLUICE_CORE_WIRE_ERRORS_H_
