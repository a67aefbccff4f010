#!/usr/bin/env bash
# Checks that the C++ sources are formatted as .clang-format says (Google
# style, 90 columns): lists every file that clang-format would change and
# fails if there is one. Changes nothing.
#
#   scripts/check-format.sh [files...]    default: every tracked *.cc and *.h
#
# Environment: FEEDRANK_CLANG_FORMAT (default clang-format-14, the version
# the check is pinned to: other versions format some constructs differently),
# FEEDRANK_FORMAT_DIFF=1 also prints each file's diff.
# To fix a file: clang-format-14 -i FILE.
set -euo pipefail
cd "$(dirname "$0")/.."

clang_format=${FEEDRANK_CLANG_FORMAT:-}
if [[ -z "$clang_format" ]]; then
  for c in clang-format-14 clang-format; do
    if command -v "$c" >/dev/null 2>&1; then clang_format=$c; break; fi
  done
fi
if [[ -z "$clang_format" ]] || ! command -v "$clang_format" >/dev/null 2>&1; then
  echo "check-format: clang-format not found (apt-get install clang-format-14)" >&2
  exit 2
fi

files=("$@")
if ((${#files[@]} == 0)); then
  if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    mapfile -t files < <(git ls-files -- '*.cc' '*.h')
  else
    mapfile -t files < <(find . -path './build*' -prune -o \( -name '*.cc' -o -name '*.h' \) -print |
      sed 's|^\./||' | sort)
  fi
fi

differ=()
for f in "${files[@]}"; do
  if ! "$clang_format" --style=file "$f" | cmp -s - "$f"; then
    differ+=("$f")
    if [[ "${FEEDRANK_FORMAT_DIFF:-0}" == 1 ]]; then
      "$clang_format" --style=file "$f" | diff -u --label "$f" --label "$f (formatted)" "$f" - || true
    fi
  fi
done

version=$("$clang_format" --version | sed 's/.*version \([0-9.]*\).*/\1/')
if ((${#differ[@]})); then
  printf '%s\n' "${differ[@]}"
  echo "check-format: ${#differ[@]} of ${#files[@]} files differ from clang-format $version" \
    "(.clang-format); fix with: $clang_format -i FILE" >&2
  exit 1
fi
echo "check-format: ${#files[@]} files formatted (clang-format $version)"
