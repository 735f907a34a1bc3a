// The binary wire protocol's frames (docs/protocol.md; SPEC section 1): layouts, encoders and
// decoders of the fixed fields. All integers little-endian, fixed width.
//
// Decoding here reads the known fields of a frame whose length is already known to cover them;
// validating a stream (length bounds, version 0, short frames) is the ingest decoder's job.
// Fields are only ever appended in later versions, so a longer payload decodes the same way.
//
// Thread safety: pure functions.
#ifndef SLUICE_CORE_WIRE_FORMAT_H_
#define SLUICE_CORE_WIRE_FORMAT_H_

#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <string_view>

namespace sluice::wire {

static_assert(std::endian::native == std::endian::little,
              "the wire and journal formats are little-endian; add byte swaps for this target");

inline constexpr size_t kHeaderSize = 4;
inline constexpr size_t kMaxFrameSize = 1024;
inline constexpr uint8_t kVersion = 1;

enum class FrameType : uint8_t {
  kHello = 0x01,
  kTransaction = 0x02,
  kOrder = 0x03,
  kWatermark = 0x04,
  kSubscribe = 0x05,
  kHelloAck = 0x81,
  kDecision = 0x82,
  kAlert = 0x83,
  kError = 0x8F,
};

// Payload bytes of version 1 of each known type (the minimum a frame of that type must carry).
inline constexpr size_t kHelloPayload = 16;
inline constexpr size_t kTransactionPayload = 40;
inline constexpr size_t kOrderPayload = 56;
inline constexpr size_t kWatermarkPayload = 8;
inline constexpr size_t kSubscribePayload = 4;
inline constexpr size_t kHelloAckPayload = 16;
inline constexpr size_t kDecisionPayload = 24;
inline constexpr size_t kAlertPayload = 48;
inline constexpr size_t kErrorMinPayload = 4;
inline constexpr size_t kErrorMaxText = 200;

// The version-1 payload size of a known type, 0 for an unknown type.
constexpr size_t min_payload(uint8_t type) {
  switch (static_cast<FrameType>(type)) {
    case FrameType::kHello: return kHelloPayload;
    case FrameType::kTransaction: return kTransactionPayload;
    case FrameType::kOrder: return kOrderPayload;
    case FrameType::kWatermark: return kWatermarkPayload;
    case FrameType::kSubscribe: return kSubscribePayload;
    case FrameType::kHelloAck: return kHelloAckPayload;
    case FrameType::kDecision: return kDecisionPayload;
    case FrameType::kAlert: return kAlertPayload;
    case FrameType::kError: return kErrorMinPayload;
  }
  return 0;
}

std::string_view frame_type_name(uint8_t type);  // "TRANSACTION", or "UNKNOWN"

struct FrameHeader {
  uint16_t length = 0;  // the whole frame, header included
  uint8_t type = 0;
  uint8_t version = 0;
};

enum class Side : uint8_t { kBuy = 1, kSell = 2 };

enum class Verdict : uint8_t {
  kAccept = 0,
  kFlag = 1,
  kReject = 2,
  kDuplicate = 3,
  kLate = 4,
  kInvalid = 5,
};
std::string_view verdict_name(Verdict v);  // "ACCEPT" ...

enum class Rule : uint16_t {
  kNone = 0,
  kVelocityExceeded = 1,
  kAmountAnomaly = 2,
  kMaxOrderQty = 3,
  kMaxOrderNotional = 4,
  kPositionLimit = 5,
  kOrderRate = 6,
};
std::string_view rule_name(Rule r);  // "VELOCITY_EXCEEDED" ...

struct Hello {
  uint64_t client_id = 0;
  uint32_t flags = 0;
};

struct Transaction {
  uint64_t client_seq = 0;
  int64_t event_time_ns = 0;
  uint64_t account_id = 0;
  int64_t amount_minor = 0;
  uint32_t merchant_id = 0;
  uint16_t currency = 0;
  uint8_t channel = 0;
};

struct Order {
  uint64_t client_seq = 0;
  int64_t event_time_ns = 0;
  uint64_t account_id = 0;
  uint64_t order_id = 0;
  uint32_t instrument_id = 0;
  uint8_t side = 0;  // 1 buy, 2 sell; anything else is INVALID
  int64_t quantity = 0;
  int64_t price = 0;
};

struct Watermark {
  int64_t event_time_ns = 0;
};

struct Subscribe {
  uint32_t topics = 0;  // bit 0: alerts
};

struct HelloAck {
  uint64_t client_id = 0;
  uint64_t last_client_seq = 0;
};

struct Decision {
  uint64_t client_seq = 0;
  uint64_t seq = 0;
  Verdict verdict = Verdict::kAccept;
  uint8_t reason = 0;
  uint32_t flags = 0;
};

struct Alert {
  uint64_t seq = 0;
  int64_t event_time_ns = 0;
  uint64_t account_id = 0;
  Rule rule = Rule::kNone;
  int64_t value = 0;
  int64_t threshold = 0;
};

// SPEC 1.5's value checks: account_id 0, amount_minor <= 0 (TRANSACTION), side not 1/2,
// quantity <= 0 or price <= 0 (ORDER), event_time_ns < 0 make an event INVALID.
constexpr bool is_valid(const Transaction& t) {
  return t.account_id != 0 && t.amount_minor > 0 && t.event_time_ns >= 0;
}
constexpr bool is_valid(const Order& o) {
  return o.account_id != 0 && (o.side == 1 || o.side == 2) && o.quantity > 0 && o.price > 0 &&
         o.event_time_ns >= 0;
}
constexpr bool is_valid(const Watermark& w) { return w.event_time_ns >= 0; }

// Little-endian field access at a byte offset. memcpy compiles to one mov on x86.
template <typename T>
inline T load(const std::byte* p) noexcept {
  T v;
  std::memcpy(&v, p, sizeof(T));
  return v;
}
template <typename T>
inline void store(std::byte* p, T v) noexcept {
  std::memcpy(p, &v, sizeof(T));
}

inline FrameHeader decode_header(const std::byte* frame) noexcept {
  return FrameHeader{load<uint16_t>(frame), load<uint8_t>(frame + 2), load<uint8_t>(frame + 3)};
}
inline void encode_header(std::byte* frame, FrameHeader h) noexcept {
  store<uint16_t>(frame, h.length);
  store<uint8_t>(frame + 2, h.type);
  store<uint8_t>(frame + 3, h.version);
}

// A frame's payload, which starts after the 4-byte header; payload field offsets count from it.
inline const std::byte* payload(std::span<const std::byte> frame) noexcept {
  return frame.data() + kHeaderSize;
}

// Decoders: REQUIRES frame.size() >= kHeaderSize + the type's version-1 payload.
Hello decode_hello(std::span<const std::byte> frame) noexcept;
// The two a shard decodes for every event are inline.
inline Transaction decode_transaction(std::span<const std::byte> frame) noexcept {
  const std::byte* p = payload(frame);
  return Transaction{load<uint64_t>(p),     load<int64_t>(p + 8),   load<uint64_t>(p + 16),
                     load<int64_t>(p + 24), load<uint32_t>(p + 32), load<uint16_t>(p + 36),
                     load<uint8_t>(p + 38)};
}
inline Order decode_order(std::span<const std::byte> frame) noexcept {
  const std::byte* p = payload(frame);
  return Order{load<uint64_t>(p),      load<int64_t>(p + 8),   load<uint64_t>(p + 16),
               load<uint64_t>(p + 24), load<uint32_t>(p + 32), load<uint8_t>(p + 36),
               load<int64_t>(p + 40),  load<int64_t>(p + 48)};
}
Watermark decode_watermark(std::span<const std::byte> frame) noexcept;
Subscribe decode_subscribe(std::span<const std::byte> frame) noexcept;
HelloAck decode_hello_ack(std::span<const std::byte> frame) noexcept;
Decision decode_decision(std::span<const std::byte> frame) noexcept;
Alert decode_alert(std::span<const std::byte> frame) noexcept;

// Encoders write a version-1 frame (header included) and return its length.
// REQUIRES: out.size() >= the frame's length.
size_t encode(const Hello& m, std::span<std::byte> out) noexcept;
size_t encode(const Transaction& m, std::span<std::byte> out) noexcept;
size_t encode(const Order& m, std::span<std::byte> out) noexcept;
size_t encode(const Watermark& m, std::span<std::byte> out) noexcept;
size_t encode(const Subscribe& m, std::span<std::byte> out) noexcept;
size_t encode(const HelloAck& m, std::span<std::byte> out) noexcept;
size_t encode(const Decision& m, std::span<std::byte> out) noexcept;
size_t encode(const Alert& m, std::span<std::byte> out) noexcept;
// The text is cut to kErrorMaxText bytes.
size_t encode_error(uint16_t code, std::string_view text, std::span<std::byte> out) noexcept;

}  // namespace sluice::wire

#endif  // SLUICE_CORE_WIRE_FORMAT_H_
