#!/usr/bin/env bash
# One short end-to-end run for A/B comparisons of daemon builds, with what each daemon thread
# spent: a fresh data directory, sluiced in the one-thread layout pinned to CPU 1, then
# `sluice load` pinned to CPU 0 (2-vCPU machine: one CPU each).
#
#   perf/ab_run.sh BIN_DIR RATE IDLE LOADSPIN [DURATION]
#
# BIN_DIR holds tools/sluiced and tools/sluice (e.g. build/release); IDLE is the daemon's --idle
# (busy, yield, backoff); LOADSPIN 1 adds `sluice load --spin`; DURATION in seconds (8), after a
# 2 s warm-up. Environment: MIX (both; or risk, fraud), DUR_MODE (none; the --durability),
# DAEMON_EXTRA and LOAD_EXTRA (more flags), LOGF (where the daemon's stderr goes).
#
# Prints three lines: the client's latency (intended send time to DECISION) and send lag, the
# daemon's ingest_to_decision (µs), decided and sent; every snapshot counter of `sluice stat`;
# and each daemon thread's CPU time (utime + stime) and voluntary / involuntary context
# switches. Alternate the builds round by round: the host's noise is larger than most effects.
set -u
bin=$1; rate=$2; idle=$3; lspin=$4; dur=${5:-8}
d=$(mktemp -d /tmp/e2e.XXXX)
port=$((20000 + RANDOM % 20000))
"$bin"/tools/sluiced --data-dir "$d" --listen 127.0.0.1:$port --text-listen "" --no-udp \
  --shard-threads 0 --cpus 1 --idle "$idle" --durability "${DUR_MODE:-none}" \
  --expected-accounts 1000000 --log-level warn ${DAEMON_EXTRA:-} 2>"${LOGF:-$d/log}" &
pid=$!
sleep 2
sp=""; [[ $lspin == 1 ]] && sp=--spin
taskset -c 0 "$bin"/tools/sluice load --target 127.0.0.1:$port --rate "$rate" --duration "$dur" \
  --warmup 2 --connections 4 --mix "${MIX:-both}" $sp ${LOAD_EXTRA:-} --json > "$d/load.json"
for t in /proc/$pid/task/*; do
  echo "$(cat "$t/comm") $(awk '{print ($14+$15)*10 " ms cpu, nvcsw/nivcsw"}' "$t/stat")" \
       "$(grep ctxt "$t/status" | awk '{printf "%s ", $2}')"
done > "$d/threads.txt"
"$bin"/tools/sluice stat --once --json "$d" > "$d/stat.json"
python3 - "$d/load.json" "$d/stat.json" "$d/threads.txt" <<'PY'
import json, sys
load = json.load(open(sys.argv[1]))
stat = json.load(open(sys.argv[2]))
l = load['latency_ns']
s = stat['latency_ns']['ingest_to_decision']
print('client p50 %.1f p90 %.1f p99 %.1f p999 %.1f | lag p50 %.1f p90 %.1f | daemon %s' % (
    l['p50'] / 1e3, l['p90'] / 1e3, l['p99'] / 1e3, l['p999'] / 1e3,
    load['send_lag_ns']['p50'] / 1e3, load['send_lag_ns']['p90'] / 1e3,
    {k: round(v / 1e3, 1) for k, v in s.items() if k in ('p50', 'p99', 'p999')}),
    load['decided'], load['sent'])
def flat(d, pre=''):
    out = {}
    if isinstance(d, dict):
        for k, v in d.items():
            out.update(flat(v, pre + k + '.'))
    else:
        out[pre[:-1]] = d
    return out
print({k: v for k, v in flat(stat).items() if 'snapshot' in k})
print(open(sys.argv[3]).read().strip().replace('\n', ' | '))
PY
kill -TERM $pid
wait $pid
rm -rf "$d"
