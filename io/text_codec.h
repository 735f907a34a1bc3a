// The text protocol (SPEC 1.4; docs/protocol.md): CSV lines, one message each way, '\n'
// terminated, at most 1024 bytes.
//
// Client lines become the equivalent version-1 binary frame, so text and binary input take
// the same path into the journal; server answers are formatted from the same structs the
// binary encoders take. The other direction of each (client line from a frame, server line
// parsed into a struct) is here too, for clients, tools and tests.
//
// Line rules the server applies (SPEC 1.4 plus the choices docs/protocol.md records):
// - a line is the bytes before '\n'; one '\r' right before the '\n' is dropped; the limit of
//   1024 bytes counts the line without its terminator;
// - fields are separated by ',' with no spaces; numbers are decimal, '-' allowed only for the
//   signed fields, and must fit their wire width;
// - an empty line is ignored; anything that does not parse is malformed (an E line, and the
//   connection stays open); a line over 1024 bytes gets an E line and the connection closes.
//
// Thread safety: a LineDecoder belongs to one connection and one thread; the functions are
// pure.
#ifndef SLUICE_IO_TEXT_CODEC_H_
#define SLUICE_IO_TEXT_CODEC_H_

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>

#include "core/wire_format.h"
#include "io/frame_decoder.h"

namespace sluice::text {

inline constexpr size_t kMaxLineLength = 1024;  // bytes of a line, its terminator not counted
inline constexpr size_t kMaxServerLine = 256;   // longest line the server formats, '\n' included

// Cuts a text stream into lines, like FrameDecoder does frames: a line that lies wholly in a
// receive buffer is handed out in place; only a line split across buffers is copied.
class LineDecoder {
 public:
  LineDecoder() = default;
  LineDecoder(const LineDecoder&) = delete;
  LineDecoder& operator=(const LineDecoder&) = delete;

  // kFrame: line() is the next line (terminator and a trailing '\r' removed); not consumed
  // until consume(). kNeedMore: `input` was taken whole. kError: a line longer than
  // kMaxLineLength; the decoder stays broken.
  DecodeStatus peek(std::span<const std::byte>& input) noexcept;
  // REQUIRES: the last peek returned kFrame and `input` is as it left it.
  void consume(std::span<const std::byte>& input) noexcept;

  std::string_view line() const noexcept { return line_; }
  size_t held() const noexcept { return held_; }
  bool failed() const noexcept { return failed_; }
  void reset() noexcept;

 private:
  std::array<char, kMaxLineLength> hold_;
  size_t held_ = 0;
  std::string_view line_;
  size_t consume_bytes_ = 0;  // bytes of input the peeked line takes (0: it is in hold_)
  bool in_hold_ = false;
  bool failed_ = false;
};

enum class LineStatus : uint8_t {
  kFrame,      // frame_size bytes of a version-1 frame were written
  kEmpty,      // an empty line: ignored
  kMalformed,  // does not parse; see describe()
};

struct ParsedLine {
  LineStatus status = LineStatus::kMalformed;
  size_t frame_size = 0;
  // kMalformed: the grammar of the line kind (empty when the kind is unknown) and the field
  // that failed (empty when the field count is wrong).
  std::string_view grammar;
  std::string_view field;
  size_t fields = 0;  // how many fields the line had
};

// The E line's message for a malformed line, e.g. "bad amount_minor; expected T,<client_seq>,...".
std::string describe(const ParsedLine& parsed);

// Parses one client line (without its terminator) into the equivalent version-1 frame.
// REQUIRES: frame.size() >= wire::kMaxFrameSize.
ParsedLine parse_client_line(std::string_view line, std::span<std::byte> frame) noexcept;

// Server lines, '\n' included; each returns the length written.
// REQUIRES: out.size() >= kMaxServerLine.
size_t format_hello_ack(const wire::HelloAck& m, std::span<char> out) noexcept;
size_t format_decision(const wire::Decision& m, std::span<char> out) noexcept;
size_t format_alert(const wire::Alert& m, std::span<char> out) noexcept;
// The message is cut to wire::kErrorMaxText bytes; '\r' and '\n' in it become spaces.
size_t format_error(uint16_t code, std::string_view message, std::span<char> out) noexcept;

// For clients and tests: the client line of a client frame ("" for a type without one), and a
// server line parsed back.
std::string format_client_line(std::span<const std::byte> frame);

struct ServerLine {
  enum class Kind : uint8_t { kHelloAck, kDecision, kAlert, kError, kMalformed };
  Kind kind = Kind::kMalformed;
  wire::HelloAck hello_ack;
  wire::Decision decision;
  wire::Alert alert;
  uint16_t error_code = 0;
  std::string error_message;
};
// `line` without its terminator.
ServerLine parse_server_line(std::string_view line);

}  // namespace sluice::text

#endif  // SLUICE_IO_TEXT_CODEC_H_
