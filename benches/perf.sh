#!/usr/bin/env bash
# Runs the README's performance table: the machine's limits (fio, iperf3), then every Strata
# workload three times against a fresh release broker, printing the median of each as Markdown.
#
#   benches/perf.sh [OUT_DIR]          # default OUT_DIR: /tmp/strata-perf
#   QUICK=1 benches/perf.sh            # one run per workload, shorter (a smoke check, not results)
#   ONLY=scaling benches/perf.sh       # just the scaling sweeps (or ONLY=table, ONLY=limits)
#   SETTLE=10 benches/perf.sh          # seconds to pause after `sync` before each run (default 5)
#   FILL=0 benches/perf.sh             # skip filling free memory before each run (see below)
#
# Needs fio, iperf3 and jq (Debian packages of those names). Benchmark only on a quiet machine:
# the script prints `vmstat` first and refuses to start while a cargo build runs.
set -euo pipefail
cd "$(dirname "$0")/.."

OUT=${1:-/tmp/strata-perf}
RUNS=${RUNS:-3}
DUR=${DUR:-8s}
WARM=${WARM:-2s}
if [[ -n "${QUICK:-}" ]]; then RUNS=1; DUR=3s; WARM=1s; fi
ONLY=${ONLY:-all}
mkdir -p "$OUT"
DATA="$OUT/data"
BROKER=target/release/strata-broker
BENCH=target/release/strata-bench

for tool in fio iperf3 jq; do
  command -v "$tool" >/dev/null || { echo "perf.sh: $tool is not installed (apt-get install $tool)" >&2; exit 2; }
done
if pgrep -x cargo >/dev/null || pgrep -x rustc >/dev/null; then
  echo "perf.sh: a cargo build is running; benchmark on a quiet machine" >&2
  exit 2
fi
cargo build --release -q -p strata-broker -p strata-bench
echo "## machine: $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB, $(uname -r), $(date -u +%F)"
vmstat 1 3 | tail -2

# Each run starts on a quiet disk: what earlier runs (or the limits) left dirty is written back
# first, then a pause (SETTLE seconds) for the virtual disk to finish behind the guest. Without
# it, a latency row measured right after gigabytes of produce or prefill measures that
# writeback (p99 0.7 ms vs 1.8-2.6 ms in the same sitting, 2026-12-07).
SETTLE=${SETTLE:-5}
settle() {
  sync
  sleep "$SETTLE"
}

# Before each run, free memory is filled with clean page cache (benches/fill-memory.sh): on this
# VM, page cache growing into free memory costs a host fault per page, which a machine that has
# been running does not pay (produce 1 KiB, RF 1: 599 MB/s with 24 GiB free, 989 MB/s filled).
# The (sparse) file is kept under OUT/fill and deleted at the end. FILL=0 skips it.
source benches/fill-memory.sh

broker_pid=""
start_broker() { # extra broker flags...
  stop_broker
  rm -rf "$DATA"; mkdir -p "$DATA"
  fill_memory "$OUT/fill"
  settle
  "$BROKER" --data-dir "$DATA" --listen 127.0.0.1:0 --http 127.0.0.1:0 --ready-file "$OUT/ready.json" "$@" \
    >"$OUT/broker.log" 2>&1 &
  broker_pid=$!
  for _ in $(seq 1 100); do
    [[ -s "$OUT/ready.json" ]] && break
    sleep 0.1
  done
  BOOT=$(jq -r .listen "$OUT/ready.json")
}
stop_broker() {
  if [[ -n "$broker_pid" ]]; then
    kill "$broker_pid" 2>/dev/null || true
    wait "$broker_pid" 2>/dev/null || true
    broker_pid=""
  fi
  rm -f "$OUT/ready.json"
  rm -rf "$DATA"
}
trap 'stop_broker; drop_fill "$OUT/fill"' EXIT

median() { sort -n | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }

# run NAME MODE ARGS...: RUNS runs on fresh brokers; prints a table row with medians.
run() {
  local name=$1 mode=$2; shift 2
  local files=()
  for i in $(seq 1 "$RUNS"); do
    start_broker
    local f="$OUT/$(echo "$name" | tr -c 'a-zA-Z0-9' '_')-$i.json"
    "$BENCH" "$mode" --bootstrap "$BOOT" --json "$@" >"$f" 2>"$f.log" || true
    jq -e . "$f" >/dev/null 2>&1 || { echo "| $name | failed: see $f.log | | | | | |"; return; }
    jq --argjson rss "$(awk '/VmHWM/{print $2}' /proc/"$broker_pid"/status)" '. + {broker_rss_kib: $rss}' "$f" >"$f.tmp" && mv "$f.tmp" "$f"
    files+=("$f")
  done
  local m; m() { for f in "${files[@]}"; do jq -r "$1" "$f"; done | median; }
  printf '| %s | %.0f | %.1f | %.3f | %.3f | %.0f | `strata-bench %s %s` |\n' "$name" \
    "$(m .msgs_per_sec)" "$(m .mb_per_sec)" "$(m .latency_ms.p50)" "$(m .latency_ms.p99)" \
    "$(for f in "${files[@]}"; do jq -r .broker_rss_kib "$f"; done | sort -n | tail -1 | awk '{print $1/1024}')" \
    "$mode" "$*"
}

header() {
  echo
  echo "| workload | records/s | MB/s | p50 ms | p99 ms | broker max RSS MiB | command (plus --bootstrap, --json) |"
  echo "|---|---|---|---|---|---|---|"
}

if [[ $ONLY == all || $ONLY == limits ]]; then
  echo; echo "## limits"
  F="$OUT/fio"; rm -rf "$F"; mkdir -p "$F"
  fill_memory "$OUT/fill"
  fio --name=seqwrite --directory="$F" --rw=write --bs=1M --size=2G --ioengine=psync --end_fsync=1 --output-format=json \
    | jq -r '"buffered sequential write (1 MiB, fsync at end): \(.jobs[0].write.bw_bytes/1e6|floor) MB/s"'
  rm -rf "$F"/*
  fio --name=dsync1m --directory="$F" --rw=write --bs=1M --size=1G --ioengine=psync --fdatasync=1 --output-format=json \
    | jq -r '"1 MiB writes + fdatasync each: \(.jobs[0].write.bw_bytes/1e6|floor) MB/s"'
  rm -rf "$F"/*
  fio --name=dsync4k --directory="$F" --rw=write --bs=4k --size=64M --ioengine=psync --fdatasync=1 --output-format=json \
    | jq -r '"4 KiB writes + fdatasync each: \(.jobs[0].write.iops|floor)/s, p50 \(.jobs[0].sync.lat_ns.percentile["50.000000"]/1000|floor) us, p99 \(.jobs[0].sync.lat_ns.percentile["99.000000"]/1000|floor) us (fdatasync latency)"'
  rm -rf "$F"
  iperf3 -s -1 -B 127.0.0.1 -p 15201 >/dev/null 2>&1 &
  sleep 0.5
  iperf3 -c 127.0.0.1 -p 15201 -t 5 -J | jq -r '"loopback TCP (iperf3, 1 stream): \(.end.sum_received.bits_per_second/8e6|floor) MB/s"'
  wait || true
fi

if [[ $ONLY == all || $ONLY == table ]]; then
  echo; echo "## workloads (median of $RUNS)"
  header
  T=(--duration "$DUR" --warmup "$WARM")
  run "produce 1 KiB, 1 producer" produce --message-size 1024 "${T[@]}"
  run "produce 100 B, 1 producer" produce --message-size 100 "${T[@]}"
  run "consume 1 KiB, page cache, 1 consumer" consume --message-size 1024 --messages 2000000
  run "produce 1 KiB one by one (latency)" produce --message-size 1024 --linger-ms 0 --rate 1000 "${T[@]}"
  run "e2e 1 KiB at 10k/s" e2e --message-size 1024 --linger-ms 0 --rate 10000 "${T[@]}"
  run "e2e 1 KiB at 10k/s, flush never" e2e --message-size 1024 --linger-ms 0 --rate 10000 \
    --topic-config flush.policy=never "${T[@]}"
fi

if [[ $ONLY == all || $ONLY == scaling ]]; then
  echo; echo "## scaling: producers (1 KiB, 16 partitions)"
  header
  for p in 1 2 4 8 16; do
    run "$p producers" produce --message-size 1024 --producers "$p" --partitions 16 --duration "$DUR" --warmup "$WARM"
  done
  echo; echo "## scaling: partitions (1 KiB, 4 producers)"
  header
  for n in 1 4 16 64; do
    run "$n partitions" produce --message-size 1024 --producers 4 --partitions "$n" --duration "$DUR" --warmup "$WARM"
  done
fi
