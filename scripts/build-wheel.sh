#!/usr/bin/env bash
# Builds a self-contained wheel and an sdist into dist/ (or $1).
#
# The wheel carries the extension, the embedded CLI, and libnode.so.108 with every
# library it needs (ICU, libuv, c-ares, OpenSSL, brotli, nghttp2), copied in and
# re-linked by auditwheel, which also picks the manylinux tag those libraries
# honestly allow (manylinux_2_35 on Debian 12). maturin builds without repairing,
# and auditwheel repairs a copy: repairing in place would patch cargo's own artifact.
set -euo pipefail
cd "$(dirname "$0")/.."
out=$(realpath -m "${1:-dist}")
bash scripts/bootstrap.sh
export PATH="$PWD/.venv/bin:$PATH"
raw=$(mktemp -d)
trap 'rm -rf "$raw"' EXIT
maturin build --release --auditwheel skip --out "$raw" >&2
mkdir -p "$out"
auditwheel repair --wheel-dir "$out" "$raw"/*.whl >&2
maturin sdist --out "$out" >&2
ls "$out"/*.whl "$out"/*.tar.gz
