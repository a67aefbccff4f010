#!/bin/bash
# The live catalogue over gRPC (docs/BENCHMARKS.md, "Live updates over gRPC"):
#   1. upsert throughput at each --wal-sync policy, batches of 100 and of 1;
#   2. RankFeed latency without and with 1,000 upserts/s streaming in, one
#      server, alternated three times;
#   3. the time a compaction of the 1M catalogue takes (IVF, one thread).
# Usage: bench/live_rpc.sh [WORKDIR]   (default /tmp/feedrank-live-bench;
# FEEDRANK=path/to/feedrank, default build/cli/feedrank). About 6 minutes
# here, the 1M synthetic bundle's build included.
set -euo pipefail

FEEDRANK=${FEEDRANK:-build/cli/feedrank}
WORK=${1:-/tmp/feedrank-live-bench}
PORT=${PORT:-50161}
ADMIN=$((PORT + 1))
mkdir -p "$WORK/root"
if [ ! -d "$WORK/root/1" ]; then
  "$FEEDRANK" synth --videos 1000000 --users 10000 --index ivf --out "$WORK/root/1"
fi
BUNDLE="$WORK/root/1"
# nprobe 16 of the bundle's 4,000 lists, as in the other gRPC tables.
echo 'params { ivf_nprobe: 16 }' >"$WORK/ivf16.textproto"

server_pid=""
stop_server() {
  if [ -n "$server_pid" ]; then
    kill -TERM "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
    server_pid=""
  fi
  rm -rf "$WORK/root/2" "$WORK/root/3"
}
trap stop_server EXIT

# start_server SYNC THRESHOLD: a fresh log, the bundle root with version 1.
start_server() {
  stop_server
  rm -rf "$WORK/wal"
  "$FEEDRANK" serve --bundle-root "$WORK/root" --address "127.0.0.1:$PORT" \
    --admin-address "127.0.0.1:$ADMIN" --wal-dir "$WORK/wal" --wal-sync "$1" \
    --compact-threshold "$2" --config "$WORK/ivf16.textproto" --drain-grace 0s --watch-interval 0s \
    >"$WORK/serve.log" 2>&1 &
  server_pid=$!
}

loadgen() {
  "$FEEDRANK" loadgen --target "127.0.0.1:$PORT" --bundle "$BUNDLE" --warmup 1s "$@"
}

echo "== upsert throughput (RankFeed at 50 QPS beside it; no compaction)"
for sync in always interval never; do
  for batch in 100 1; do
    start_server "$sync" 0
    out=$(loadgen --qps 50 --duration 5s --admin-target "127.0.0.1:$ADMIN" \
      --upserts-per-second 1000000 --upsert-batch "$batch")
    echo "sync $sync, batch $batch: $(grep 'live upserts' <<<"$out")"
  done
done

echo "== RankFeed open loop at 600 QPS, without and with 1,000 upserts/s (sync always)"
start_server always 0
loadgen --qps 50 --duration 3s >/dev/null  # warm the pages
for round in 1 2 3; do
  echo "round $round, without: $(loadgen --qps 600 --concurrency 64 --duration 15s | grep -E '^latency ms')"
  out=$(loadgen --qps 600 --concurrency 64 --duration 15s --admin-target "127.0.0.1:$ADMIN" \
    --upserts-per-second 1000 --upsert-batch 10 --seed "$round")
  echo "round $round, with:    $(grep -E '^latency ms' <<<"$out")"
  echo "                       $(grep 'live upserts' <<<"$out")"
  "$FEEDRANK" admin status --target "127.0.0.1:$ADMIN" | grep 'catalogue view'
done
"$FEEDRANK" admin status --target "127.0.0.1:$ADMIN" | grep 'catalogue view'

echo "== compaction of the catalogue above (IVF, --compact-threads 1)"
"$FEEDRANK" admin compact --target "127.0.0.1:$ADMIN"
stop_server
