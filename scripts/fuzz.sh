#!/usr/bin/env bash
# Runs one libFuzzer target (fuzz/README.md) from a clang ASan + UBSan build:
# every input of its seed corpus first (the regressions), then fuzzing for
# SECONDS. New inputs go to <build>/fuzz/corpus-NAME, never into the
# repository; a crash is written to <build>/fuzz/crash-NAME-*, and the run
# fails.
#
#   scripts/fuzz.sh NAME [SECONDS] [libFuzzer flags...]
#   scripts/fuzz.sh list                 the targets
#   scripts/fuzz.sh seeds                (re)writes the seed corpora with
#                                        <build>/fuzz/make_seeds
#
# e.g. scripts/fuzz.sh rank_request 3600 -jobs=2 -workers=2
#
# Environment: FEEDRANK_FUZZ_BUILD_DIR (default build-asan), plus the
# sanitizer options of scripts/sanitizer-env.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
build=${FEEDRANK_FUZZ_BUILD_DIR:-build-asan}
if [[ "${1:-}" == "list" ]]; then
  ls fuzz/*_fuzzer.cc | sed -E 's|fuzz/(.*)_fuzzer.cc|\1|'
  exit 0
fi
if [[ "${1:-}" == "seeds" ]]; then
  exec "$build/fuzz/make_seeds" "$PWD"
fi
name=${1:?"usage: scripts/fuzz.sh NAME [SECONDS] [libFuzzer flags...] (scripts/fuzz.sh list)"}
seconds=${2:-60}
shift $(($# < 2 ? $# : 2))
bin="$build/fuzz/${name}_fuzzer"
if [[ ! -x "$bin" ]]; then
  echo "fuzz.sh: $bin not built (a clang build with -DFEEDRANK_BUILD_FUZZERS=ON, as scripts/test.sh's asan step)" >&2
  exit 2
fi
if [[ ! -d "fuzz/corpus/$name" ]]; then
  echo "fuzz.sh: no seed corpus fuzz/corpus/$name" >&2
  exit 2
fi
# shellcheck source=scripts/sanitizer-env.sh
source scripts/sanitizer-env.sh
work="$build/fuzz/corpus-$name"
mkdir -p "$work"
dict=()
if [[ -f "fuzz/$name.dict" ]]; then dict=(-dict="fuzz/$name.dict"); fi
exec "$bin" "$work" "fuzz/corpus/$name" "${dict[@]}" -max_total_time="$seconds" \
  -timeout=10 -rss_limit_mb=3072 -max_len=65536 -print_final_stats=1 \
  -artifact_prefix="$build/fuzz/crash-$name-" "$@"
