#!/usr/bin/env bash
# usage: spin_e2e2.sh BIN_DIR RATE IDLE LOADSPIN [DUR]  (+ per-thread CPU of the daemon)
set -u
bin=$1; rate=$2; idle=$3; lspin=$4; dur=${5:-8}
d=$(mktemp -d /tmp/e2e.XXXX)
port=$((20000 + RANDOM % 20000))
$bin/tools/sluiced --data-dir $d --listen 127.0.0.1:$port --text-listen "" --no-udp --shard-threads 0 --cpus 1 --idle $idle --durability none --expected-accounts 1000000 --log-level warn ${DAEMON_EXTRA:-} 2>${LOGF:-$d/log} &
pid=$!
sleep 2
sp=""; [[ $lspin == 1 ]] && sp=--spin
taskset -c 0 $bin/tools/sluice load --target 127.0.0.1:$port --rate $rate --duration $dur --warmup 2 --connections 4 --mix ${MIX:-both} $sp ${LOAD_EXTRA:-} --json > $d/load.json
for t in /proc/$pid/task/*; do echo "$(cat $t/comm) $(awk '{print ($14+$15)*10 " ms cpu, nvcsw/nivcsw"}' $t/stat) $(grep ctxt $t/status | awk '{printf "%s ", $2}')"; done > $d/threads.txt
$bin/tools/sluice stat --once --json $d > $d/stat.json
python3 - $d/load.json $d/stat.json $d/threads.txt <<'PY'
import json,sys
j=json.load(open(sys.argv[1])); st=json.load(open(sys.argv[2]))
l=j['latency_ns']; s=st['latency_ns']['ingest_to_decision']
print('client p50 %.1f p90 %.1f p99 %.1f p999 %.1f | lag p50 %.1f p90 %.1f | daemon %s' % (l['p50']/1e3,l['p90']/1e3,l['p99']/1e3,l['p999']/1e3,j['send_lag_ns']['p50']/1e3,j['send_lag_ns']['p90']/1e3, {k:round(v/1e3,1) for k,v in s.items() if k in ('p50','p99','p999')}), j['decided'], j['sent'])
c=st.get('counters', st)
def find(d, pre=''):
  out={}
  if isinstance(d, dict):
    for k,v in d.items(): out.update(find(v, pre+k+'.'))
  else: out[pre[:-1]]=d
  return out
flat=find(st)
print({k:v for k,v in flat.items() if 'snapshot' in k})
print(open(sys.argv[3]).read().strip().replace('\n',' | '))
PY
kill -TERM $pid; wait $pid
rm -rf $d
