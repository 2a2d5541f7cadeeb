#!/usr/bin/env bash
# Builds the benchmark's raw-V8 yardstick (benches/ceiling.cc) against the libnode the
# extension links: MCP_V8_LIBNODE_PREFIX, else <repo>/.deps/libnode, else the system's
# (the bootstrap puts one of them in place). Writes target/v8-ceiling, prints its path.
# Skipped when the program is newer than its source.
set -euo pipefail
cd "$(dirname "$0")/.."
multiarch=$(gcc -print-multiarch 2>/dev/null || echo x86_64-linux-gnu)
prefix=""
for candidate in "${MCP_V8_LIBNODE_PREFIX:-}" "$PWD/.deps/libnode" "/"; do
  [ -n "$candidate" ] || continue
  if grep -qs 'define V8_MAJOR_VERSION 10$' "$candidate/usr/include/node/v8-version.h" \
    && [ -e "$candidate/usr/lib/$multiarch/libnode.so.108" ]; then
    prefix=$candidate
    break
  fi
done
[ -n "$prefix" ] || { echo "[build-ceiling] no libnode108 with V8 10.2 headers; run scripts/bootstrap.sh" >&2; exit 1; }
out=target/v8-ceiling
if [ ! -x "$out" ] || [ benches/ceiling.cc -nt "$out" ]; then
  mkdir -p target
  lib="$prefix/usr/lib/$multiarch"
  g++ -std=c++17 -O2 -Wall -Wextra -isystem "$prefix/usr/include/node" benches/ceiling.cc \
    -L "$lib" -l:libnode.so.108 -Wl,-rpath,"$lib" -pthread -o "$out.tmp"
  mv -f "$out.tmp" "$out"
fi
echo "$PWD/$out"
