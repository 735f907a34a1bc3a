#include "tools/snapshot_command.h"

#include <cerrno>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "io/journal_reader.h"
#include "io/snapshot_file.h"
#include "io/snapshot_format.h"

namespace sluice::tools {
namespace {

namespace fs = std::filesystem;

struct SnapshotArgs {
  std::string dir;
};

// DIR is the snapshot directory, or a data directory with snapshots/ (and journal/).
struct Dirs {
  std::string snapshots;
  std::string journal;  // empty if unknown
};
std::optional<Dirs> dirs_of(const std::string& dir) {
  std::error_code ec;
  if (fs::is_directory(fs::path(dir) / "snapshots", ec)) {
    Dirs d{(fs::path(dir) / "snapshots").string(), ""};
    if (fs::is_directory(fs::path(dir) / "journal", ec))
      d.journal = (fs::path(dir) / "journal").string();
    return d;
  }
  if (!fs::is_directory(dir, ec)) return std::nullopt;
  Dirs d{dir, ""};
  // <data>/snapshots given directly: its sibling journal/ is the one it belongs to.
  const fs::path sibling = fs::path(dir).parent_path() / "journal";
  if (fs::path(dir).filename() == "snapshots" && fs::is_directory(sibling, ec)) {
    d.journal = sibling.string();
  }
  return d;
}

std::string format_utc(int64_t ns) {
  int64_t seconds = ns / 1'000'000'000;
  int64_t fraction = ns % 1'000'000'000;
  if (fraction < 0) {
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

std::string base_name(const std::string& path) { return fs::path(path).filename().string(); }

struct Checked {
  snapshot::Listed file;
  std::optional<snapshot::Header> header;  // when the header decodes
  uint64_t bytes = 0;
  std::string error;  // empty: valid
};

// Reads and checks every snapshot file (header, body CRC, name against header).
std::vector<Checked> check_all(const std::vector<snapshot::Listed>& files) {
  std::vector<Checked> out;
  for (const snapshot::Listed& f : files) {
    Checked c{f};
    std::error_code ec;
    c.bytes = fs::file_size(f.path, ec);
    auto m = snapshot::MappedSnapshot::open(f.path, /*verify=*/true);
    if (m.ok()) {
      const snapshot::Header& h = (*m)->header();
      c.header = h;
      if (h.shard_index != f.name.shard_index || h.shard_count != f.name.shard_count ||
          h.sequence != f.name.sequence) {
        c.error = absl::StrCat("header says shard ", h.shard_index, " of ", h.shard_count,
                               " at sequence ", h.sequence, ", not what the file name says");
      }
    } else {
      std::string message(m.status().message());
      const std::string prefix = f.path + ": ";
      if (message.rfind(prefix, 0) == 0) message = message.substr(prefix.size());
      c.error = message;
      // Still show what the header says, if it decodes.
      auto header_only = snapshot::MappedSnapshot::open(f.path, /*verify=*/false);
      if (header_only.ok()) c.header = (*header_only)->header();
    }
    out.push_back(std::move(c));
  }
  return out;
}

// The newest (sequence, count) whose files are all present, valid and of one config, and (when
// the journal is known) whose sequence the journal holds. Mirrors recovery, which also checks
// the config against its own.
std::string chosen_set(const std::vector<Checked>& checked, const std::string& journal_dir) {
  std::map<int64_t, std::map<uint32_t, std::vector<const Checked*>>, std::greater<>> sets;
  for (const Checked& c : checked)
    sets[c.file.name.sequence][c.file.name.shard_count].push_back(&c);
  std::unique_ptr<journal::JournalReader> reader;
  if (!journal_dir.empty()) {
    auto r = journal::JournalReader::open(journal_dir);
    if (r.ok()) reader = *std::move(r);
  }
  for (const auto& [seq, by_count] : sets) {
    for (auto it = by_count.rbegin(); it != by_count.rend(); ++it) {
      const auto& files = it->second;
      if (files.size() != it->first) continue;
      bool ok = true;
      for (const Checked* c : files) {
        ok = ok && c->error.empty() &&
             c->header->config_fingerprint == files.front()->header->config_fingerprint;
      }
      if (!ok) continue;
      if (reader != nullptr) {
        journal::Record rec;
        if (!reader->seek(seq).ok() || reader->next(&rec) != journal::ReadResult::kRecord ||
            rec.sequence != seq) {
          continue;
        }
      }
      return absl::StrCat("sequence ", seq, " (", it->first, " shard", it->first == 1 ? "" : "s",
                          reader != nullptr ? ", present in the journal" : "", ")");
    }
  }
  return "none (the journal is replayed from its start)";
}

int run_info(const SnapshotArgs& args) {
  const std::optional<Dirs> dirs = dirs_of(args.dir);
  if (!dirs.has_value()) {
    print_error(absl::StrCat("snapshot info: ", args.dir, ": no such directory"));
    return kExitUsage;
  }
  auto files = snapshot::list(dirs->snapshots);
  if (!files.ok()) {
    print_error(absl::StrCat("snapshot info: ", files.status().message()));
    return kExitFailed;
  }
  const std::vector<Checked> checked = check_all(*files);
  std::string out = absl::StrCat("snapshots: ", dirs->snapshots, "\nfiles: ", checked.size(), "\n");
  for (const Checked& c : checked) {
    absl::StrAppend(&out, "  ", base_name(c.file.path), "  shard ", c.file.name.shard_index, "/",
                    c.file.name.shard_count, "  seq ", c.file.name.sequence);
    if (c.header.has_value()) {
      const snapshot::Header& h = *c.header;
      absl::StrAppend(&out, "  maxT ",
                      h.max_time == INT64_MIN ? std::string("none") : absl::StrCat(h.max_time),
                      "  entries ", h.entries(), " (accounts ", h.accounts, ", history ",
                      h.history_entries, ", positions ", h.positions, ", rate ", h.rate_entries,
                      ", timers ", h.timers, ", clients ", h.clients, ")");
    }
    absl::StrAppend(&out, "  bytes ", c.bytes);
    if (c.header.has_value()) absl::StrAppend(&out, "  created ", format_utc(c.header->created_ns));
    absl::StrAppend(&out, c.error.empty() ? "  ok" : absl::StrCat("  BAD: ", c.error), "\n");
  }
  absl::StrAppend(&out, "recovery would start from: ", chosen_set(checked, dirs->journal), "\n");
  std::fwrite(out.data(), 1, out.size(), stdout);
  return std::fflush(stdout) == 0 || errno == EPIPE ? kExitOk : kExitFailed;
}

int run_verify(const SnapshotArgs& args) {
  const std::optional<Dirs> dirs = dirs_of(args.dir);
  if (!dirs.has_value()) {
    print_error(absl::StrCat("snapshot verify: ", args.dir, ": no such directory"));
    return kExitUsage;
  }
  auto files = snapshot::list(dirs->snapshots);
  if (!files.ok()) {
    print_error(absl::StrCat("snapshot verify: ", files.status().message()));
    return kExitFailed;
  }
  int bad = 0;
  uint64_t bytes = 0;
  for (const Checked& c : check_all(*files)) {
    bytes += c.bytes;
    if (c.error.empty()) continue;
    ++bad;
    print_error(absl::StrCat("snapshot verify: ", c.file.path, ": ", c.error));
  }
  if (bad > 0) return kExitFailed;
  std::printf("ok: %s: %zu snapshot files, %llu bytes\n", dirs->snapshots.c_str(), files->size(),
              static_cast<unsigned long long>(bytes));
  return std::fflush(stdout) == 0 || errno == EPIPE ? kExitOk : kExitFailed;
}

}  // namespace

void add_snapshot_command(CLI::App& app, CommandAction* action) {
  CLI::App* snap = app.add_subcommand("snapshot", "look inside a snapshot directory");
  snap->require_subcommand(1);
  auto args = std::make_shared<SnapshotArgs>();
  CLI::App* info = snap->add_subcommand(
      "info", "one line per snapshot file, and the set recovery would start from");
  info->add_option("DIR", args->dir, "snapshot directory (or a data directory with snapshots/)")
      ->required();
  info->callback([action, args] { *action = [args] { return run_info(*args); }; });
  CLI::App* verify =
      snap->add_subcommand("verify", "check every snapshot file; exit 1 naming each bad one");
  verify->add_option("DIR", args->dir, "snapshot directory (or a data directory with snapshots/)")
      ->required();
  verify->callback([action, args] { *action = [args] { return run_verify(*args); }; });
}

}  // namespace sluice::tools
