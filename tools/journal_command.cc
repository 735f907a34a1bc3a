#include "tools/journal_command.h"

#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstdint>
#include <cstring>
#include <ctime>
#include <limits>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "core/absl_compat.h"
#include "core/wire_format.h"
#include "io/journal_format.h"
#include "io/journal_reader.h"
#include "tools/data_dir_args.h"

namespace sluice::tools {
namespace {

using journal::JournalReader;
using journal::JournalScan;
using journal::ReadResult;
using journal::Record;

struct JournalOptions {
  std::string dir;
  int64_t from = 0;
  int64_t to = std::numeric_limits<int64_t>::max();
};

// Reports a failed scan/open and returns the exit status: a directory that is not there is bad
// usage, corruption and I/O errors are a failed check.
int report(const absl::Status& status, std::string_view command) {
  const std::string message(status.message());
  if (absl::IsDataLoss(status)) {
    print_error(absl::StrCat("journal corrupt: ", message));
    return kExitFailed;
  }
  print_error(absl::StrCat(to_absl(command), ": ", message));
  return absl::IsNotFound(status) || absl::IsFailedPrecondition(status) ? kExitUsage
                                                                        : kExitFailed;
}

std::string base_name(const std::string& path) {
  const size_t slash = path.rfind('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

// 2024-05-01T12:00:00.123456789Z
std::string format_utc(int64_t ns) {
  int64_t seconds = ns / 1'000'000'000;
  int64_t fraction = ns % 1'000'000'000;
  if (fraction < 0) {  // floor, so times before 1970 still print a positive fraction
    fraction += 1'000'000'000;
    --seconds;
  }
  const auto t = static_cast<std::time_t>(seconds);
  std::tm tm{};
  if (::gmtime_r(&t, &tm) == nullptr) return absl::StrCat(ns, "ns");
  char date[64];
  std::strftime(date, sizeof(date), "%Y-%m-%dT%H:%M:%S", &tm);
  return absl::StrFormat("%s.%09dZ", date, fraction);
}

// 3723.000000001s
std::string format_duration(int64_t ns) {
  const char* sign = ns < 0 ? "-" : "";
  const uint64_t magnitude = ns < 0 ? 0 - static_cast<uint64_t>(ns) : static_cast<uint64_t>(ns);
  return absl::StrFormat("%s%d.%09ds", sign, magnitude / 1'000'000'000,
                         magnitude % 1'000'000'000);
}

std::string torn_tail_text(const journal::TornTail& torn) {
  return absl::StrCat(torn.path, " offset ", torn.offset, ": ", torn.reason);
}

// ---- info ------------------------------------------------------------------------------------

int run_info(const JournalOptions& options) {
  const absl::StatusOr<JournalScan> scan = journal::scan_journal(options.dir);
  if (!scan.ok()) return report(scan.status(), "journal info");
  std::string out = absl::StrCat("journal: ", options.dir, "\n");
  absl::StrAppend(&out, "segments: ", scan->segments.size(), "\n");
  for (const journal::SegmentInfo& s : scan->segments) {
    std::string range = s.record_count == 0
                            ? std::string("no records")
                            : absl::StrCat("seq ", s.first_sequence, "..", s.last_sequence);
    const uint64_t record_bytes =
        s.data_end > journal::kSegmentHeaderSize ? s.data_end - journal::kSegmentHeaderSize : 0;
    absl::StrAppendFormat(&out, "  %s  %-27s  records %d  bytes %d", base_name(s.path), range,
                          s.record_count, record_bytes);
    if (s.data_end == 0) {
      absl::StrAppend(&out, "  (no header: all zeros, ", s.file_size, "-byte file)");
    } else if (s.file_size < s.header.segment_size) {
      absl::StrAppend(&out, "  (file cut short: ", s.file_size, " of ", s.header.segment_size,
                      " bytes)");
    }
    out.push_back('\n');
  }
  if (scan->record_count == 0) {
    absl::StrAppend(&out, "records: 0\n");
  } else {
    // The first and the last record's, which need not be the extremes: CLOCK_REALTIME can step.
    int64_t first_ns = 0;
    int64_t last_ns = 0;
    bool seen = false;
    for (const journal::SegmentInfo& s : scan->segments) {
      if (s.record_count == 0) continue;
      if (!seen) first_ns = s.first_ingest_ns;
      seen = true;
      last_ns = s.last_ingest_ns;
    }
    absl::StrAppend(&out, "first sequence: ", scan->first_sequence, "\n");
    absl::StrAppend(&out, "last sequence: ", scan->last_sequence, "\n");
    absl::StrAppend(&out, "records: ", scan->record_count, "\n");
    absl::StrAppend(&out, "bytes: ", scan->bytes, "\n");
    absl::StrAppend(&out, "ingest time: ", format_utc(first_ns), " .. ", format_utc(last_ns),
                    " (", format_duration(last_ns - first_ns), ")\n");
  }
  if (scan->torn_tail.has_value()) {
    absl::StrAppend(&out, "torn tail: ", torn_tail_text(*scan->torn_tail), "\n");
  }
  std::fwrite(out.data(), 1, out.size(), stdout);
  return std::fflush(stdout) == 0 || errno == EPIPE ? kExitOk : kExitFailed;
}

// ---- verify ----------------------------------------------------------------------------------

int run_verify(const JournalOptions& options) {
  const absl::StatusOr<JournalScan> scan = journal::scan_journal(options.dir);
  if (!scan.ok()) return report(scan.status(), "journal verify");
  std::string out = absl::StrCat("ok: ", options.dir, ": ", scan->record_count, " records");
  if (scan->record_count > 0) {
    absl::StrAppend(&out, ", sequences ", scan->first_sequence, "..", scan->last_sequence);
  }
  absl::StrAppend(&out, ", ", scan->segments.size(), " segments, ", scan->bytes, " bytes\n");
  if (scan->torn_tail.has_value()) {
    absl::StrAppend(&out, "note: torn tail (the end of the log, not corruption) at ",
                    torn_tail_text(*scan->torn_tail), "\n");
  }
  std::fwrite(out.data(), 1, out.size(), stdout);
  return std::fflush(stdout) == 0 || errno == EPIPE ? kExitOk : kExitFailed;
}

// ---- dump ------------------------------------------------------------------------------------

// A large buffer over fd 1 that treats a closed pipe as "the reader has seen enough".
class StdoutBuffer {
 public:
  static constexpr size_t kCapacity = 1 << 20;
  static constexpr size_t kMaxLine = 512;  // the longest line dump formats, with room to spare

  StdoutBuffer() : buffer_(kCapacity) {}

  // Room for one line; finish it with commit().
  char* line() {
    if (buffer_.size() - used_ < kMaxLine) flush();
    return buffer_.data() + used_;
  }
  void commit(char* end) { used_ = static_cast<size_t>(end - buffer_.data()); }

  void flush() {
    size_t done = 0;
    while (done < used_ && !closed_ && error_ == 0) {
      const ssize_t n = ::write(STDOUT_FILENO, buffer_.data() + done, used_ - done);
      if (n >= 0) {
        done += static_cast<size_t>(n);
      } else if (errno == EPIPE) {
        closed_ = true;
      } else if (errno != EINTR) {
        error_ = errno;
      }
    }
    used_ = 0;
  }

  bool closed() const { return closed_; }  // the reading end went away (dump | head)
  int error() const { return error_; }

 private:
  std::vector<char> buffer_;
  size_t used_ = 0;
  bool closed_ = false;
  int error_ = 0;
};

char* put(char* p, std::string_view s) {
  std::memcpy(p, s.data(), s.size());
  return p + s.size();
}

template <typename Int>
char* put(char* p, std::string_view key, Int value) {
  p = put(p, key);
  return std::to_chars(p, p + 24, value).ptr;
}

char* put_hex_byte(char* p, uint8_t value) {
  static constexpr char kDigits[] = "0123456789abcdef";
  *p++ = kDigits[value >> 4];
  *p++ = kDigits[value & 0xF];
  return p;
}

// One record as "seq=... ingest_ns=... client_id=... type=... v=... <fields>".
char* format_record(char* p, const Record& r) {
  p = put(p, "seq=", r.sequence);
  p = put(p, " ingest_ns=", r.ingest_ns);
  p = put(p, " client_id=", r.client_id);
  const wire::FrameHeader h = wire::decode_header(r.frame.data());
  const std::string_view name = wire::frame_type_name(h.type);
  if (name == "UNKNOWN") {
    p = put_hex_byte(put(p, " type=0x"), h.type);
  } else {
    p = put(put(p, " type="), name);
  }
  p = put(p, " v=", static_cast<unsigned>(h.version));
  const size_t v1_length = wire::kHeaderSize + wire::min_payload(h.type);
  const auto type = static_cast<wire::FrameType>(h.type);
  const bool decodable =
      (type == wire::FrameType::kTransaction || type == wire::FrameType::kOrder ||
       type == wire::FrameType::kWatermark) &&
      r.frame.size() >= v1_length;
  if (!decodable) return put(p, " len=", r.frame.size());
  switch (type) {
    case wire::FrameType::kTransaction: {
      const wire::Transaction t = wire::decode_transaction(r.frame);
      p = put(p, " client_seq=", t.client_seq);
      p = put(p, " event_time_ns=", t.event_time_ns);
      p = put(p, " account_id=", t.account_id);
      p = put(p, " amount_minor=", t.amount_minor);
      p = put(p, " merchant_id=", t.merchant_id);
      p = put(p, " currency=", t.currency);
      p = put(p, " channel=", static_cast<unsigned>(t.channel));
      break;
    }
    case wire::FrameType::kOrder: {
      const wire::Order o = wire::decode_order(r.frame);
      p = put(p, " client_seq=", o.client_seq);
      p = put(p, " event_time_ns=", o.event_time_ns);
      p = put(p, " account_id=", o.account_id);
      p = put(p, " order_id=", o.order_id);
      p = put(p, " instrument_id=", o.instrument_id);
      if (o.side == static_cast<uint8_t>(wire::Side::kBuy)) {
        p = put(p, " side=B");
      } else if (o.side == static_cast<uint8_t>(wire::Side::kSell)) {
        p = put(p, " side=S");
      } else {
        p = put(p, " side=", static_cast<unsigned>(o.side));  // never journaled; show it raw
      }
      p = put(p, " quantity=", o.quantity);
      p = put(p, " price=", o.price);
      break;
    }
    default: {
      p = put(p, " event_time_ns=", wire::decode_watermark(r.frame).event_time_ns);
      break;
    }
  }
  // A newer version's longer frame: the known fields above, and say how long it was.
  if (r.frame.size() != v1_length) p = put(p, " len=", r.frame.size());
  return p;
}

int run_dump(const JournalOptions& options) {
  if (options.from < 0 || options.to < 0) {
    print_error("journal dump: --from and --to are sequences, >= 0 (see 'sluice journal dump --help')");
    return kExitUsage;
  }
  if (options.from > options.to) {
    print_error(absl::StrCat("journal dump: --from ", options.from, " is after --to ", options.to));
    return kExitUsage;
  }
  absl::StatusOr<std::unique_ptr<JournalReader>> reader = JournalReader::open(options.dir);
  if (!reader.ok()) return report(reader.status(), "journal dump");
  if (options.from > 0) {
    const absl::Status sought = (*reader)->seek(options.from);
    if (!sought.ok()) return report(sought, "journal dump");
  }
  StdoutBuffer out;
  Record record;
  ReadResult result;
  while ((result = (*reader)->next(&record)) == ReadResult::kRecord) {
    if (record.sequence > options.to) break;
    char* p = format_record(out.line(), record);
    *p++ = '\n';
    out.commit(p);
    if (out.closed()) return kExitOk;  // dump | head: the reader has what it wanted
  }
  out.flush();
  if (out.closed()) return kExitOk;
  if (out.error() != 0) {
    print_error(absl::StrCat("journal dump: writing to stdout: ", std::strerror(out.error())));
    return kExitFailed;
  }
  if (result == ReadResult::kCorrupt) return report((*reader)->status(), "journal dump");
  if (result == ReadResult::kEnd && (*reader)->torn_tail().has_value()) {
    // stderr, so stdout stays records only.
    print_error(absl::StrCat("note: torn tail (the end of the log, not corruption) at ",
                             torn_tail_text(*(*reader)->torn_tail())));
  }
  return kExitOk;
}

}  // namespace

void add_journal_command(CLI::App& app, CommandAction* action) {
  CLI::App* journal = app.add_subcommand("journal", "look inside a journal directory");
  journal->require_subcommand(1);
  // Shared by the subcommands' option bindings and actions, alive as long as `app`.
  auto options = std::make_shared<JournalOptions>();

  CLI::App* info = journal->add_subcommand(
      "info", "segments, sequence range, record count, bytes, ingest time span, torn tail");
  info->add_option("DIR", options->dir, "journal directory (or a data directory holding journal/)")
      ->required();
  // A data directory stands for its journal: resolved once the whole line is parsed.
  auto resolved = [options] {
    JournalOptions o = *options;
    o.dir = journal_dir_of(o.dir);
    return o;
  };
  info->callback([action, resolved] { *action = [resolved] { return run_info(resolved()); }; });

  CLI::App* dump = journal->add_subcommand("dump", "print one record a line");
  dump->add_option("DIR", options->dir, "journal directory (or a data directory holding journal/)")
      ->required();
  dump->add_option("--from", options->from, "first sequence to print (default: the first)");
  dump->add_option("--to", options->to, "last sequence to print (default: the last)");
  dump->callback([action, resolved] { *action = [resolved] { return run_dump(resolved()); }; });

  CLI::App* verify = journal->add_subcommand(
      "verify", "check every record; exit 1 on corruption, naming the segment file and offset");
  verify
      ->add_option("DIR", options->dir, "journal directory (or a data directory holding journal/)")
      ->required();
  verify->callback(
      [action, resolved] { *action = [resolved] { return run_verify(resolved()); }; });
}

}  // namespace sluice::tools
