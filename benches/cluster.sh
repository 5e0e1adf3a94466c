#!/usr/bin/env bash
# The cluster figures of the README, against three release brokers on 127.0.0.1:
#
#   benches/cluster.sh idle [PARTITIONS]   # default 1000 partitions, RF=3: CPU and memory of
#                                          # each broker while idle (the issue's scale target)
#   benches/cluster.sh produce             # RF=3 acks=all 1 KiB on 12 partitions: throughput,
#                                          # then p99 at half that rate (BENCH_ARGS: more
#                                          # strata-bench flags, e.g. --batch-bytes)
#   benches/cluster.sh rates R [R ...]     # the same topic at fixed rates (records/s), one
#                                          # after another on a fresh cluster, each with
#                                          # the CPU split (vmstat); then each broker's
#                                          # produce time and fsync histograms
#   benches/cluster.sh failover [KILLS]    # default 20: kill -9 a partition's leader under
#                                          # load, time to the next acked produce there
#   benches/cluster.sh rf1                 # the `produce` maximum against ONE broker (zero
#                                          # config, topic of 12 partitions, RF=1): what the
#                                          # RF=3 throughput target is a fraction of
#
# Needs jq. Benchmark only on a quiet machine (no cargo build running). The machine's free memory
# is filled with clean page cache first (benches/fill-memory.sh; FILL=0 skips that).
set -euo pipefail
cd "$(dirname "$0")/.."
source benches/fill-memory.sh

WHAT=${1:-idle}
OUT=${OUT:-/tmp/strata-cluster}
BROKER=target/release/strata-broker
CLI=target/release/strata
BENCH=${BENCH_BIN:-target/release/strata-bench} # BENCH_BIN: another build of the tool, for an A/B
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
  local i=$1
  local dir="$OUT/b$((i + 1))"
  mkdir -p "$dir"
  rm -f "$dir/ready.json"
  "$BROKER" --node-id $((i + 1)) --voters "$VOTERS" --listen "127.0.0.1:${PORTS[$i]}" --http 127.0.0.1:0 \
    --data-dir "$dir/data" --ready-file "$dir/ready.json" ${BROKER_ARGS:-} >>"$dir/broker.log" 2>&1 &
  PIDS[$i]=$!
}
wait_file() { # path what
  for _ in $(seq 1 600); do [[ -s "$1" ]] && return; sleep 0.1; done
  echo "$2 not ready" >&2; exit 1
}
wait_ready() { wait_file "$OUT/b$(($1 + 1))/ready.json" "broker $(($1 + 1))"; } # i
stop_all() {
  for p in "${PIDS[@]}"; do [[ $p != 0 ]] && kill -9 "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  drop_fill "$OUT/fill"
}
trap stop_all EXIT
rm -rf "$OUT"; mkdir -p "$OUT"
# Fill free memory with clean page cache (see benches/fill-memory.sh): the brokers' page cache
# then recycles backed pages, as on a machine that has been running, instead of faulting in
# host memory on every first write.
fill_memory "$OUT/fill"
# Every produce run: 1 KiB records, acks=all, 4 producers, 10 s measured.
LOAD_ARGS=(--message-size 1024 --acks all --producers 4 --duration 10s)
PRODUCE_ARGS=("${LOAD_ARGS[@]}" --warmup 2s)
if [[ $WHAT == rf1 ]]; then
  mkdir -p "$OUT/rf1"
  "$BROKER" --listen "127.0.0.1:${PORTS[0]}" --http 127.0.0.1:0 --data-dir "$OUT/rf1/data" \
    --ready-file "$OUT/rf1/ready.json" >>"$OUT/rf1/broker.log" 2>&1 &
  PIDS[0]=$!
  wait_file "$OUT/rf1/ready.json" "the broker"
  echo "## 1 broker ready: 127.0.0.1:${PORTS[0]} ($(nproc) cores, $(date -u +%F))"
  "$CLI" --bootstrap "127.0.0.1:${PORTS[0]}" topic create rf1 --partitions 12 --replication-factor 1 >/dev/null
  sleep 3
  "$BENCH" produce --bootstrap "127.0.0.1:${PORTS[0]}" --topic rf1 "${PRODUCE_ARGS[@]}" ${BENCH_ARGS:-} --json |
    jq -c '{msgs_per_sec, mb_per_sec, latency_ms}'
  exit 0
fi
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
  "$BENCH" produce --bootstrap "$BOOT" --topic rf3 "${PRODUCE_ARGS[@]}" ${BENCH_ARGS:-} --json |
    tee "$OUT/max.json" | jq -c '{msgs_per_sec, mb_per_sec, latency_ms}'
  RATE=$(jq -r '(.msgs_per_sec / 2) | floor' "$OUT/max.json")
  # The maximum run leaves gigabytes of dirty pages; their writeback is not this run's latency.
  sync
  sleep 5
  # A new tool process faults in its memory during its first seconds (slowly on this VM: free
  # memory is handed back to the host, see benches/fill-memory.sh), and at half the maximum the
  # backlog of that stall takes seconds to drain. The warm-up keeps that start out of the figure.
  echo "at half that rate ($RATE records/s):"
  "$BENCH" produce --bootstrap "$BOOT" --topic rf3 "${LOAD_ARGS[@]}" --rate "$RATE" --warmup "${HALF_WARMUP:-5s}" \
    ${BENCH_ARGS:-} --json | jq -c '{msgs_per_sec, mb_per_sec, latency_ms}'
  ;;
rates)
  shift
  [[ $# -gt 0 ]] || { echo "cluster.sh rates: give one or more rates (records/s)" >&2; exit 2; }
  "$CLI" --bootstrap "$BOOT" topic create rf3 --partitions 12 --replication-factor 3 >/dev/null
  sleep 3
  for RATE in "$@"; do
    echo -n "$RATE records/s: "
    # The machine's CPU split during the run: the latency tail follows the kernel's share.
    vmstat 1 12 >"$OUT/vmstat-$RATE.txt" 2>/dev/null &
    VMSTAT=$!
    "$BENCH" produce --bootstrap "$BOOT" --topic rf3 "${PRODUCE_ARGS[@]}" --rate "$RATE" ${BENCH_ARGS:-} --json 2>/dev/null |
      jq -c '{msgs_per_sec: (.msgs_per_sec | floor), latency_ms}'
    wait "$VMSTAT" 2>/dev/null || true
    # Mean user / system / iowait % and written KiB/s over the seconds of the run.
    awk 'NR > 3 { us += $13; sy += $14; wa += $16; bo += $10; n++ }
      END { if (n) printf "  cpu: user %.0f %%, system %.0f %%, iowait %.0f %%; written %.0f MB/s\n", us / n, sy / n, wa / n, bo / n / 1024 }' \
      "$OUT/vmstat-$RATE.txt"
  done
  # Broker-side: time from reading a produce request to its response, fsync durations and the
  # Raft driver's cycle (cumulative buckets over all the runs above), and leader changes.
  for i in 0 1 2; do
    http=$(jq -r .http "$OUT/b$((i + 1))/ready.json")
    echo "broker $((i + 1)):"
    curl -s "http://$http/metrics" |
      grep -E '^strata_request_duration_seconds_bucket\{api="produce"|^strata_storage_fsync_duration_seconds_bucket|^strata_raft_ready_loop_duration_seconds_bucket|^strata_raft_leader_changes_total' |
      sed -E 's/strata_request_duration_seconds_bucket\{api="produce",/  produce /; s/strata_storage_fsync_duration_seconds_bucket\{/  fsync /; s/strata_raft_ready_loop_duration_seconds_bucket\{/  cycle /' | tr '\n' ' '
    echo
  done
  ;;
failover)
  KILLS=${2:-20}
  "$CLI" --bootstrap "$BOOT" topic create fo --partitions 3 --replication-factor 3 >/dev/null
  sleep 3
  # Background load on every partition while leaders are killed.
  "$BENCH" produce --bootstrap "$BOOT" --topic fo --message-size 1024 --acks all --rate 2000 \
    --duration 3600s >"$OUT/load.log" 2>&1 &
  LOAD=$!
  : >"$OUT/failover.txt"
  for k in $(seq 1 "$KILLS"); do
    leader=$("$CLI" --bootstrap "$BOOT" --format json topic describe fo | jq '.partitions[0].leader')
    [[ "$leader" =~ ^[1-3]$ ]] || { echo "no leader for fo/0"; sleep 1; continue; }
    t0=$(date +%s.%N)
    kill -9 "${PIDS[$((leader - 1))]}"
    # One record to partition 0 with acks=all: returns once acknowledged (the client retries
    # through the failover). Includes the CLI's own start (~10 ms).
    echo "kill-$k" | "$CLI" --bootstrap "$BOOT" produce fo --partition 0 --acks all --delivery-timeout-ms 30000 >/dev/null
    t1=$(date +%s.%N)
    ms=$(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.0f", (b - a) * 1000}')
    echo "$ms" >>"$OUT/failover.txt"
    echo "kill $k: broker $leader, first acked produce on fo/0 after $ms ms"
    start $((leader - 1)); wait_ready $((leader - 1))
    sleep 4 # leadership returns to the preferred replica
  done
  kill "$LOAD" 2>/dev/null || true
  sort -n "$OUT/failover.txt" | awk '{a[NR]=$1} END {
    p99 = a[int(NR * 0.99 + 0.999)]; if (p99 == "") p99 = a[NR];
    printf "failover over %d kills: min %d ms, median %d ms, p99 %d ms, max %d ms\n", NR, a[1], a[int((NR + 1) / 2)], p99, a[NR] }'
  ;;
*)
  echo "usage: benches/cluster.sh idle [PARTITIONS] | produce | rates R [R ...] | failover [KILLS] | rf1" >&2
  exit 2
  ;;
esac
