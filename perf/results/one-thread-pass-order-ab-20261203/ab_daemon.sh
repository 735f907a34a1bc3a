#!/bin/bash
# usage: ab_daemon.sh MODE RATES ROUNDS bin...
mode=$1; rates=$2; rounds=$3; shift 3
S=/work/main/build/release/tools/sluice
for r in $(seq 1 $rounds); do
 for rate in $rates; do
  for bin in "$@"; do
    d=$(mktemp -d /tmp/abd.XXXX)
    $bin --data-dir $d/data --listen 127.0.0.1:0 --text-listen "" --durability $mode --shard-threads 0 --cpus 1 --expected-accounts 1000000 2>$d/log &
    pid=$!
    for _ in $(seq 1 300); do [[ -f $d/data/listening ]] && break; sleep 0.1; done
    t=$(awk '$1 == "binary" { print $2 }' $d/data/listening)
    j=$(taskset -c 0 $S load --target $t --rate $rate --duration 5 --warmup 1 --connections 4 --mix both --json)
    st=$($S stat $d/data --once --json)
    kill -TERM $pid; wait $pid
    python3 - "$bin" "$rate" "$j" "$st" <<'PY'
import json,sys
b,rate,j,st=sys.argv[1:]
j=json.loads(j); st=json.loads(st)
l=j["latency_ns"]; d=st["latency_ns"]["ingest_to_decision"]; s0=st["latency_ns"]["ingest_to_shard0"]
print(b.split('_')[-1], rate, "ach", round(j["rate_achieved"]), "miss", j["missing"], "client p50/p99", l["p50"]//1000, l["p99"]//1000, "| daemon p50/p90/p99", round(d["p50"]/1000,1), round(d["p90"]/1000,1), round(d["p99"]/1000,1), "| to_shard p50", round(s0["p50"]/1000,1), flush=True)
PY
    rm -rf $d
  done
 done
done
