#!/usr/bin/env bash
# The test suite as CI runs it (.ci/run): installs what is missing, then runs
# these steps (docs/TESTING.md):
#
#   format   scripts/check-format.sh: every C++ file as .clang-format says
#   release  Release build with GCC (everything, benchmarks too) + ctest
#   asan     clang build with AddressSanitizer + UndefinedBehaviorSanitizer +
#            LeakSanitizer, -O1 -g without NDEBUG (asserts and Eigen's
#            bounds checks on), -Werror=thread-safety; the whole ctest suite
#   tsan     clang build with ThreadSanitizer of $FEEDRANK_TSAN_TARGETS only:
#            the toolchain self-test, then each target (skipped, with a
#            message, while it does not exist)
#
# Every step runs even when an earlier one failed; the script prints each
# build's and each run's wall time and exits non-zero if any step failed.
#
#   scripts/test.sh [ctest args...]     e.g. -R 'Ranker' (given to each ctest)
#
# Environment:
#   FEEDRANK_TEST_STEPS      steps to run, in order (default "format release asan tsan")
#   FEEDRANK_BUILD_DIR       Release build directory (default build)
#   FEEDRANK_ASAN_BUILD_DIR  ASan + UBSan build directory (default build-asan)
#   FEEDRANK_TSAN_BUILD_DIR  TSan build directory (default build-tsan)
#   FEEDRANK_TSAN_TARGETS    what the tsan step builds and runs (default concurrency_test)
#   FEEDRANK_TSAN_ARGS       arguments for each TSan target (e.g. --gtest_repeat=20)
#   FEEDRANK_JOBS            parallel compile jobs (default: number of cores)
#   FEEDRANK_TEST_JOBS       parallel tests, ctest -j (default: number of cores)
#   FEEDRANK_SANITIZER_CXX   compiler of the sanitizer builds (default clang++-14)
#   FEEDRANK_CMAKE_ARGS      extra configure flags for every build
#   FEEDRANK_ASAN_OPTIONS, FEEDRANK_LSAN_OPTIONS, FEEDRANK_UBSAN_OPTIONS,
#   FEEDRANK_TSAN_OPTIONS    appended to the run-time options that
#                            scripts/sanitizer-env.sh sets
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1

steps=${FEEDRANK_TEST_STEPS:-format release asan tsan}
for s in $steps; do
  case $s in
    format | release | asan | tsan) ;;
    *) echo "test.sh: unknown step '$s' in FEEDRANK_TEST_STEPS (format release asan tsan)" >&2; exit 2 ;;
  esac
done
release_dir=${FEEDRANK_BUILD_DIR:-build}
asan_dir=${FEEDRANK_ASAN_BUILD_DIR:-build-asan}
tsan_dir=${FEEDRANK_TSAN_BUILD_DIR:-build-tsan}
tsan_targets=${FEEDRANK_TSAN_TARGETS-concurrency_test}
jobs=${FEEDRANK_JOBS:-$(nproc)}
test_jobs=${FEEDRANK_TEST_JOBS:-$(nproc)}
sanitizer_cxx=${FEEDRANK_SANITIZER_CXX:-clang++-14}
ctest_args=("$@")
# shellcheck disable=SC2206
cmake_args=(${FEEDRANK_CMAKE_ARGS:-})

scripts/setup.sh --install-only || exit 1
# shellcheck source=scripts/sanitizer-env.sh
source scripts/sanitizer-env.sh

# Bookkeeping: one line per timed phase, one per failed step, test counts.
timings=()
failures=()
passed=0
failed=0
phase_start=0
begin() {
  echo
  echo "== $1"
  phase_start=$(date +%s.%N)
}
end() {  # end NAME STATUS
  local secs
  secs=$(awk -v a="$phase_start" -v b="$(date +%s.%N)" 'BEGIN { printf "%.0f", b - a }')
  timings+=("$(printf '%-28s %6s s  %s' "$1" "$secs" "$2")")
  echo "-- $1: $2 (${secs} s)"
}
fail() { failures+=("$1"); }

# ctest in DIR with the script's arguments; adds its counts to the totals.
run_ctest() {  # run_ctest NAME DIR
  local log="$2/ctest-output.log" rc line
  begin "$1"
  ctest --test-dir "$2" --output-on-failure -j "$test_jobs" "${ctest_args[@]}" 2>&1 | tee "$log"
  rc=${PIPESTATUS[0]}
  # "100% tests passed, 0 tests failed out of 241"
  line=$(grep -E 'tests passed, [0-9]+ tests? failed out of [0-9]+' "$log" | tail -1)
  if [[ -n "$line" ]]; then
    local f total
    f=$(sed -E 's/.* ([0-9]+) tests? failed out of.*/\1/' <<<"$line")
    total=$(sed -E 's/.*out of ([0-9]+).*/\1/' <<<"$line")
    passed=$((passed + total - f))
    failed=$((failed + f))
  elif ((rc != 0)); then
    failed=$((failed + 1))
  fi
  if ((rc == 0)) && [[ -n "$line" ]]; then end "$1" ok; else end "$1" FAILED; fail "$1"; fi
}

cached() {  # cached DIR VARIABLE: its value in DIR's CMake cache
  sed -n "s/^$2:[A-Z]*=//p" "$1/CMakeCache.txt" 2>/dev/null
}

# Configures DIR as a clang sanitizer build and builds TARGETS in it.
configure_and_build() {  # NAME DIR TARGETS("" = all) SANITIZE CMAKE-ARGS...
  local name=$1 dir=$2 targets=$3 sanitize=$4
  shift 4
  local t target_args=() cxx
  for t in $targets; do target_args+=(--target "$t"); done
  begin "$name"
  mkdir -p "$dir"
  cxx=$(command -v "$sanitizer_cxx")
  if [[ -z "$cxx" ]]; then
    echo "test.sh: compiler '$sanitizer_cxx' not found (FEEDRANK_SANITIZER_CXX)" >&2
  else
    # A build directory configured with another compiler: CMake would drop
    # its cache and configure again *without* these -D flags, silently giving
    # an unsanitised Release build. Start such a directory afresh.
    if [[ -f "$dir/CMakeCache.txt" && "$(cached "$dir" CMAKE_CXX_COMPILER)" != "$cxx" ]]; then
      echo "test.sh: $dir was configured with $(cached "$dir" CMAKE_CXX_COMPILER); configuring it afresh"
      rm -rf "$dir/CMakeCache.txt" "$dir/CMakeFiles"
    fi
    if cmake -S . -B "$dir" -G Ninja -DCMAKE_CXX_COMPILER="$cxx" -DFEEDRANK_SANITIZE="$sanitize" \
      -DCMAKE_BUILD_TYPE=Sanitize "$@" "${cmake_args[@]}" >"$dir/configure.log" 2>&1; then
      if [[ "$(cached "$dir" FEEDRANK_SANITIZE)" != "$sanitize" ]]; then
        echo "test.sh: $dir is not a FEEDRANK_SANITIZE=$sanitize build after configuring" >&2
      elif cmake --build "$dir" --parallel "$jobs" "${target_args[@]}"; then
        end "$name" ok
        return 0
      fi
    else
      tail -50 "$dir/configure.log"
    fi
  fi
  end "$name" FAILED
  fail "$name"
  return 1
}

step_format() {
  begin "format check"
  if scripts/check-format.sh; then end "format check" ok; else
    end "format check" FAILED
    fail "format check"
  fi
}

step_release() {
  begin "release build"
  if FEEDRANK_BUILD_DIR=$release_dir FEEDRANK_JOBS=$jobs scripts/setup.sh; then
    end "release build" ok
    run_ctest "release ctest" "$release_dir"
  else
    end "release build" FAILED
    fail "release build"
  fi
}

step_asan() {
  if configure_and_build "asan+ubsan build" "$asan_dir" "" address \
    -DFEEDRANK_BUILD_BENCHMARKS=OFF; then
    run_ctest "asan+ubsan ctest" "$asan_dir"
  fi
}

# Runs one TSan binary; OUT gets its output. Without ASLR when setarch can:
# clang 14's TSan cannot map its shadow with the larger mmap randomisation of
# some kernels ("unexpected memory mapping").
tsan_exec=()
if setarch "$(uname -m)" -R true 2>/dev/null; then tsan_exec=(setarch "$(uname -m)" -R); fi
# OMP_NUM_THREADS=1: FAISS's OpenMP teams synchronise inside libgomp, which
# TSan cannot see either; one thread per team keeps them out of the picture.
tsan_run() {  # tsan_run OUT BINARY ARGS...
  local out=$1 bin
  bin=$(realpath "$2")
  shift 2
  (cd "$(dirname "$bin")" && OMP_NUM_THREADS=1 "${tsan_exec[@]}" "$bin" "$@") >"$out" 2>&1
}

tsan_selftest() {
  local bin=$1 out="$tsan_dir/tsan-selftest.log" rc ok=1 mode
  begin "tsan self-test"
  # (a) a deliberate race must be reported and fail the run.
  tsan_run "$out" "$bin" race
  rc=$?
  if ((rc != 0)) && grep -q "WARNING: ThreadSanitizer: data race" "$out"; then
    echo "race: reported, exit $rc (as it must be)"
  else
    cat "$out"
    echo "tsan self-test: a deliberate data race was NOT reported (exit $rc): TSan is not working" >&2
    ok=0
  fi
  # (b) std::mutex / std::condition_variable and (d) std::atomic<std::shared_ptr>
  # must be clean.
  for mode in std_mutex atomic_shared_ptr; do
    tsan_run "$out" "$bin" "$mode"
    rc=$?
    if ((rc == 0)) && ! grep -q "ThreadSanitizer" "$out"; then
      echo "$mode: clean ($(tail -1 "$out"))"
    else
      cat "$out"
      echo "tsan self-test: $mode is not clean (exit $rc)" >&2
      ok=0
    fi
  done
  # (c) for the record: absl::Mutex is invisible to TSan with Debian's Abseil.
  TSAN_OPTIONS="$TSAN_OPTIONS:halt_on_error=0" tsan_run "$out" "$bin" absl_mutex
  echo "absl_mutex: $(grep -c 'WARNING: ThreadSanitizer' "$out") false reports (expected" \
    "while Abseil is not built with TSan; not a failure)"
  if ((ok)); then
    passed=$((passed + 3))
    end "tsan self-test" ok
  else
    failed=$((failed + 1))
    end "tsan self-test" FAILED
    fail "tsan self-test"
  fi
}

step_tsan() {
  local list t path
  list=$(tr ' ,' ';;' <<<"$tsan_targets")
  configure_and_build "tsan build (self-test)" "$tsan_dir" tsan_selftest thread \
    -DFEEDRANK_BUILD_BENCHMARKS=OFF -DFEEDRANK_LIST_TARGETS="$list" || return
  tsan_selftest "$tsan_dir/tests/sanitizers/tsan_selftest"
  for t in $tsan_targets; do
    path=$(awk -v t="$t" '$1 == t { print $2 }' "$tsan_dir/feedrank-targets.txt")
    if [[ -z "$path" ]]; then
      echo
      echo "== tsan $t: skipped: there is no executable target '$t' yet (FEEDRANK_TSAN_TARGETS)"
      timings+=("$(printf '%-28s %6s    %s' "tsan $t" - skipped)")
      continue
    fi
    configure_and_build "tsan build $t" "$tsan_dir" "$t" thread \
      -DFEEDRANK_BUILD_BENCHMARKS=OFF -DFEEDRANK_LIST_TARGETS="$list" || continue
    begin "tsan run $t"
    local out="$tsan_dir/tsan-$t.log" rc p f
    # shellcheck disable=SC2086
    tsan_run "$out" "$path" ${FEEDRANK_TSAN_ARGS:-}
    rc=$?
    cat "$out"
    # GoogleTest's closing lines; a binary without them counts as one test.
    p=$(sed -nE 's/^\[  PASSED  \] ([0-9]+) tests?\..*/\1/p' "$out" | awk '{ s += $1 } END { print s + 0 }')
    f=$(sed -nE 's/^\[  FAILED  \] ([0-9]+) tests?, listed below.*/\1/p' "$out" | awk '{ s += $1 } END { print s + 0 }')
    if ((rc != 0 && f == 0)); then f=1; fi
    if ((rc == 0 && p == 0)); then p=1; fi
    passed=$((passed + p))
    failed=$((failed + f))
    if ((rc == 0)); then end "tsan run $t" ok; else
      grep -q "ThreadSanitizer" "$out" && echo "tsan run $t: ThreadSanitizer report (above)" >&2
      end "tsan run $t" "FAILED (exit $rc)"
      fail "tsan run $t"
    fi
  done
}

total_start=$(date +%s)
for s in $steps; do "step_$s"; done

echo
echo "== timings (wall, $(nproc) cores; FEEDRANK_JOBS=$jobs, FEEDRANK_TEST_JOBS=$test_jobs)"
printf '  %s\n' "${timings[@]}"
echo "  total: $(($(date +%s) - total_start)) s"
if ((${#failures[@]})); then
  echo "test.sh: failed: $(printf '%s, ' "${failures[@]}" | sed 's/, $//')" >&2
fi
echo "summary: $passed passed, $failed failed"
((${#failures[@]} == 0))
