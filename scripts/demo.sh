#!/usr/bin/env bash
# make demo: the whole of sluice on this machine, in about half a minute.
#
#  1. starts sluiced on a fresh data directory (ephemeral ports, 2 shards, durability batch;
#     DEMO_DAEMON_ARGS replaces those two flags),
#  2. drives it with `sluice load` (TRANSACTIONs and ORDERs, open loop) and prints the latency
#     percentiles and decisions by verdict,
#  3. shows the daemon's own counters (`sluice stat --once`): alerts by rule, lags, latency,
#  4. stops it with SIGTERM (drain, fsync, snapshot),
#  5. runs `sluice journal info` and `sluice replay` (one shard, then two in parallel) and checks
#     that the replayed decisions' digest equals the one the live daemon computed.
# Exit 0 only if every step worked.
set -euo pipefail

BUILD_DIR=${1:-build/release}
RATE=${DEMO_RATE:-50000}
SECONDS_OF_LOAD=${DEMO_SECONDS:-10}
# The daemon's layout and durability, and extra `sluice load` flags (scripts/build-pgo.sh trains
# on other layouts and on a longer stretch of event time).
DAEMON_ARGS=${DEMO_DAEMON_ARGS:-"--shards 2 --durability batch"}
LOAD_ARGS=${DEMO_LOAD_ARGS:-}
SLUICED="$BUILD_DIR/tools/sluiced"
SLUICE="$BUILD_DIR/tools/sluice"
WORK=$(mktemp -d "${TMPDIR:-/tmp}/sluice-demo-XXXXXX")
DATA="$WORK/data"
PID=""

cleanup() {
  if [ -n "$PID" ] && kill -0 "$PID" 2>/dev/null; then kill -KILL "$PID" 2>/dev/null || true; fi
  rm -rf "$WORK"
}
trap cleanup EXIT

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
die() {
  echo "demo: $*" >&2
  if [ -f "$WORK/sluiced.log" ]; then echo "--- sluiced log:" >&2; tail -n 30 "$WORK/sluiced.log" >&2; fi
  exit 1
}

step "start sluiced (data directory $DATA)"
"$SLUICED" --data-dir "$DATA" --listen 127.0.0.1:0 --text-listen 127.0.0.1:0 \
  --metrics-listen 127.0.0.1:0 $DAEMON_ARGS --expected-accounts 1000000 \
  2>"$WORK/sluiced.log" &
PID=$!
for _ in $(seq 1 300); do
  [ -f "$DATA/listening" ] && break
  kill -0 "$PID" 2>/dev/null || die "sluiced exited while starting"
  sleep 0.1
done
[ -f "$DATA/listening" ] || die "sluiced did not start listening within 30 s"
cat "$WORK/sluiced.log"
TARGET=$(awk '$1 == "binary" { print $2 }' "$DATA/listening")
METRICS=$(awk '$1 == "metrics" { print $2 }' "$DATA/listening")

step "sluice load: $RATE events/s for ${SECONDS_OF_LOAD} s, TRANSACTIONs and ORDERs over 4 connections"
"$SLUICE" load --target "$TARGET" --rate "$RATE" --duration "$SECONDS_OF_LOAD" --connections 4 \
  --mix both --warmup 1 --subscribe $LOAD_ARGS || die "sluice load failed"

step "the daemon's own view: sluice stat --once"
"$SLUICE" stat "$DATA" --once || die "sluice stat failed"
echo "alerts.log (first lines of $(wc -l <"$DATA/alerts.log")):"
head -n 3 "$DATA/alerts.log"
if [ -n "$METRICS" ] && command -v curl >/dev/null 2>&1; then
  echo "Prometheus endpoint: curl -s http://$METRICS/metrics"
  curl -s "http://$METRICS/metrics" | grep -E '^sluice_ingest_to_decision_seconds' | head -3 || true
fi

step "stop sluiced with SIGTERM"
kill -TERM "$PID"
STATUS=0
wait "$PID" || STATUS=$?
PID=""
tail -n 4 "$WORK/sluiced.log"
[ "$STATUS" -eq 0 ] || die "sluiced exited with status $STATUS"
[ -f "$DATA/decisions.digest" ] || die "sluiced left no decisions.digest"
read -r _ RANGE _ COUNT _ LIVE_DIGEST <"$DATA/decisions.digest"
FROM=${RANGE%%..*}
TO=${RANGE##*..}
echo "live: sequences $FROM..$TO, $COUNT decisions, digest $LIVE_DIGEST"

step "sluice journal info"
"$SLUICE" journal info "$DATA" || die "journal info failed"

step "sluice replay --from $FROM --to $TO (no network, the processors over the journal)"
"$SLUICE" replay "$DATA" --from "$FROM" --to "$TO" --no-snapshots | tee "$WORK/replay.out" \
  || die "replay failed"
REPLAY_DIGEST=$(awk '$1 == "digest" { print $2 }' "$WORK/replay.out")

step "sluice replay --shards 2 (the same, the two shards in parallel)"
"$SLUICE" replay "$DATA" --from "$FROM" --to "$TO" --no-snapshots --shards 2 \
  | tee "$WORK/replay2.out" || die "replay with 2 shards failed"
REPLAY2_DIGEST=$(awk '$1 == "digest" { print $2 }' "$WORK/replay2.out")

step "live decisions vs replay"
if [ "$REPLAY_DIGEST" = "$LIVE_DIGEST" ] && [ "$REPLAY2_DIGEST" = "$LIVE_DIGEST" ]; then
  echo "digest $LIVE_DIGEST: both replays reproduced all $COUNT live decisions exactly"
else
  die "digests differ: live $LIVE_DIGEST, replay $REPLAY_DIGEST, replay with 2 shards $REPLAY2_DIGEST"
fi
