#!/usr/bin/env bash
# Generates the Python gRPC stubs of feedrank's API (feedrank/v1/ranker_pb2.py
# and ranker_pb2_grpc.py) with Debian 12's own tools:
#
#   scripts/python-stubs.sh [OUT_DIR]      default: build/python
#
# Debian's python3-grpc-tools bundles protoc 3.5, which cannot compile proto3
# `optional` (ranker.proto uses it); /usr/bin/protoc (3.21, package
# protobuf-compiler) with /usr/bin/grpc_python_plugin (protobuf-compiler-grpc)
# can. The stubs need python3-grpcio and python3-protobuf at run time; see
# examples/python/rank_feed.py.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-$root/build/python}
protoc=${FEEDRANK_PROTOC:-/usr/bin/protoc}
plugin=${FEEDRANK_GRPC_PYTHON_PLUGIN:-/usr/bin/grpc_python_plugin}
for tool in "$protoc" "$plugin"; do
  if [[ ! -x "$tool" ]]; then
    echo "python-stubs: $tool not found (apt-get install protobuf-compiler protobuf-compiler-grpc)" >&2
    exit 1
  fi
done
mkdir -p "$out"
"$protoc" -I "$root/proto" --python_out="$out" --grpc_python_out="$out" \
  --plugin=protoc-gen-grpc_python="$plugin" "$root/proto/feedrank/v1/ranker.proto"
touch "$out/feedrank/__init__.py" "$out/feedrank/v1/__init__.py"
echo "python-stubs: wrote $out/feedrank/v1/ranker_pb2.py and ranker_pb2_grpc.py"
