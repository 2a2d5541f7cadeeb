#!/usr/bin/env bash
# Builds mcp-v8-cli for this machine and embeds it in the Python package as
# python/mcp_v8/cli_bin/mcp-v8-cli-<platform>, which /api/cli/<platform> serves.
# Binaries for other platforms, built elsewhere, are embedded too when
# MCP_V8_CLI_BINARIES names a directory holding files named mcp-v8-cli-<platform>
# (the platforms the contract names for /api/cli/{platform}).
set -euo pipefail
cd "$(dirname "$0")/.."
case "$(uname -s)-$(uname -m)" in
  Linux-x86_64) platform=linux-x86_64 ;;
  Linux-aarch64 | Linux-arm64) platform=linux-aarch64 ;;
  Darwin-arm64) platform=macos-aarch64 ;;
  *) echo "[embed-cli] no CLI platform name for $(uname -s)-$(uname -m); not embedding" >&2; exit 0 ;;
esac
dest=python/mcp_v8/cli_bin
mkdir -p "$dest"
cargo build --release --quiet -p mcp-v8-cli
install -m 0755 target/release/mcp-v8-cli "$dest/mcp-v8-cli-$platform.tmp"
mv -f "$dest/mcp-v8-cli-$platform.tmp" "$dest/mcp-v8-cli-$platform"
if [ -n "${MCP_V8_CLI_BINARIES:-}" ]; then
  platforms=$(python3 -c 'import json, sys
op = json.load(open("python/mcp_v8/openapi.json"))["paths"]["/api/cli/{platform}"]["get"]
print(" ".join(next(p["schema"]["enum"] for p in op["parameters"] if p["name"] == "platform")))')
  for other in $platforms; do
    [ "$other" = "$platform" ] && continue
    if [ -f "$MCP_V8_CLI_BINARIES/mcp-v8-cli-$other" ]; then
      install -m 0755 "$MCP_V8_CLI_BINARIES/mcp-v8-cli-$other" "$dest/mcp-v8-cli-$other"
    fi
  done
fi
