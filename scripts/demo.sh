#!/usr/bin/env bash
# The demo: installs what is needed, builds the feedrank binary, trains a
# bundle from the shipped KuaiRand log, serves it from a versioned bundle
# root with metrics on, asks it for feeds with a real gRPC client, scrapes
# /metrics, then drops in a second bundle version while a load generator
# runs, and shows the answers change with no failed call.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh feedrank
build_dir=${FEEDRANK_BUILD_DIR:-build}
feedrank="$build_dir/cli/feedrank"
root=${FEEDRANK_DEMO_ROOT:-bundles/kuairand-root}
train() {  # train SEED OUT
  "$feedrank" train --log data/kuairand-likehate/interactions.tsv \
    --mapping data/kuairand-likehate/mapping.textproto --utc-offset-minutes 480 \
    --seed "$1" --version "kuairand-seed$1" --out "$2" --no-eval 2>/dev/null
}
mkdir -p "$root"
if [[ ! -f "$root/1/manifest.json" ]]; then
  echo "== training $root/1 from data/kuairand-likehate (quality: docs/QUALITY.md)"
  train 1 "$root/1"
fi
rm -rf "$root/2"

log=$(mktemp)
"$feedrank" serve --bundle-root "$root" --address 127.0.0.1:0 --metrics-address 127.0.0.1:0 \
  --config config/kuairand.textproto --watch-interval 1s --drain-grace 0s 2>"$log" &
server=$!
trap 'kill -TERM $server 2>/dev/null || true; wait $server 2>/dev/null || true; rm -f "$log"' EXIT
port="" metrics=""
for _ in $(seq 300); do
  port=$(sed -n 's/.*listening on [^ ]* (port \([0-9]*\)[,)].*/\1/p' "$log")
  metrics=$(sed -n 's/.*metrics on .* (port \([0-9]*\)).*/\1/p' "$log")
  [[ -n "$port" ]] && break
  if ! kill -0 $server 2>/dev/null; then cat "$log" >&2; exit 1; fi
  sleep 0.1
done
[[ -n "$port" ]] || { cat "$log" >&2; echo "demo: server did not start" >&2; exit 1; }

echo "== feedrank serving $root on 127.0.0.1:$port, metrics on http://127.0.0.1:$metrics/metrics"
# Three users of the bundle and one it has never seen (cold start), as of the
# day the bundle's data ends (the log is from April 2022).
"$feedrank" query --target "127.0.0.1:$port" --bundle "$root/1" --sample-users 3 \
  --user 1 --count 10 --bundle-time --debug

echo "== a few metrics (curl http://127.0.0.1:$metrics/metrics)"
curl -s "http://127.0.0.1:$metrics/metrics" |
  grep -E '^feedrank_(requests_total|rankings_total|cold_start_total|bundle_info|loads_total)' || true

echo "== dropping in version 2 (trained with another seed) while a load generator runs"
"$feedrank" loadgen --target "127.0.0.1:$port" --bundle "$root/1" --concurrency 4 \
  --duration 12s --warmup 0s >"$log.load" &
load=$!
train 2 "$root/.2.partial"
mv "$root/.2.partial" "$root/2"  # a rename: the server never sees half a bundle
for _ in $(seq 100); do
  curl -s "http://127.0.0.1:$metrics/metrics" | grep -q 'feedrank_bundle_info{.*kuairand-seed2' && break
  sleep 0.2
done
wait $load
echo "-- load generator during the swap (errors must be 0):"
cat "$log.load"
rm -f "$log.load"
echo "-- the same user now, served by version 2:"
"$feedrank" query --target "127.0.0.1:$port" --bundle "$root/1" --sample-users 1 --count 5 \
  --bundle-time | head -3
curl -s "http://127.0.0.1:$metrics/metrics" | grep -E '^feedrank_(bundle_info|loads_total)'

kill -TERM $server
wait $server || true
trap 'rm -f "$log"' EXIT
echo "== server log"
cat "$log"
