#!/bin/bash
# The 1M table of docs/BENCHMARKS.md ("Performance at 1M") in one command:
#   1. retrieval, one thread: IVF on the topic set (float and bf16 lists),
#      IVF on the hard set (float, bf16, the exact scan), HNSW against
#      Debian's hnswlib on the same vectors;
#   2. the model alone, 570 candidates, float and bf16;
#   3. the whole ranker in-process (known users, cold start), float, bf16;
#   4. over gRPC on loopback: closed loop (4 and 16 in flight) and open loop
#      at 1,500 calls/s, float and bf16; then the same with the server
#      pinned to one core and the load generator to the other.
# Usage: bench/perf-1m.sh [WORKDIR]    (default bundles; FEEDRANK_BUILD=build)
# The bundles are made on the first run (synth: about 10 minutes each for
# the IVF ones with Debian's reference BLAS, 4 for HNSW, 5 for hnswlib's own
# graph) and reused after; the measurements take about 15 minutes.
# Results: WORKDIR/perf-1m/*.txt, and a summary on stdout.
set -euo pipefail

BUILD=${FEEDRANK_BUILD:-build}
FEEDRANK=$BUILD/cli/feedrank
WORK=${1:-bundles}
OUT=$WORK/perf-1m
PORT=${PORT:-50171}
mkdir -p "$OUT"

synth() {  # synth DIR ARGS...: a bundle, unless it exists
  local dir=$1
  shift
  [ -d "$dir" ] || "$FEEDRANK" synth --videos 1000000 --users 100000 --seed 7 --out "$dir" "$@"
}
# bf16_variant SRC: SRC-bf16, the same files with the manifest's
# index.scan_codes set to bf16 (the IVF lists scanned in bf16).
bf16_variant() {
  local src=$1 dst=$1-bf16
  [ -d "$dst" ] && return
  mkdir -p "$dst"
  for f in "$src"/*; do
    [ "$(basename "$f")" = manifest.json ] || ln -s "$(realpath "$f")" "$dst/"
  done
  python3 - "$src/manifest.json" "$dst/manifest.json" <<'EOF'
import json, sys
m = json.load(open(sys.argv[1]))
m["index"]["scan_codes"] = "bf16"
m["version"] += "-bf16"
json.dump(m, open(sys.argv[2], "w"), indent=2)
EOF
}

synth "$WORK/ivf-1m" --index ivf --nlist 4096 --nprobe 16
synth "$WORK/hard-ivf-1m" --distribution hard --index ivf --nlist 4096 --nprobe 64
synth "$WORK/hnsw-1m"
bf16_variant "$WORK/ivf-1m"
bf16_variant "$WORK/hard-ivf-1m"
echo 'params { scoring_precision: "bf16" }' >"$OUT/bf16.textproto"
lscpu | grep -E "Model name|^CPU\(s\)" >"$OUT/cpu.txt"

# median NAME_REGEX FILE: the median rows of a Google Benchmark text report.
median() { grep -E "$1" "$2" | grep _median | awk '{$NF=$NF; print}' || true; }

echo "== retrieval (one thread, k 500)"
bench_retrieval() {  # bench_retrieval BUNDLE FILTER FILE [FLAGS...]
  local bundle=$1 filter=$2 file=$3
  shift 3
  "$BUILD/bench/retrieval_benchmark" --bundle="$bundle" --benchmark_filter="$filter" \
    --benchmark_repetitions=3 --benchmark_report_aggregates_only=true "$@" >"$OUT/$file" 2>&1
  grep -h difficulty "$OUT/$file" | sed "s|^|$(basename "$bundle") |" || true
  median . "$OUT/$file" | sed "s|^|$(basename "$bundle") |"
}
bench_retrieval "$WORK/ivf-1m" 'k:500/nprobe:(16|32)$' retrieval-ivf.txt
bench_retrieval "$WORK/ivf-1m-bf16" 'k:500/nprobe:(16|32)/rescore:625$' retrieval-ivf-bf16.txt
bench_retrieval "$WORK/hard-ivf-1m" 'k:500/nprobe:(512|1024)$|BM_ExactSearch/k:500' \
  retrieval-hard.txt
bench_retrieval "$WORK/hard-ivf-1m-bf16" 'k:500/nprobe:(512|1024)/rescore:625$' \
  retrieval-hard-bf16.txt
bench_retrieval "$WORK/hnsw-1m" 'k:500/(beam|ef):(768|1024|2048)$' retrieval-hnsw.txt \
  --hnswlib="$WORK/hnswlib-1m-M32-ef80.bin"

echo "== the model, 570 candidates"
"$BUILD/bench/model_benchmark" --bundle="$WORK/ivf-1m" --benchmark_filter='Predict.*570$' \
  --benchmark_repetitions=3 --benchmark_report_aggregates_only=true >"$OUT/model.txt" 2>&1
median . "$OUT/model.txt"

echo "== the ranker in-process (IVF nprobe 16)"
for precision in float bf16; do
  config=()
  [ $precision = bf16 ] && config=(--config="$OUT/bf16.textproto")
  "$BUILD/bench/ranker_benchmark" --bundle="$WORK/ivf-1m" "${config[@]}" \
    --benchmark_filter='BM_Rank/known/repeats|BM_Rank/cold_start/repeats' \
    >"$OUT/ranker-$precision.txt" 2>&1
  median . "$OUT/ranker-$precision.txt" | sed "s|^|$precision |"
done

echo "== over gRPC (ivf-1m, nprobe 16; 15 s after 2 s of warm-up)"
server_pid=""
stop_server() {
  if [ -n "$server_pid" ]; then
    kill -TERM "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
    server_pid=""
  fi
}
trap stop_server EXIT
start_server() {  # start_server PRECISION [taskset prefix...]
  stop_server
  local precision=$1
  shift
  local config=()
  [ "$precision" = bf16 ] && config=(--config "$OUT/bf16.textproto")
  "$@" "$FEEDRANK" serve --bundle "$WORK/ivf-1m" --address "127.0.0.1:$PORT" "${config[@]}" \
    >"$OUT/serve.log" 2>&1 &
  server_pid=$!
}
loadgen() {  # loadgen FILE [taskset prefix...] -- ARGS...
  local file=$1
  shift
  local prefix=()
  while [ "$1" != -- ]; do
    prefix+=("$1")
    shift
  done
  shift
  "${prefix[@]}" "$FEEDRANK" loadgen --target "127.0.0.1:$PORT" --bundle "$WORK/ivf-1m" \
    --warmup 2s --duration 15s --wait 120s "$@" >"$OUT/$file" 2>&1
  echo "$file: $(grep -E 'calls|p50|p99|errors' "$OUT/$file" | tr '\n' ' ' | cut -c1-300)"
}
for pinned in no yes; do
  for precision in float bf16; do
    server=()
    client=()
    if [ $pinned = yes ]; then
      server=(taskset -c 1)
      client=(taskset -c 0)
    fi
    start_server $precision "${server[@]}"
    tag=$precision
    [ $pinned = yes ] && tag=$precision-pinned
    loadgen "grpc-$tag-c4.txt" "${client[@]}" -- --concurrency 4
    loadgen "grpc-$tag-c16.txt" "${client[@]}" -- --concurrency 16
    loadgen "grpc-$tag-open1500.txt" "${client[@]}" -- --qps 1500 --concurrency 64
  done
done
stop_server
echo "results in $OUT"
