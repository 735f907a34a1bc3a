// FrameDecoder: cuts a binary TCP byte stream into frames and checks each header against SPEC
// 1.5; inspect_client_frame() reads what ingest needs of a frame and applies the value checks.
//
// The stream arrives in receive buffers of any size, split anywhere. A frame that lies wholly
// in a buffer is handed out in place (no copy); only a frame split across buffers is copied,
// once, into the decoder's own 1 KiB buffer. The decoder never holds more than one frame.
//
// peek() and consume() are separate so that ingest can stop in front of a frame it cannot
// take yet (the input ring is full): it keeps the rest of the receive buffer and peeks again
// later, and gets the same frame back.
//
// What a header may be (SPEC 1.5): 4 <= length <= 1024, version != 0, and a known
// client-to-server type (HELLO .. SUBSCRIBE) at least as long as its version-1 payload. Any
// other type (including the server-to-client types 0x81..0x8F) is unknown to the server: it
// is handed out like any frame and skipped by its length. A newer version with a longer
// payload is fine: the known fields are read, the rest ignored.
//
// Thread safety: a FrameDecoder belongs to one connection and one thread. The free functions
// are pure.
#ifndef SLUICE_IO_FRAME_DECODER_H_
#define SLUICE_IO_FRAME_DECODER_H_

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>

#include "core/wire_errors.h"
#include "core/wire_format.h"

namespace sluice {

// Why a stream (or a datagram) is broken at a frame. Over TCP the connection gets an ERROR
// frame and is closed; a UDP datagram is dropped whole.
enum class FrameError : uint8_t {
  kNone = 0,
  kTooShort,      // length < 4
  kTooLong,       // length > 1024
  kBadVersion,    // version 0
  kShortPayload,  // a known client type shorter than its version-1 payload
  kTruncated,     // datagrams only: the last frame runs past the end of the datagram
};

// The ERROR code a broken frame gets (kTruncated never reaches a client: UDP has no replies).
wire::ErrorCode frame_error_code(FrameError error) noexcept;
// The ERROR frame's text, with the offending header's numbers: "frame length 2 is below 4".
std::string describe_frame_error(FrameError error, wire::FrameHeader header);

// The client-to-server types the server understands (SPEC 1.2).
constexpr bool is_client_type(uint8_t type) noexcept {
  return type >= static_cast<uint8_t>(wire::FrameType::kHello) &&
         type <= static_cast<uint8_t>(wire::FrameType::kSubscribe);
}

// SPEC 1.5's header checks, in the order above.
constexpr FrameError check_header(wire::FrameHeader h) noexcept {
  if (h.length < wire::kHeaderSize) return FrameError::kTooShort;
  if (h.length > wire::kMaxFrameSize) return FrameError::kTooLong;
  if (h.version == 0) return FrameError::kBadVersion;
  if (is_client_type(h.type) && h.length < wire::kHeaderSize + wire::min_payload(h.type)) {
    return FrameError::kShortPayload;
  }
  return FrameError::kNone;
}

enum class DecodeStatus : uint8_t {
  kFrame,     // a whole frame (or line) is ready
  kNeedMore,  // all input was taken; the rest of the frame has not arrived yet
  kError,     // the stream is broken here; see error()
};

class FrameDecoder {
 public:
  FrameDecoder() = default;
  FrameDecoder(const FrameDecoder&) = delete;
  FrameDecoder& operator=(const FrameDecoder&) = delete;

  // The next frame of the stream formed by the bytes held from earlier input followed by
  // `input`. Bytes taken into the decoder's buffer are removed from the front of `input`.
  // - kFrame: frame() and header() describe it. It is not consumed: call consume() with the
  //   same `input` to move past it, or peek again later (with `input` as this call left it)
  //   to get the same frame.
  // - kNeedMore: `input` was taken whole (it is now empty); feed the next buffer.
  // - kError: the frame at the front is broken (error(), header()); the decoder stays broken.
  DecodeStatus peek(std::span<const std::byte>& input) noexcept;

  // Moves past the frame the last peek returned. REQUIRES: that peek returned kFrame and
  // `input` is as it left it.
  void consume(std::span<const std::byte>& input) noexcept;

  // Valid after peek returned kFrame, until consume() or the input buffer is released: points
  // into the input when the frame lay wholly in it, else into the decoder's own buffer.
  std::span<const std::byte> frame() const noexcept { return {frame_, header_.length}; }
  wire::FrameHeader header() const noexcept { return header_; }
  FrameError error() const noexcept { return error_; }

  // Bytes of an incomplete frame held in the decoder's own buffer.
  size_t held() const noexcept { return held_; }
  // Forgets held bytes and any error (a new stream).
  void reset() noexcept;

 private:
  DecodeStatus fail(FrameError e) noexcept {
    error_ = e;
    return DecodeStatus::kError;
  }
  // Copies up to `want` bytes of the front of `input` into the hold buffer.
  void take(std::span<const std::byte>& input, size_t want) noexcept;

  std::array<std::byte, wire::kMaxFrameSize> hold_;
  size_t held_ = 0;
  const std::byte* frame_ = nullptr;
  wire::FrameHeader header_{};
  bool in_hold_ = false;  // the frame peek returned is the hold buffer
  FrameError error_ = FrameError::kNone;
};

// What ingest needs to know of one frame.
enum class ClientFrameKind : uint8_t {
  kHello,
  kTransaction,
  kOrder,
  kWatermark,
  kSubscribe,
  kUnknown,  // skipped by its length, counted, no reply
};

struct ClientFrame {
  ClientFrameKind kind = ClientFrameKind::kUnknown;
  // TRANSACTION, ORDER, WATERMARK: SPEC 1.5's value checks passed (false: INVALID).
  bool valid = true;
  uint64_t client_seq = 0;   // TRANSACTION, ORDER
  uint64_t client_id = 0;    // HELLO
  uint32_t hello_flags = 0;  // HELLO
  uint32_t topics = 0;       // SUBSCRIBE
};

// Decodes the known fields of one frame and applies the value checks.
// REQUIRES: check_header(header) == kNone and frame.size() == header.length.
ClientFrame inspect_client_frame(std::span<const std::byte> frame) noexcept;

// Checks that `payload` (a UDP datagram after its datagram_seq) is a sequence of whole frames
// with good headers; returns the first problem and counts the frames into *frames.
FrameError check_frames(std::span<const std::byte> payload, size_t* frames) noexcept;

}  // namespace sluice

#endif  // SLUICE_IO_FRAME_DECODER_H_
