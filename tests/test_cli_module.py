from __future__ import annotations

import subprocess
import sys


def test_run_snippet_prints_console_and_result() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "mcp_v8", "run", "console.log('hi', 1 + 1); [1, 2].map(x => x * 2)"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["hi 2", "[2,4]"]


def test_run_snippet_error_exit_code() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "mcp_v8", "run", "throw new Error('bad')"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 1
    assert "Error: bad" in proc.stderr
