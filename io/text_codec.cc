#include "io/text_codec.h"

#include <algorithm>
#include <charconv>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "core/absl_compat.h"

namespace sluice::text {
namespace {

constexpr std::string_view kHelloGrammar = "HELLO,<client_id>";
constexpr std::string_view kTransactionGrammar =
    "T,<client_seq>,<event_time_ns>,<account_id>,<amount_minor>,<merchant_id>,<currency>,"
    "<channel>";
constexpr std::string_view kOrderGrammar =
    "O,<client_seq>,<event_time_ns>,<account_id>,<order_id>,<instrument_id>,<B|S>,<quantity>,"
    "<price>";
constexpr std::string_view kWatermarkGrammar = "W,<event_time_ns>";
constexpr std::string_view kSubscribeGrammar = "SUB";

constexpr size_t kMaxFields = 10;

// Splits at ','; returns the field count, or kMaxFields + 1 when there are more.
size_t split(std::string_view line, std::array<std::string_view, kMaxFields>& fields) {
  size_t n = 0;
  for (;;) {
    const size_t comma = line.find(',');
    if (n == kMaxFields) return kMaxFields + 1;
    fields[n++] = line.substr(0, comma);
    if (comma == std::string_view::npos) return n;
    line.remove_prefix(comma + 1);
  }
}

// A whole field as a decimal number of type T: no sign for unsigned types, no '+', no spaces,
// and in range.
template <typename T>
bool parse_number(std::string_view s, T* out) {
  if (s.empty()) return false;
  const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), *out);
  return ec == std::errc() && end == s.data() + s.size();
}

ParsedLine malformed(std::string_view grammar, std::string_view field, size_t fields) {
  ParsedLine p;
  p.status = LineStatus::kMalformed;
  p.grammar = grammar;
  p.field = field;
  p.fields = fields;
  return p;
}

ParsedLine frame_line(size_t size) {
  ParsedLine p;
  p.status = LineStatus::kFrame;
  p.frame_size = size;
  return p;
}

// Appends to a char buffer; the callers guarantee room (kMaxServerLine bounds every line).
class LineWriter {
 public:
  explicit LineWriter(std::span<char> out) : out_(out) {}
  LineWriter& text(std::string_view s) {
    std::memcpy(out_.data() + size_, s.data(), s.size());
    size_ += s.size();
    return *this;
  }
  LineWriter& ch(char c) {
    out_[size_++] = c;
    return *this;
  }
  template <typename T>
  LineWriter& num(T v) {
    const auto r = std::to_chars(out_.data() + size_, out_.data() + out_.size(), v);
    size_ = static_cast<size_t>(r.ptr - out_.data());
    return *this;
  }
  size_t end_line() {
    out_[size_++] = '\n';
    return size_;
  }

 private:
  std::span<char> out_;
  size_t size_ = 0;
};

bool parse_verdict(std::string_view s, wire::Verdict* v) {
  for (uint8_t i = 0; i <= static_cast<uint8_t>(wire::Verdict::kInvalid); ++i) {
    if (wire::verdict_name(static_cast<wire::Verdict>(i)) == s) {
      *v = static_cast<wire::Verdict>(i);
      return true;
    }
  }
  return false;
}

bool parse_rule(std::string_view s, wire::Rule* r) {
  for (uint16_t i = 1; i <= static_cast<uint16_t>(wire::Rule::kOrderRate); ++i) {
    if (wire::rule_name(static_cast<wire::Rule>(i)) == s) {
      *r = static_cast<wire::Rule>(i);
      return true;
    }
  }
  return false;
}

}  // namespace

DecodeStatus LineDecoder::peek(std::span<const std::byte>& input) noexcept {
  if (failed_) return DecodeStatus::kError;
  if (in_hold_) return DecodeStatus::kFrame;  // peeked before and not consumed yet
  const char* data = reinterpret_cast<const char*>(input.data());
  // Room left for the line's content; one more byte may be its '\n'.
  const size_t room = kMaxLineLength - held_;
  const size_t scan = std::min(input.size(), room + 1);
  const void* nl = scan == 0 ? nullptr : std::memchr(data, '\n', scan);
  if (nl == nullptr) {
    if (input.size() > room) {
      failed_ = true;
      return DecodeStatus::kError;
    }
    std::memcpy(hold_.data() + held_, data, input.size());
    held_ += input.size();
    input = input.subspan(input.size());
    return DecodeStatus::kNeedMore;
  }
  const size_t length = static_cast<size_t>(static_cast<const char*>(nl) - data);
  if (held_ == 0) {
    line_ = std::string_view(data, length);
    consume_bytes_ = length + 1;
  } else {
    // The end of a line that began in an earlier buffer: complete it in the hold buffer and
    // take its bytes (and the '\n') from the input now, so a second peek finds it whole.
    std::memcpy(hold_.data() + held_, data, length);
    held_ += length;
    input = input.subspan(length + 1);
    line_ = std::string_view(hold_.data(), held_);
    consume_bytes_ = 0;
    in_hold_ = true;
  }
  if (!line_.empty() && line_.back() == '\r') line_.remove_suffix(1);
  return DecodeStatus::kFrame;
}

void LineDecoder::consume(std::span<const std::byte>& input) noexcept {
  if (in_hold_) {
    held_ = 0;
    in_hold_ = false;
  } else {
    input = input.subspan(consume_bytes_);
  }
  consume_bytes_ = 0;
  line_ = {};
}

void LineDecoder::reset() noexcept {
  held_ = 0;
  in_hold_ = false;
  failed_ = false;
  consume_bytes_ = 0;
  line_ = {};
}

std::string describe(const ParsedLine& p) {
  if (p.grammar.empty()) {
    return "unknown line; expected HELLO, T, O, W or SUB lines";
  }
  if (p.field.empty()) {
    return absl::StrCat(p.fields, " fields; expected ", to_absl(p.grammar));
  }
  return absl::StrCat("bad ", to_absl(p.field), "; expected ", to_absl(p.grammar));
}

ParsedLine parse_client_line(std::string_view line, std::span<std::byte> frame) noexcept {
  if (line.empty()) {
    ParsedLine p;
    p.status = LineStatus::kEmpty;
    return p;
  }
  std::array<std::string_view, kMaxFields> f;
  const size_t n = split(line, f);
  const std::string_view kind = f[0];

  if (kind == "T") {
    if (n != 8) return malformed(kTransactionGrammar, "", n);
    wire::Transaction t;
    if (!parse_number(f[1], &t.client_seq)) return malformed(kTransactionGrammar, "client_seq", n);
    if (!parse_number(f[2], &t.event_time_ns)) {
      return malformed(kTransactionGrammar, "event_time_ns", n);
    }
    if (!parse_number(f[3], &t.account_id)) return malformed(kTransactionGrammar, "account_id", n);
    if (!parse_number(f[4], &t.amount_minor)) {
      return malformed(kTransactionGrammar, "amount_minor", n);
    }
    if (!parse_number(f[5], &t.merchant_id)) {
      return malformed(kTransactionGrammar, "merchant_id", n);
    }
    if (!parse_number(f[6], &t.currency)) return malformed(kTransactionGrammar, "currency", n);
    if (!parse_number(f[7], &t.channel)) return malformed(kTransactionGrammar, "channel", n);
    return frame_line(wire::encode(t, frame));
  }
  if (kind == "O") {
    if (n != 9) return malformed(kOrderGrammar, "", n);
    wire::Order o;
    if (!parse_number(f[1], &o.client_seq)) return malformed(kOrderGrammar, "client_seq", n);
    if (!parse_number(f[2], &o.event_time_ns)) return malformed(kOrderGrammar, "event_time_ns", n);
    if (!parse_number(f[3], &o.account_id)) return malformed(kOrderGrammar, "account_id", n);
    if (!parse_number(f[4], &o.order_id)) return malformed(kOrderGrammar, "order_id", n);
    if (!parse_number(f[5], &o.instrument_id)) return malformed(kOrderGrammar, "instrument_id", n);
    if (f[6] == "B") {
      o.side = static_cast<uint8_t>(wire::Side::kBuy);
    } else if (f[6] == "S") {
      o.side = static_cast<uint8_t>(wire::Side::kSell);
    } else {
      return malformed(kOrderGrammar, "side", n);
    }
    if (!parse_number(f[7], &o.quantity)) return malformed(kOrderGrammar, "quantity", n);
    if (!parse_number(f[8], &o.price)) return malformed(kOrderGrammar, "price", n);
    return frame_line(wire::encode(o, frame));
  }
  if (kind == "W") {
    if (n != 2) return malformed(kWatermarkGrammar, "", n);
    wire::Watermark w;
    if (!parse_number(f[1], &w.event_time_ns)) {
      return malformed(kWatermarkGrammar, "event_time_ns", n);
    }
    return frame_line(wire::encode(w, frame));
  }
  if (kind == "HELLO") {
    if (n != 2) return malformed(kHelloGrammar, "", n);
    wire::Hello h;
    if (!parse_number(f[1], &h.client_id)) return malformed(kHelloGrammar, "client_id", n);
    return frame_line(wire::encode(h, frame));
  }
  if (kind == "SUB") {
    if (n != 1) return malformed(kSubscribeGrammar, "", n);
    return frame_line(wire::encode(wire::Subscribe{.topics = 1}, frame));
  }
  return malformed("", "", n);
}

size_t format_hello_ack(const wire::HelloAck& m, std::span<char> out) noexcept {
  return LineWriter(out)
      .text("HELLO_ACK,")
      .num(m.client_id)
      .ch(',')
      .num(m.last_client_seq)
      .end_line();
}

size_t format_decision(const wire::Decision& m, std::span<char> out) noexcept {
  return LineWriter(out)
      .text("D,")
      .num(m.client_seq)
      .ch(',')
      .num(m.seq)
      .ch(',')
      .text(wire::verdict_name(m.verdict))
      .ch(',')
      .num(m.reason)
      .ch(',')
      .num(m.flags)
      .end_line();
}

size_t format_alert(const wire::Alert& m, std::span<char> out) noexcept {
  return LineWriter(out)
      .text("A,")
      .num(m.seq)
      .ch(',')
      .num(m.event_time_ns)
      .ch(',')
      .num(m.account_id)
      .ch(',')
      .text(wire::rule_name(m.rule))
      .ch(',')
      .num(m.value)
      .ch(',')
      .num(m.threshold)
      .end_line();
}

size_t format_error(uint16_t code, std::string_view message, std::span<char> out) noexcept {
  size_t n = std::min(message.size(), wire::kErrorMaxText);
  if (n < message.size()) {  // never cut a UTF-8 sequence in half
    while (n > 0 && (static_cast<unsigned char>(message[n]) & 0xC0) == 0x80) --n;
  }
  LineWriter w(out);
  w.text("E,").num(code).ch(',');
  for (size_t i = 0; i < n; ++i) {
    const char c = message[i];
    w.ch(c == '\n' || c == '\r' ? ' ' : c);
  }
  return w.end_line();
}

std::string format_client_line(std::span<const std::byte> frame) {
  if (frame.size() < wire::kHeaderSize) return "";
  const wire::FrameHeader h = wire::decode_header(frame.data());
  if (!is_client_type(h.type) || frame.size() < wire::kHeaderSize + wire::min_payload(h.type)) {
    return "";
  }
  switch (static_cast<wire::FrameType>(h.type)) {
    case wire::FrameType::kHello:
      return absl::StrCat("HELLO,", wire::decode_hello(frame).client_id);
    case wire::FrameType::kTransaction: {
      const wire::Transaction t = wire::decode_transaction(frame);
      return absl::StrCat("T,", t.client_seq, ",", t.event_time_ns, ",", t.account_id, ",",
                          t.amount_minor, ",", t.merchant_id, ",", t.currency, ",",
                          static_cast<int>(t.channel));
    }
    case wire::FrameType::kOrder: {
      const wire::Order o = wire::decode_order(frame);
      const std::string side = o.side == 1   ? "B"
                               : o.side == 2 ? "S"
                                             : absl::StrCat(static_cast<int>(o.side));
      return absl::StrCat("O,", o.client_seq, ",", o.event_time_ns, ",", o.account_id, ",",
                          o.order_id, ",", o.instrument_id, ",", side, ",", o.quantity, ",",
                          o.price);
    }
    case wire::FrameType::kWatermark:
      return absl::StrCat("W,", wire::decode_watermark(frame).event_time_ns);
    case wire::FrameType::kSubscribe: return "SUB";
    default: return "";
  }
}

ServerLine parse_server_line(std::string_view line) {
  ServerLine s;
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
  std::array<std::string_view, kMaxFields> f;
  if (line.rfind("E,", 0) == 0) {
    // The message is the rest of the line and may hold commas.
    const size_t comma = line.find(',', 2);
    if (comma == std::string_view::npos ||
        !parse_number(line.substr(2, comma - 2), &s.error_code)) {
      return s;
    }
    s.kind = ServerLine::Kind::kError;
    s.error_message = std::string(line.substr(comma + 1));
    return s;
  }
  const size_t n = split(line, f);
  if (f[0] == "HELLO_ACK" && n == 3 && parse_number(f[1], &s.hello_ack.client_id) &&
      parse_number(f[2], &s.hello_ack.last_client_seq)) {
    s.kind = ServerLine::Kind::kHelloAck;
  } else if (f[0] == "D" && n == 6 && parse_number(f[1], &s.decision.client_seq) &&
             parse_number(f[2], &s.decision.seq) && parse_verdict(f[3], &s.decision.verdict) &&
             parse_number(f[4], &s.decision.reason) && parse_number(f[5], &s.decision.flags)) {
    s.kind = ServerLine::Kind::kDecision;
  } else if (f[0] == "A" && n == 7 && parse_number(f[1], &s.alert.seq) &&
             parse_number(f[2], &s.alert.event_time_ns) &&
             parse_number(f[3], &s.alert.account_id) && parse_rule(f[4], &s.alert.rule) &&
             parse_number(f[5], &s.alert.value) && parse_number(f[6], &s.alert.threshold)) {
    s.kind = ServerLine::Kind::kAlert;
  }
  return s;
}

}  // namespace sluice::text
