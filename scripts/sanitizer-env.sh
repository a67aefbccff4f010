# shellcheck shell=bash
# Sanitizer run-time options for feedrank's test runs: scripts/test.sh sources
# this file, and so can a shell that runs a sanitizer-built binary by hand:
#
#   source scripts/sanitizer-env.sh && build-asan/tests/embeddings_test
#
# Every report fails the run (docs/TESTING.md): ASan and TSan halt on their
# first report, UBSan too (the build also has -fno-sanitize-recover=all), and
# LeakSanitizer makes the process exit non-zero at exit.
_feedrank_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

# Symbolised stacks need llvm-symbolizer (Debian's llvm-14 package).
if [[ -z "${FEEDRANK_SYMBOLIZER:-}" ]]; then
  for s in llvm-symbolizer llvm-symbolizer-14 /usr/lib/llvm-14/bin/llvm-symbolizer; do
    if command -v "$s" >/dev/null 2>&1; then FEEDRANK_SYMBOLIZER=$(command -v "$s"); break; fi
  done
fi
_feedrank_symbolizer=${FEEDRANK_SYMBOLIZER:+:external_symbolizer_path=$FEEDRANK_SYMBOLIZER}

# detect_leaks: LeakSanitizer at exit. detect_stack_use_after_return and the
# init-order checks are off by default in the runtime; the suite runs clean
# with them. detect_odr_violation=2 (the default) flags globals defined twice.
export ASAN_OPTIONS="detect_leaks=1:halt_on_error=1:detect_stack_use_after_return=1:check_initialization_order=1:strict_init_order=1:detect_odr_violation=2:strict_string_checks=1${_feedrank_symbolizer}${FEEDRANK_ASAN_OPTIONS:+:$FEEDRANK_ASAN_OPTIONS}"
# One suppression, for FAISS's leak on read_index's error path (see the file).
export LSAN_OPTIONS="suppressions=$_feedrank_root/tests/sanitizers/lsan.supp:print_suppressions=1${FEEDRANK_LSAN_OPTIONS:+:$FEEDRANK_LSAN_OPTIONS}"
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1${_feedrank_symbolizer}${FEEDRANK_UBSAN_OPTIONS:+:$FEEDRANK_UBSAN_OPTIONS}"
# second_deadlock_stack: both stacks of a lock-order inversion.
export TSAN_OPTIONS="halt_on_error=1:second_deadlock_stack=1${_feedrank_symbolizer}${FEEDRANK_TSAN_OPTIONS:+:$FEEDRANK_TSAN_OPTIONS}"
unset _feedrank_root _feedrank_symbolizer
