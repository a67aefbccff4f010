#!/usr/bin/env bash
# The demo: installs what is needed, builds the feedrank binary, trains a
# bundle from the shipped KuaiRand log, starts the server, asks it for the
# feeds of a few users with a real gRPC client, and stops the server.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh feedrank
build_dir=${FEEDRANK_BUILD_DIR:-build}
feedrank="$build_dir/cli/feedrank"
bundle=${FEEDRANK_DEMO_BUNDLE:-bundles/kuairand}

if [[ ! -f "$bundle/manifest.json" ]]; then
  mkdir -p "$(dirname "$bundle")"
  echo "== training $bundle from data/kuairand-likehate (quality: docs/QUALITY.md)"
  "$feedrank" train --log data/kuairand-likehate/interactions.tsv \
    --mapping data/kuairand-likehate/mapping.textproto --utc-offset-minutes 480 \
    --out "$bundle" --replay-out "$bundle-replay.jsonl" --no-eval
fi

log=$(mktemp)
"$feedrank" serve --bundle "$bundle" --address 127.0.0.1:0 \
  --config config/kuairand.textproto 2>"$log" &
server=$!
trap 'kill -TERM $server 2>/dev/null || true; wait $server 2>/dev/null || true; rm -f "$log"' EXIT
port=""
for _ in $(seq 300); do
  port=$(sed -n 's/.*listening on .* (port \([0-9]*\)).*/\1/p' "$log")
  [[ -n "$port" ]] && break
  if ! kill -0 $server 2>/dev/null; then cat "$log" >&2; exit 1; fi
  sleep 0.1
done
[[ -n "$port" ]] || { cat "$log" >&2; echo "demo: server did not start" >&2; exit 1; }

echo "== feedrank serving $bundle on 127.0.0.1:$port"
# Three users of the bundle and one it has never seen (cold start), as of the
# day the bundle's data ends (the log is from April 2022).
"$feedrank" query --target "127.0.0.1:$port" --bundle "$bundle" --sample-users 3 \
  --user 1 --count 10 --bundle-time --debug

kill -TERM $server
wait $server || true
trap 'rm -f "$log"' EXIT
echo "== server log"
cat "$log"
