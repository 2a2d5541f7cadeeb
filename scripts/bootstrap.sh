#!/usr/bin/env bash
# Brings a fresh machine to the point where mcp-v8 builds, runs and tests:
#   1. the run-time libraries libnode needs, and PostgreSQL 15 for the tests of several nodes
#      (apt-get install, only those missing);
#   2. Debian's libnode108 + libnode-dev (V8 10.2) extracted into .deps/libnode, unless
#      MCP_V8_LIBNODE_PREFIX names one already, or the system has the matching pair;
#   3. a virtualenv in .venv with the Python tools of requirements-dev.txt;
#   4. the release build of the extension installed into .venv (maturin develop).
# Idempotent: each step is skipped when its result is already there.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
log() { printf '[bootstrap] %s\n' "$*" >&2; }
stamp_ok() { [ -f "$1" ] && [ "$(cat "$1")" = "$2" ]; }

python=${PYTHON:-python3}
multiarch=$(gcc -print-multiarch 2>/dev/null || echo x86_64-linux-gnu)

# 1. run-time libraries of libnode108 (and the C/C++ toolchain for the shim); the PostgreSQL
#    server the tests start (tests/pg_server.py). SeaweedFS comes from PyPI (requirements-dev.txt).
runtime_pkgs=(libc-ares2 libuv1 libicu72 libbrotli1 libnghttp2-14 libssl3 zlib1g postgresql-15)
missing=()
for p in "${runtime_pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  log "installing ${missing[*]}"
  if [ "$(id -u)" = 0 ]; then sudo=""; else sudo="sudo"; fi
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# 2. libnode (V8 10.2). apt-get install libnode-dev fails where another vendor's
#    nodejs is installed, and /usr/include/node may hold another V8's headers, so the
#    packages are downloaded and extracted into a local prefix instead.
v8_ok() {  # $1 = prefix
  local h="$1/usr/include/node/v8-version.h"
  [ -f "$h" ] && grep -q 'define V8_MAJOR_VERSION 10$' "$h" && grep -q 'define V8_MINOR_VERSION 2$' "$h" \
    && [ -e "$1/usr/lib/$multiarch/libnode.so.108" ] && [ -e "$1/usr/lib/$multiarch/libnode.so" ]
}
if [ -n "${MCP_V8_LIBNODE_PREFIX:-}" ]; then
  v8_ok "$MCP_V8_LIBNODE_PREFIX" || { log "MCP_V8_LIBNODE_PREFIX=$MCP_V8_LIBNODE_PREFIX holds no libnode108 + V8 10.2 headers"; exit 1; }
elif v8_ok / ; then
  log "using the system libnode-dev"
elif ! v8_ok "$root/.deps/libnode"; then
  log "downloading libnode108 and libnode-dev into .deps/libnode"
  rm -rf "$root/.deps/libnode" "$root/.deps/debs"
  mkdir -p "$root/.deps/debs" "$root/.deps/libnode"
  (cd "$root/.deps/debs" && { apt-get download libnode108 libnode-dev >/dev/null 2>&1 \
    || { apt-get update -qq && apt-get download libnode108 libnode-dev >/dev/null; }; })
  for deb in "$root"/.deps/debs/*.deb; do dpkg-deb -x "$deb" "$root/.deps/libnode"; done
  v8_ok "$root/.deps/libnode" || { log "the downloaded libnode does not hold V8 10.2"; exit 1; }
fi

# 3. the virtualenv
if [ ! -x .venv/bin/python ]; then
  log "creating .venv"
  "$python" -m venv .venv
fi
req_hash=$(sha256sum requirements-dev.txt | cut -c1-16)
if ! stamp_ok .venv/.requirements "$req_hash"; then
  log "installing requirements-dev.txt"
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -r requirements-dev.txt
  echo "$req_hash" > .venv/.requirements
fi

# 4. the CLI client, embedded into the package for /api/cli (scripts/embed-cli.sh),
#    then the extension, release build, installed into .venv. Skipped when no source
#    that goes into them changed since the last install.
bash scripts/embed-cli.sh >&2

src_hash=$( (git ls-files -z -co --exclude-standard -- rust Cargo.toml Cargo.lock pyproject.toml scripts 2>/dev/null \
  | xargs -0 -r sha256sum 2>/dev/null; echo "${MCP_V8_LIBNODE_PREFIX:-}") | sha256sum | cut -c1-16)
if ! stamp_ok .venv/.build "$src_hash" || ! .venv/bin/python -c 'import mcp_v8._engine' 2>/dev/null; then
  log "building the extension (release)"
  VIRTUAL_ENV="$root/.venv" PATH="$root/.venv/bin:$PATH" .venv/bin/maturin develop --release --quiet >&2
  echo "$src_hash" > .venv/.build
fi

# 5. the benchmark's raw-V8 yardstick (benches/ceiling.cc) against the same libnode; only
#    make bench uses it, so a failure is reported, not fatal.
bash scripts/build-ceiling.sh >/dev/null || log "benches/ceiling.cc did not build; make bench will report the ceiling missing"
