#include "pipeline/daemon_config.h"

#include <bit>
#include <functional>
#include <map>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "core/absl_compat.h"
#include "core/cpu.h"
#include "core/log.h"
#include "io/socket_address.h"

#include <toml++/toml.h>

namespace sluice {
namespace {

// A key's setter: takes the TOML node, writes the config, or says what was wrong with the value.
using Setter = std::function<absl::Status(const toml::node&, DaemonConfig&)>;

absl::Status type_error(const char* expected, const toml::node& node) {
  std::ostringstream got;
  got << node.type();
  return absl::InvalidArgumentError(absl::StrCat("expected ", expected, ", got ", got.str()));
}

Setter string_key(std::string DaemonConfig::*field) {
  return [field](const toml::node& n, DaemonConfig& c) -> absl::Status {
    const auto v = n.value<std::string>();
    if (!v || !n.is_string()) return type_error("a string", n);
    c.*field = *v;
    return absl::OkStatus();
  };
}

Setter bool_key(bool DaemonConfig::*field) {
  return [field](const toml::node& n, DaemonConfig& c) -> absl::Status {
    if (!n.is_boolean()) return type_error("true or false", n);
    c.*field = *n.value<bool>();
    return absl::OkStatus();
  };
}

template <typename T>
Setter int_key(T DaemonConfig::*field) {
  return [field](const toml::node& n, DaemonConfig& c) -> absl::Status {
    if (!n.is_integer()) return type_error("an integer", n);
    const int64_t v = *n.value<int64_t>();
    if (v < 0) return absl::InvalidArgumentError(absl::StrCat("must be >= 0, got ", v));
    if (static_cast<uint64_t>(v) > std::numeric_limits<T>::max()) {
      return absl::InvalidArgumentError(absl::StrCat("too large: ", v));
    }
    c.*field = static_cast<T>(v);
    return absl::OkStatus();
  };
}

Setter processor_int(int64_t ProcessorConfig::*field) {
  return [field](const toml::node& n, DaemonConfig& c) -> absl::Status {
    if (!n.is_integer()) return type_error("an integer", n);
    c.processors.*field = *n.value<int64_t>();
    return absl::OkStatus();
  };
}

Setter processor_bool(bool ProcessorConfig::*field) {
  return [field](const toml::node& n, DaemonConfig& c) -> absl::Status {
    if (!n.is_boolean()) return type_error("true or false", n);
    c.processors.*field = *n.value<bool>();
    return absl::OkStatus();
  };
}

const std::map<std::string, Setter>& setters() {
  static const auto* table = new std::map<std::string, Setter>{
      {"data_dir", string_key(&DaemonConfig::data_dir)},
      {"log_level", string_key(&DaemonConfig::log_level)},
      {"network.listen", string_key(&DaemonConfig::listen)},
      {"network.text_listen", string_key(&DaemonConfig::text_listen)},
      {"network.udp", bool_key(&DaemonConfig::udp)},
      {"network.max_connections", int_key(&DaemonConfig::max_connections)},
      {"network.max_output_bytes", int_key(&DaemonConfig::max_output_bytes)},
      {"network.max_in_flight", int_key(&DaemonConfig::max_in_flight)},
      {"metrics.listen", string_key(&DaemonConfig::metrics_listen)},
      {"journal.durability",
       [](const toml::node& n, DaemonConfig& c) -> absl::Status {
         if (!n.is_string()) return type_error("none, batch or sync", n);
         auto d = journal::parse_durability(*n.value<std::string>());
         if (!d.ok()) return d.status();
         c.durability = *d;
         return absl::OkStatus();
       }},
      {"journal.segment_size", int_key(&DaemonConfig::segment_size)},
      {"journal.max_batch_bytes", int_key(&DaemonConfig::max_batch_bytes)},
      {"journal.min_write_bytes", int_key(&DaemonConfig::min_write_bytes)},
      {"journal.max_write_delay_us", int_key(&DaemonConfig::max_write_delay_us)},
      {"journal.prepare_segments", bool_key(&DaemonConfig::prepare_segments)},
      {"engine.shards", int_key(&DaemonConfig::shards)},
      {"engine.shard_threads", int_key(&DaemonConfig::shard_threads)},
      {"engine.expected_accounts", int_key(&DaemonConfig::expected_accounts)},
      {"engine.input_ring_size", int_key(&DaemonConfig::input_ring_size)},
      {"engine.output_ring_size", int_key(&DaemonConfig::output_ring_size)},
      {"engine.idle",
       [](const toml::node& n, DaemonConfig& c) -> absl::Status {
         if (!n.is_string()) return type_error("busy, yield or backoff", n);
         auto k = parse_idle_kind(*n.value<std::string>());
         if (!k.ok()) return k.status();
         c.idle = *k;
         return absl::OkStatus();
       }},
      {"engine.cpus",
       [](const toml::node& n, DaemonConfig& c) -> absl::Status {
         // Either "0,1" (as --cpus) or [0, 1].
         if (n.is_string()) {
           if (n.value<std::string>()->empty()) {  // "": no pinning
             c.cpus.clear();
             return absl::OkStatus();
           }
           auto cpus = parse_cpu_list(*n.value<std::string>());
           if (!cpus.ok()) return cpus.status();
           c.cpus = *cpus;
           return absl::OkStatus();
         }
         const toml::array* a = n.as_array();
         if (a == nullptr) return type_error("a CPU list (\"0,1\" or [0, 1])", n);
         if (a->empty()) {  // []: no pinning
           c.cpus.clear();
           return absl::OkStatus();
         }
         std::vector<std::string> items;
         for (const toml::node& e : *a) {
           if (!e.is_integer()) return type_error("integer CPU ids", e);
           items.push_back(std::to_string(*e.value<int64_t>()));
         }
         auto cpus = parse_cpu_list(absl::StrJoin(items, ","));
         if (!cpus.ok()) return cpus.status();
         c.cpus = *cpus;
         return absl::OkStatus();
       }},
      {"snapshots.every_events", int_key(&DaemonConfig::snapshot_every_events)},
      {"snapshots.interval_s", int_key(&DaemonConfig::snapshot_interval_s)},
      {"snapshots.keep", int_key(&DaemonConfig::snapshots_keep)},
      {"processors.fraud", processor_bool(&ProcessorConfig::fraud)},
      {"processors.risk", processor_bool(&ProcessorConfig::risk)},
      {"processors.window_ns", processor_int(&ProcessorConfig::window_ns)},
      {"processors.velocity_max", processor_int(&ProcessorConfig::velocity_max)},
      {"processors.anomaly_multiplier_milli",
       processor_int(&ProcessorConfig::anomaly_multiplier_milli)},
      {"processors.anomaly_min_history", processor_int(&ProcessorConfig::anomaly_min_history)},
      {"processors.allowed_lateness_ns", processor_int(&ProcessorConfig::allowed_lateness_ns)},
      {"processors.max_order_qty", processor_int(&ProcessorConfig::max_order_qty)},
      {"processors.max_order_notional", processor_int(&ProcessorConfig::max_order_notional)},
      {"processors.position_limit", processor_int(&ProcessorConfig::position_limit)},
      {"processors.rate_limit", processor_int(&ProcessorConfig::rate_limit)},
      {"processors.rate_window_ns", processor_int(&ProcessorConfig::rate_window_ns)},
  };
  return *table;
}

// Applies every key of `table` (recursing into sub-tables with dotted names).
absl::Status apply(const toml::table& table, const std::string& prefix, DaemonConfig& config,
                   const std::string& path) {
  for (const auto& [key, node] : table) {
    const std::string name = prefix.empty() ? std::string(key.str())
                                            : absl::StrCat(prefix, ".", to_absl(key.str()));
    if (const toml::table* sub = node.as_table()) {
      if (absl::Status s = apply(*sub, name, config, path); !s.ok()) return s;
      continue;
    }
    auto it = setters().find(name);
    if (it == setters().end()) {
      return absl::InvalidArgumentError(
          absl::StrCat("config ", path, ": unknown key ", name, " (line ",
                       node.source().begin.line, "; see docs/daemon.md for the keys)"));
    }
    if (absl::Status s = it->second(node, config); !s.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("config ", path, ": key ", name, " (line ",
                                                     node.source().begin.line, "): ",
                                                     s.message()));
    }
  }
  return absl::OkStatus();
}

bool power_of_two(int64_t v) { return v > 0 && std::has_single_bit(static_cast<uint64_t>(v)); }

}  // namespace

absl::StatusOr<DaemonConfig> load_config_file(const std::string& path, DaemonConfig base) {
  // Debian's toml++ is built with exceptions: a parse error arrives as one (cold path).
  toml::table table;
  try {
    table = toml::parse_file(path);
  } catch (const toml::parse_error& e) {
    const std::string_view what = e.description();
    if (e.source().begin.line == 0) {  // the file could not be read at all
      return absl::InvalidArgumentError(absl::StrCat("config ", path, ": ", to_absl(what)));
    }
    return absl::InvalidArgumentError(absl::StrCat("config ", path, ": line ",
                                                   e.source().begin.line, ": ", to_absl(what)));
  }
  if (absl::Status s = apply(table, "", base, path); !s.ok()) return s;
  return base;
}

absl::Status validate(const DaemonConfig& c) {
  auto bad = [](const char* key, auto... what) {
    return absl::InvalidArgumentError(absl::StrCat("key ", key, ": ", what...));
  };
  if (c.data_dir.empty()) return bad("data_dir", "must not be empty");
  if (auto a = parse_socket_address(c.listen); !a.ok()) return bad("network.listen", a.status().message());
  if (!c.text_listen.empty()) {
    if (auto a = parse_socket_address(c.text_listen); !a.ok()) {
      return bad("network.text_listen", a.status().message());
    }
  }
  if (!c.metrics_listen.empty()) {
    if (auto a = parse_socket_address(c.metrics_listen); !a.ok()) {
      return bad("metrics.listen", a.status().message());
    }
  }
  if (c.max_connections < 1) return bad("network.max_connections", "must be at least 1");
  if (c.max_output_bytes < 4096) return bad("network.max_output_bytes", "must be at least 4096");
  if (c.max_in_flight < 1) return bad("network.max_in_flight", "must be at least 1");
  if (c.segment_size < (1 << 20)) return bad("journal.segment_size", "must be at least 1 MiB");
  if (c.max_batch_bytes < 4096 || c.max_batch_bytes > c.segment_size / 2) {
    return bad("journal.max_batch_bytes", "must be between 4096 and half the segment size");
  }
  if (c.min_write_bytes < 0 || c.min_write_bytes > c.max_batch_bytes) {
    return bad("journal.min_write_bytes", "must be between 0 and journal.max_batch_bytes, got ",
               c.min_write_bytes);
  }
  if (c.max_write_delay_us < 0 || c.max_write_delay_us > 1'000'000) {
    return bad("journal.max_write_delay_us", "must be between 0 and 1000000, got ",
               c.max_write_delay_us);
  }
  if (c.shards < 1 || c.shards > 256) return bad("engine.shards", "must be 1..256, got ", c.shards);
  if (!power_of_two(c.input_ring_size) || c.input_ring_size < 64) {
    return bad("engine.input_ring_size", "must be a power of two >= 64, got ", c.input_ring_size);
  }
  if (!power_of_two(c.output_ring_size) || c.output_ring_size < 64) {
    return bad("engine.output_ring_size", "must be a power of two >= 64, got ",
               c.output_ring_size);
  }
  if (c.snapshots_keep < 1) return bad("snapshots.keep", "must be at least 1");
  LogLevel level;
  if (!parse_log_level(c.log_level, &level)) {
    return bad("log_level", "expected debug, info, warn or error, got \"", c.log_level, "\"");
  }
  if (absl::Status s = validate(c.processors); !s.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("processors.", s.message()));
  }
  return absl::OkStatus();
}

std::string to_toml(const DaemonConfig& c) {
  auto q = [](const std::string& s) { return absl::StrCat("\"", s, "\""); };
  std::vector<std::string> cpus;
  for (int cpu : c.cpus) cpus.push_back(std::to_string(cpu));
  const ProcessorConfig& p = c.processors;
  return absl::StrCat(
      "data_dir = ", q(c.data_dir), "\nlog_level = ", q(c.log_level),
      "\n\n[network]\nlisten = ", q(c.listen), "\ntext_listen = ", q(c.text_listen),
      "\nudp = ", c.udp ? "true" : "false", "\nmax_connections = ", c.max_connections,
      "\nmax_output_bytes = ", c.max_output_bytes, "\nmax_in_flight = ", c.max_in_flight,
      "\n\n[metrics]\nlisten = ", q(c.metrics_listen),
      "\n\n[journal]\ndurability = ", q(std::string(journal::durability_name(c.durability))),
      "\nsegment_size = ", c.segment_size, "\nmax_batch_bytes = ", c.max_batch_bytes,
      "\nmin_write_bytes = ", c.min_write_bytes, "\nmax_write_delay_us = ", c.max_write_delay_us,
      "\nprepare_segments = ", c.prepare_segments ? "true" : "false",
      "\n\n[engine]\nshards = ", c.shards, "\nshard_threads = ", c.shard_threads,
      "\nexpected_accounts = ", c.expected_accounts,
      "\ninput_ring_size = ", c.input_ring_size, "\noutput_ring_size = ", c.output_ring_size,
      "\ncpus = [", absl::StrJoin(cpus, ", "), "]\nidle = ",
      q(std::string(idle_kind_name(c.idle))),
      "\n\n[snapshots]\nevery_events = ", c.snapshot_every_events,
      "\ninterval_s = ", c.snapshot_interval_s, "\nkeep = ", c.snapshots_keep,
      "\n\n[processors]\nfraud = ", p.fraud ? "true" : "false",
      "\nrisk = ", p.risk ? "true" : "false", "\nwindow_ns = ", p.window_ns,
      "\nvelocity_max = ", p.velocity_max,
      "\nanomaly_multiplier_milli = ", p.anomaly_multiplier_milli,
      "\nanomaly_min_history = ", p.anomaly_min_history,
      "\nallowed_lateness_ns = ", p.allowed_lateness_ns, "\nmax_order_qty = ", p.max_order_qty,
      "\nmax_order_notional = ", p.max_order_notional, "\nposition_limit = ", p.position_limit,
      "\nrate_limit = ", p.rate_limit, "\nrate_window_ns = ", p.rate_window_ns, "\n");
}

}  // namespace sluice
