#!/usr/bin/env bash
# Soak run (not part of CI): `feedrank serve` under steady open-loop load
# for a bounded time, with config flips, bundle swaps and live updates mixed
# in. Reports errors, p99 and resident memory over time as a table, and
# draws them as an SVG chart (docs/RELIABILITY.md, "Soak").
#
#   scripts/soak.sh [OUT_DIR]        (default /tmp/feedrank-soak)
#
# Environment (defaults in brackets):
#   FEEDRANK              the binary [build/cli/feedrank]
#   SOAK_DURATION         seconds of load [600]
#   SOAK_QPS              open-loop rate [300]
#   SOAK_VIDEOS, SOAK_USERS, SOAK_INDEX   the synthetic bundle [200000, 20000, ivf]
#   SOAK_UPSERTS          live upserts per second [50], over SOAK_UPSERT_IDS
#                         ids [5000] (after which they replace earlier ones,
#                         so the catalogue stops growing)
#   SOAK_FLIP_EVERY       seconds between config flips (arm weights) [20]
#   SOAK_SWAP_EVERY       seconds between bundle swaps (a new version) [60]
#   SOAK_WARMUP           seconds before memory is expected flat [60]
#   SOAK_PORT             gRPC port; admin +1, metrics +2 [50171]
# Exits non-zero when a call failed, the server did not stop cleanly, or
# resident memory grew more than SOAK_MAX_GROWTH_MB [16] after the warm-up.
set -euo pipefail
cd "$(dirname "$0")/.."

FEEDRANK=${FEEDRANK:-build/cli/feedrank}
OUT=${1:-/tmp/feedrank-soak}
DURATION=${SOAK_DURATION:-600}
QPS=${SOAK_QPS:-300}
VIDEOS=${SOAK_VIDEOS:-200000}
USERS=${SOAK_USERS:-20000}
INDEX=${SOAK_INDEX:-ivf}
UPSERTS=${SOAK_UPSERTS:-50}
UPSERT_IDS=${SOAK_UPSERT_IDS:-5000}
FLIP_EVERY=${SOAK_FLIP_EVERY:-20}
SWAP_EVERY=${SOAK_SWAP_EVERY:-60}
WARMUP=${SOAK_WARMUP:-60}
MAX_GROWTH_MB=${SOAK_MAX_GROWTH_MB:-16}
PORT=${SOAK_PORT:-50171}
ADMIN=$((PORT + 1))
METRICS=$((PORT + 2))

if [[ ! -x $FEEDRANK ]]; then
  echo "soak: $FEEDRANK is not built (scripts/setup.sh builds it)" >&2
  exit 2
fi
mkdir -p "$OUT"
rm -rf "$OUT/root" "$OUT/wal" "$OUT"/*.log "$OUT"/*.tsv "$OUT"/*.jsonl
mkdir -p "$OUT/root"
bundle="$OUT/bundle-$VIDEOS-$INDEX"
if [[ ! -d $bundle ]]; then
  echo "soak: building the bundle ($VIDEOS videos, $USERS users, $INDEX)"
  "$FEEDRANK" synth --videos "$VIDEOS" --users "$USERS" --index "$INDEX" --out "$bundle"
fi
# Versions are hard-linked copies: a swap loads, validates and warms a whole
# bundle, as a new version from the pipeline would, without the disk cost.
cp -al "$bundle" "$OUT/root/1"

# Two experiment configs; a flip rewrites the config file (atomic rename)
# with the other one under a new version, and the watcher applies it.
write_config() {  # write_config N
  local like=$(( $1 % 2 == 0 ? 1 : 3 ))
  cat >"$OUT/config.tmp" <<EOF
version: "soak-$1"
layers {
  name: "rank"
  salt: "soak"
  experiments {
    name: "weights"
    ranges { begin: 0 end: 10000 }
    arms { name: "control" ranges { begin: 0 end: 5000 } }
    arms { name: "like-heavy" ranges { begin: 5000 end: 10000 }
      overrides { objective_weights { key: "like" value: $like } } }
  }
}
EOF
  mv "$OUT/config.tmp" "$OUT/config.textproto"
}
write_config 0

server_pid=""
loadgen_pid=""
cleanup() {
  [[ -n $loadgen_pid ]] && kill "$loadgen_pid" 2>/dev/null || true
  [[ -n $server_pid ]] && kill "$server_pid" 2>/dev/null || true
  wait 2>/dev/null || true
}
trap cleanup EXIT

"$FEEDRANK" serve --bundle-root "$OUT/root" --config "$OUT/config.textproto" \
  --address "127.0.0.1:$PORT" --admin-address "127.0.0.1:$ADMIN" \
  --metrics-address "127.0.0.1:$METRICS" --wal-dir "$OUT/wal" --wal-sync interval \
  --watch-interval 1s --drain-grace 0s >"$OUT/serve.log" 2>&1 &
server_pid=$!
rss_kb() { awk '/^VmRSS:/ { print $2 }' "/proc/$server_pid/status"; }

echo "soak: ${DURATION}s at $QPS calls/s, $UPSERTS upserts/s over $UPSERT_IDS ids," \
  "a config flip every ${FLIP_EVERY}s, a bundle swap every ${SWAP_EVERY}s; output in $OUT"
start=$(date +%s.%N)
"$FEEDRANK" loadgen --target "127.0.0.1:$PORT" --bundle "$OUT/root/1" --qps "$QPS" \
  --concurrency 64 --duration "${DURATION}s" --warmup 0s --interval 10s --json \
  --admin-target "127.0.0.1:$ADMIN" --upserts-per-second "$UPSERTS" --upsert-batch 10 \
  --upsert-ids "$UPSERT_IDS" --wait 120s >"$OUT/loadgen.jsonl" 2>"$OUT/loadgen.log" &
loadgen_pid=$!

printf 't_s\trss_kb\n' >"$OUT/rss.tsv"
printf 't_s\tevent\n' >"$OUT/events.tsv"
flips=0
version=1
next_flip=$FLIP_EVERY
next_swap=$SWAP_EVERY
next_line=60
while kill -0 "$loadgen_pid" 2>/dev/null; do
  t=$(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
  kb=$(rss_kb || echo 0)
  printf '%s\t%s\n' "$t" "$kb" >>"$OUT/rss.tsv"
  if awk -v t="$t" -v n="$next_flip" 'BEGIN { exit !(t >= n) }'; then
    flips=$((flips + 1))
    write_config "$flips"
    printf '%s\tflip\n' "$t" >>"$OUT/events.tsv"
    next_flip=$((next_flip + FLIP_EVERY))
  fi
  if awk -v t="$t" -v n="$next_swap" 'BEGIN { exit !(t >= n) }'; then
    version=$((version + 1))
    cp -al "$bundle" "$OUT/root/$version.tmp"
    mv "$OUT/root/$version.tmp" "$OUT/root/$version"
    # Versions two behind are no longer served: remove them, as an
    # operator's retention would.
    rm -rf "$OUT/root/$((version - 2))"
    printf '%s\tswap\n' "$t" >>"$OUT/events.tsv"
    next_swap=$((next_swap + SWAP_EVERY))
  fi
  if awk -v t="$t" -v n="$next_line" 'BEGIN { exit !(t >= n) }'; then
    echo "soak: ${t}s of ${DURATION}s, RSS $((kb / 1024)) MB, $flips flips, $((version - 1)) swaps"
    next_line=$((next_line + 60))
  fi
  sleep 5
done
loadgen_status=0
wait "$loadgen_pid" || loadgen_status=$?
loadgen_pid=""
"$FEEDRANK" admin status --target "127.0.0.1:$ADMIN" >"$OUT/status.txt" 2>&1 || true
kill -TERM "$server_pid"
server_status=0
wait "$server_pid" || server_status=$?
server_pid=""
loaded=$(grep -c "serving bundle" "$OUT/serve.log" || true)
applied=$(grep -c "with config 'soak-" "$OUT/serve.log" || true)
echo "soak: loadgen exit $loadgen_status, serve exit $server_status;" \
  "$((version - 1)) swaps and $flips flips asked, serve logged $loaded bundle loads" \
  "and $applied installs with a soak config"
report_status=0
python3 scripts/soak_report.py "$OUT" --warmup "$WARMUP" --max-growth-mb "$MAX_GROWTH_MB" ||
  report_status=$?
[[ $loadgen_status -eq 0 && $server_status -eq 0 && $report_status -eq 0 ]]
