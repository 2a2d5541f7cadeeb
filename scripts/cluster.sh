#!/usr/bin/env bash
# Three mcp-v8 nodes on this machine: PostgreSQL + SeaweedFS S3 + three `mcp-v8 serve` sharing one
# database and one heap store, a short mixed load across them (scripts/cluster.py), a summary per
# node, then everything stopped by its pid and the temp directory removed (also on Ctrl-C).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}

dir=$(mktemp -d -t mcp-v8-cluster-XXXXXX)
chmod 755 "$dir"  # PostgreSQL runs as the postgres user when we are root: it must reach its directory
driver=""
cleanup() {
    status=$?
    trap - EXIT INT TERM
    if [[ -n "$driver" ]] && kill -0 "$driver" 2>/dev/null; then
        kill -TERM "$driver" 2>/dev/null || true  # the driver stops the nodes, S3 and PostgreSQL
        wait "$driver" 2>/dev/null || true
    fi
    rm -rf "$dir"
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# TMPDIR: PostgreSQL's directory (tests/pg_server.py) goes under $dir too.
TMPDIR="$dir" "$PY" scripts/cluster.py --dir "$dir/run" &
driver=$!
wait "$driver"
