#include "io/frame_decoder.h"

#include <algorithm>
#include <cstring>

#include "absl/strings/str_cat.h"

namespace sluice {

wire::ErrorCode frame_error_code(FrameError error) noexcept {
  switch (error) {
    case FrameError::kTooShort: return wire::ErrorCode::kFrameTooShort;
    case FrameError::kTooLong: return wire::ErrorCode::kFrameTooLong;
    case FrameError::kBadVersion: return wire::ErrorCode::kBadVersion;
    case FrameError::kShortPayload: return wire::ErrorCode::kShortPayload;
    case FrameError::kTruncated:  // UDP only: no ERROR is ever sent for it
    case FrameError::kNone: break;
  }
  return wire::ErrorCode::kShortPayload;
}

std::string describe_frame_error(FrameError error, wire::FrameHeader h) {
  switch (error) {
    case FrameError::kNone: return "no error";
    case FrameError::kTooShort:
      return absl::StrCat("frame length ", h.length, " is below ", wire::kHeaderSize);
    case FrameError::kTooLong:
      return absl::StrCat("frame length ", h.length, " is above ", wire::kMaxFrameSize);
    case FrameError::kBadVersion:
      return absl::StrCat("frame of type ", static_cast<int>(h.type), " has version 0");
    case FrameError::kShortPayload:
      return absl::StrCat(std::string(wire::frame_type_name(h.type)), " frame length ", h.length,
                          " is shorter than its ", wire::kHeaderSize + wire::min_payload(h.type),
                          " bytes");
    case FrameError::kTruncated:
      return absl::StrCat("frame length ", h.length, " runs past the end of the datagram");
  }
  return "unknown frame error";
}

void FrameDecoder::take(std::span<const std::byte>& input, size_t want) noexcept {
  const size_t n = std::min(want, input.size());
  std::memcpy(hold_.data() + held_, input.data(), n);
  held_ += n;
  input = input.subspan(n);
}

DecodeStatus FrameDecoder::peek(std::span<const std::byte>& input) noexcept {
  if (error_ != FrameError::kNone) return DecodeStatus::kError;
  if (held_ == 0) {
    // The common case: the frame starts in this buffer.
    if (input.size() < wire::kHeaderSize) {
      take(input, input.size());
      return DecodeStatus::kNeedMore;
    }
    header_ = wire::decode_header(input.data());
    if (const FrameError e = check_header(header_); e != FrameError::kNone) return fail(e);
    if (input.size() < header_.length) {
      take(input, input.size());  // the split frame: the one copy
      return DecodeStatus::kNeedMore;
    }
    frame_ = input.data();
    in_hold_ = false;
    return DecodeStatus::kFrame;
  }
  // A frame began in an earlier buffer: complete it in the hold buffer.
  if (held_ < wire::kHeaderSize) {
    take(input, wire::kHeaderSize - held_);
    if (held_ < wire::kHeaderSize) return DecodeStatus::kNeedMore;
  }
  header_ = wire::decode_header(hold_.data());
  if (const FrameError e = check_header(header_); e != FrameError::kNone) return fail(e);
  if (held_ < header_.length) {
    take(input, header_.length - held_);
    if (held_ < header_.length) return DecodeStatus::kNeedMore;
  }
  frame_ = hold_.data();
  in_hold_ = true;
  return DecodeStatus::kFrame;
}

void FrameDecoder::consume(std::span<const std::byte>& input) noexcept {
  if (in_hold_) {
    held_ = 0;
    in_hold_ = false;
  } else {
    input = input.subspan(header_.length);
  }
  frame_ = nullptr;
}

void FrameDecoder::reset() noexcept {
  held_ = 0;
  in_hold_ = false;
  frame_ = nullptr;
  error_ = FrameError::kNone;
}

ClientFrame inspect_client_frame(std::span<const std::byte> frame) noexcept {
  ClientFrame f;
  switch (static_cast<wire::FrameType>(wire::decode_header(frame.data()).type)) {
    case wire::FrameType::kHello: {
      const wire::Hello h = wire::decode_hello(frame);
      f.kind = ClientFrameKind::kHello;
      f.client_id = h.client_id;
      f.hello_flags = h.flags;
      break;
    }
    case wire::FrameType::kTransaction: {
      const wire::Transaction t = wire::decode_transaction(frame);
      f.kind = ClientFrameKind::kTransaction;
      f.valid = wire::is_valid(t);
      f.client_seq = t.client_seq;
      break;
    }
    case wire::FrameType::kOrder: {
      const wire::Order o = wire::decode_order(frame);
      f.kind = ClientFrameKind::kOrder;
      f.valid = wire::is_valid(o);
      f.client_seq = o.client_seq;
      break;
    }
    case wire::FrameType::kWatermark:
      f.kind = ClientFrameKind::kWatermark;
      f.valid = wire::is_valid(wire::decode_watermark(frame));
      break;
    case wire::FrameType::kSubscribe:
      f.kind = ClientFrameKind::kSubscribe;
      f.topics = wire::decode_subscribe(frame).topics;
      break;
    default: break;  // unknown to the server, including the server-to-client types
  }
  return f;
}

FrameError check_frames(std::span<const std::byte> payload, size_t* frames) noexcept {
  size_t count = 0;
  while (!payload.empty()) {
    if (payload.size() < wire::kHeaderSize) {
      *frames = count;
      return FrameError::kTruncated;
    }
    const wire::FrameHeader h = wire::decode_header(payload.data());
    if (const FrameError e = check_header(h); e != FrameError::kNone) {
      *frames = count;
      return e;
    }
    if (payload.size() < h.length) {
      *frames = count;
      return FrameError::kTruncated;
    }
    payload = payload.subspan(h.length);
    ++count;
  }
  *frames = count;
  return FrameError::kNone;
}

}  // namespace sluice
