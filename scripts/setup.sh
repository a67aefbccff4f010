#!/usr/bin/env bash
# Installs the Debian 12 packages feedrank needs (only those missing) and
# builds it in Release with Ninja into ./build.
#
#   scripts/setup.sh [cmake targets...]     default: everything
#   scripts/setup.sh --install-only         the packages, no build
#
# Environment: FEEDRANK_BUILD_DIR (default build), FEEDRANK_CMAKE_ARGS (extra
# configure flags, e.g. "-DFEEDRANK_ARCH=x86-64-v3"), FEEDRANK_JOBS (parallel
# compile jobs; default: Ninja's, from the number of cores).
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(
  build-essential cmake ninja-build pkg-config
  protobuf-compiler libprotobuf-dev protobuf-compiler-grpc libgrpc++-dev
  libfaiss-dev libeigen3-dev libabsl-dev libcli11-dev zlib1g-dev
  libgtest-dev libgmock-dev libbenchmark-dev
  # The server's metrics (Prometheus exposition) and its HTTP endpoint.
  prometheus-cpp-dev libcpp-httplib-dev
  # The Python client example and its test (scripts/python-stubs.sh); curl
  # for the demo's metrics scrape.
  python3-grpcio python3-protobuf curl
  # tests/cli/tls_test.cc makes its certificates with openssl.
  openssl
  # scripts/test.sh: the sanitizer builds (clang with its sanitizer run-times,
  # llvm-symbolizer for the reports' stacks) and the format check.
  clang-14 libclang-rt-14-dev llvm-14 clang-format-14
  # tests/replay/report_test.cc renders the HTML replay report in headless
  # Chromium (a screenshot and the rendered DOM).
  chromium
)
missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}" >&2
  sudo=""
  if [[ $(id -u) -ne 0 ]]; then sudo="sudo"; fi
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends \
    "${missing[@]}" >/dev/null
fi

if [[ "${1:-}" == "--install-only" ]]; then exit 0; fi

build_dir=${FEEDRANK_BUILD_DIR:-build}
# shellcheck disable=SC2086
cmake -S . -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=Release ${FEEDRANK_CMAKE_ARGS:-} >/dev/null
targets=()
for t in "$@"; do targets+=(--target "$t"); done
jobs=()
if [[ -n "${FEEDRANK_JOBS:-}" ]]; then jobs=(--parallel "$FEEDRANK_JOBS"); fi
cmake --build "$build_dir" "${jobs[@]}" "${targets[@]}"
