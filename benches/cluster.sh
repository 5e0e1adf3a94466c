#!/usr/bin/env bash
# The cluster figures of the README, against three release brokers on 127.0.0.1:
#
#   benches/cluster.sh idle [PARTITIONS]   # default 1000 partitions, RF=3: CPU and memory of
#                                          # each broker while idle (the issue's scale target)
#   benches/cluster.sh produce             # RF=3 acks=all 1 KiB on 12 partitions: throughput,
#                                          # then p99 at half that rate
#   benches/cluster.sh failover [KILLS]    # default 20: kill -9 a partition's leader under
#                                          # load, time to the next acked produce there
#
# Needs jq. Benchmark only on a quiet machine (no cargo build running).
set -euo pipefail
cd "$(dirname "$0")/.."

WHAT=${1:-idle}
OUT=${OUT:-/tmp/strata-cluster}
BROKER=target/release/strata-broker
CLI=target/release/strata
BENCH=target/release/strata-bench
command -v jq >/dev/null || { echo "cluster.sh: jq is not installed" >&2; exit 2; }
if pgrep -x cargo >/dev/null || pgrep -x rustc >/dev/null; then
  echo "cluster.sh: a cargo build is running; measure on a quiet machine" >&2
  exit 2
fi
cargo build --release -q -p strata-broker -p strata-client -p strata-bench

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
PORTS=($(free_port) $(free_port) $(free_port))
VOTERS="1@127.0.0.1:${PORTS[0]},2@127.0.0.1:${PORTS[1]},3@127.0.0.1:${PORTS[2]}"
BOOT="127.0.0.1:${PORTS[0]},127.0.0.1:${PORTS[1]},127.0.0.1:${PORTS[2]}"
PIDS=(0 0 0)

start() { # i (0-based)
  local i=$1 dir="$OUT/b$((i + 1))"
  mkdir -p "$dir"
  rm -f "$dir/ready.json"
  "$BROKER" --node-id $((i + 1)) --voters "$VOTERS" --listen "127.0.0.1:${PORTS[$i]}" --http 127.0.0.1:0 \
    --data-dir "$dir/data" --ready-file "$dir/ready.json" ${BROKER_ARGS:-} >>"$dir/broker.log" 2>&1 &
  PIDS[$i]=$!
}
wait_ready() { # i
  for _ in $(seq 1 600); do [[ -s "$OUT/b$(($1 + 1))/ready.json" ]] && return; sleep 0.1; done
  echo "broker $(($1 + 1)) not ready" >&2; exit 1
}
stop_all() {
  for p in "${PIDS[@]}"; do [[ $p != 0 ]] && kill -9 "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap stop_all EXIT
rm -rf "$OUT"; mkdir -p "$OUT"
for i in 0 1 2; do start $i; done
for i in 0 1 2; do wait_ready $i; done
echo "## 3 brokers ready: $BOOT ($(nproc) cores, $(date -u +%F))"

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
rss_mib() { awk '/VmRSS/{printf "%.0f", $2 / 1024}' "/proc/$1/status"; }

case "$WHAT" in
idle)
  N=${2:-1000}
  TOPICS=$(( (N + 99) / 100 ))
  for t in $(seq 1 "$TOPICS"); do
    "$CLI" --bootstrap "$BOOT" topic create "idle-$t" --partitions 100 --replication-factor 3 >/dev/null
  done
  echo "created $((TOPICS * 100)) partitions (RF=3): $((TOPICS * 300)) replicas"
  # Let elections and leadership restoration settle.
  sleep 20
  HZ=$(getconf CLK_TCK)
  declare -a T0
  for i in 0 1 2; do T0[$i]=$(cpu_ticks "${PIDS[$i]}"); done
  SECS=${SECS:-60}
  sleep "$SECS"
  echo "| broker | CPU (% of one core, ${SECS} s idle) | resident memory | leaders |"
  echo "|---|---|---|---|"
  for i in 0 1 2; do
    t1=$(cpu_ticks "${PIDS[$i]}")
    pct=$(awk -v a="${T0[$i]}" -v b="$t1" -v hz="$HZ" -v s="$SECS" 'BEGIN{printf "%.1f", 100 * (b - a) / hz / s}')
    http=$(jq -r .http "$OUT/b$((i + 1))/ready.json")
    leaders=$(curl -s "http://$http/metrics" | awk '$1=="strata_partitions_leader"{print $2}')
    echo "| $((i + 1)) | $pct % | $(rss_mib "${PIDS[$i]}") MiB | $leaders |"
  done
  ;;
produce)
  "$CLI" --bootstrap "$BOOT" topic create rf3 --partitions 12 --replication-factor 3 >/dev/null
  sleep 3
  "$BENCH" produce --bootstrap "$BOOT" --topic rf3 --message-size 1024 --acks all --producers 4 \
    --duration 10s --warmup 2s --json | tee "$OUT/max.json" | jq -c '{msgs_per_sec, mb_per_sec, latency_ms}'
  RATE=$(jq -r '(.msgs_per_sec / 2) | floor' "$OUT/max.json")
  echo "at half that rate ($RATE records/s):"
  "$BENCH" produce --bootstrap "$BOOT" --topic rf3 --message-size 1024 --acks all --producers 4 \
    --rate "$RATE" --duration 10s --warmup 2s --json | jq -c '{msgs_per_sec, mb_per_sec, latency_ms}'
  ;;
*)
  echo "usage: benches/cluster.sh idle [PARTITIONS] | produce" >&2
  exit 2
  ;;
esac
