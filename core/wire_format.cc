#include "core/wire_format.h"

#include <algorithm>

namespace sluice::wire {
namespace {

std::byte* begin_frame(std::span<std::byte> out, FrameType type, size_t payload_size) {
  std::fill_n(out.data(), kHeaderSize + payload_size, std::byte{0});  // reserved fields are 0
  encode_header(out.data(), FrameHeader{static_cast<uint16_t>(kHeaderSize + payload_size),
                                        static_cast<uint8_t>(type), kVersion});
  return out.data() + kHeaderSize;
}

}  // namespace

std::string_view frame_type_name(uint8_t type) {
  switch (static_cast<FrameType>(type)) {
    case FrameType::kHello: return "HELLO";
    case FrameType::kTransaction: return "TRANSACTION";
    case FrameType::kOrder: return "ORDER";
    case FrameType::kWatermark: return "WATERMARK";
    case FrameType::kSubscribe: return "SUBSCRIBE";
    case FrameType::kHelloAck: return "HELLO_ACK";
    case FrameType::kDecision: return "DECISION";
    case FrameType::kAlert: return "ALERT";
    case FrameType::kError: return "ERROR";
  }
  return "UNKNOWN";
}

std::string_view verdict_name(Verdict v) {
  switch (v) {
    case Verdict::kAccept: return "ACCEPT";
    case Verdict::kFlag: return "FLAG";
    case Verdict::kReject: return "REJECT";
    case Verdict::kDuplicate: return "DUPLICATE";
    case Verdict::kLate: return "LATE";
    case Verdict::kInvalid: return "INVALID";
  }
  return "UNKNOWN";
}

std::string_view rule_name(Rule r) {
  switch (r) {
    case Rule::kNone: return "NONE";
    case Rule::kVelocityExceeded: return "VELOCITY_EXCEEDED";
    case Rule::kAmountAnomaly: return "AMOUNT_ANOMALY";
    case Rule::kMaxOrderQty: return "MAX_ORDER_QTY";
    case Rule::kMaxOrderNotional: return "MAX_ORDER_NOTIONAL";
    case Rule::kPositionLimit: return "POSITION_LIMIT";
    case Rule::kOrderRate: return "ORDER_RATE";
  }
  return "UNKNOWN";
}

Hello decode_hello(std::span<const std::byte> frame) noexcept {
  const std::byte* p = payload(frame);
  return Hello{load<uint64_t>(p), load<uint32_t>(p + 8)};
}

Watermark decode_watermark(std::span<const std::byte> frame) noexcept {
  return Watermark{load<int64_t>(payload(frame))};
}

Subscribe decode_subscribe(std::span<const std::byte> frame) noexcept {
  return Subscribe{load<uint32_t>(payload(frame))};
}

HelloAck decode_hello_ack(std::span<const std::byte> frame) noexcept {
  const std::byte* p = payload(frame);
  return HelloAck{load<uint64_t>(p), load<uint64_t>(p + 8)};
}

Decision decode_decision(std::span<const std::byte> frame) noexcept {
  const std::byte* p = payload(frame);
  return Decision{load<uint64_t>(p), load<uint64_t>(p + 8), static_cast<Verdict>(load<uint8_t>(p + 16)),
                  load<uint8_t>(p + 17), load<uint32_t>(p + 20)};
}

Alert decode_alert(std::span<const std::byte> frame) noexcept {
  const std::byte* p = payload(frame);
  return Alert{load<uint64_t>(p),     load<int64_t>(p + 8),
               load<uint64_t>(p + 16), static_cast<Rule>(load<uint16_t>(p + 24)),
               load<int64_t>(p + 32), load<int64_t>(p + 40)};
}

size_t encode(const Hello& m, std::span<std::byte> out) noexcept {
  std::byte* p = begin_frame(out, FrameType::kHello, kHelloPayload);
  store(p, m.client_id);
  store(p + 8, m.flags);
  return kHeaderSize + kHelloPayload;
}

size_t encode(const Transaction& m, std::span<std::byte> out) noexcept {
  std::byte* p = begin_frame(out, FrameType::kTransaction, kTransactionPayload);
  store(p, m.client_seq);
  store(p + 8, m.event_time_ns);
  store(p + 16, m.account_id);
  store(p + 24, m.amount_minor);
  store(p + 32, m.merchant_id);
  store(p + 36, m.currency);
  store(p + 38, m.channel);
  return kHeaderSize + kTransactionPayload;
}

size_t encode(const Order& m, std::span<std::byte> out) noexcept {
  std::byte* p = begin_frame(out, FrameType::kOrder, kOrderPayload);
  store(p, m.client_seq);
  store(p + 8, m.event_time_ns);
  store(p + 16, m.account_id);
  store(p + 24, m.order_id);
  store(p + 32, m.instrument_id);
  store(p + 36, m.side);
  store(p + 40, m.quantity);
  store(p + 48, m.price);
  return kHeaderSize + kOrderPayload;
}

size_t encode(const Watermark& m, std::span<std::byte> out) noexcept {
  store(begin_frame(out, FrameType::kWatermark, kWatermarkPayload), m.event_time_ns);
  return kHeaderSize + kWatermarkPayload;
}

size_t encode(const Subscribe& m, std::span<std::byte> out) noexcept {
  store(begin_frame(out, FrameType::kSubscribe, kSubscribePayload), m.topics);
  return kHeaderSize + kSubscribePayload;
}

size_t encode(const HelloAck& m, std::span<std::byte> out) noexcept {
  std::byte* p = begin_frame(out, FrameType::kHelloAck, kHelloAckPayload);
  store(p, m.client_id);
  store(p + 8, m.last_client_seq);
  return kHeaderSize + kHelloAckPayload;
}

size_t encode(const Decision& m, std::span<std::byte> out) noexcept {
  std::byte* p = begin_frame(out, FrameType::kDecision, kDecisionPayload);
  store(p, m.client_seq);
  store(p + 8, m.seq);
  store(p + 16, static_cast<uint8_t>(m.verdict));
  store(p + 17, m.reason);
  store(p + 20, m.flags);
  return kHeaderSize + kDecisionPayload;
}

size_t encode(const Alert& m, std::span<std::byte> out) noexcept {
  std::byte* p = begin_frame(out, FrameType::kAlert, kAlertPayload);
  store(p, m.seq);
  store(p + 8, m.event_time_ns);
  store(p + 16, m.account_id);
  store(p + 24, static_cast<uint16_t>(m.rule));
  store(p + 32, m.value);
  store(p + 40, m.threshold);
  return kHeaderSize + kAlertPayload;
}

size_t encode_error(uint16_t code, std::string_view text, std::span<std::byte> out) noexcept {
  size_t n = std::min(text.size(), kErrorMaxText);
  // Never cut a UTF-8 sequence in half: back off to the start of the character at the cut.
  if (n < text.size()) {
    while (n > 0 && (static_cast<unsigned char>(text[n]) & 0xC0) == 0x80) --n;
  }
  std::byte* p = begin_frame(out, FrameType::kError, kErrorMinPayload + n);
  store(p, code);
  std::memcpy(p + kErrorMinPayload, text.data(), n);
  return kHeaderSize + kErrorMinPayload + n;
}

}  // namespace sluice::wire
