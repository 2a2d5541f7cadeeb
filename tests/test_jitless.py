"""V8 without its JIT compilers (``mcp_v8.set_jitless``): a process-wide setting, so every
test runs a child interpreter of its own."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

COMPUTE = "function f(n) { let s = 0; for (let i = 0; i < n; i++) s += i % 7; return s } f(200000)"


def child(code: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=120, check=False
    )


def report(code: str, *args: str) -> dict:
    done = child(code, *args)
    assert done.returncode == 0, done.stderr
    assert done.stderr == "", done.stderr  # V8 warns of nothing (no conflicting flags)
    return json.loads(done.stdout)


@pytest.mark.parametrize("jitless", [True, False])
def test_the_setting_is_the_process_s_and_jitless_has_no_webassembly(jitless: bool) -> None:
    seen = report(
        f"""
import json, mcp_v8
mcp_v8.set_jitless({jitless})
engine = mcp_v8.Engine()
print(json.dumps({{
    "jitless": mcp_v8.jitless(),
    "wasm": engine.evaluate("typeof WebAssembly"),
    "result": engine.evaluate({COMPUTE!r}),
}}))
"""
    )
    assert seen["jitless"] is jitless
    assert seen["wasm"] == ("undefined" if jitless else "object")
    assert seen["result"] == sum(i % 7 for i in range(200000))  # the interpreter computes alike


def test_once_v8_started_the_other_setting_is_refused() -> None:
    seen = report(
        """
import json, mcp_v8
mcp_v8.Engine().execute("1")
mcp_v8.set_jitless(False)  # the setting V8 started with: fine
try:
    mcp_v8.set_jitless(True)
    refused = None
except RuntimeError as e:
    refused = str(e)
print(json.dumps({"refused": refused, "jitless": mcp_v8.jitless()}))
"""
    )
    assert seen["jitless"] is False
    assert seen["refused"] is not None and "before the first engine" in seen["refused"]


@pytest.mark.parametrize("made_jitless", [True, False])
def test_heaps_restore_across_the_setting(made_jitless: bool, tmp_path: Path) -> None:
    """A heap carries no machine code: one made with the JIT compilers restores without them
    and the other way round, state and functions intact."""
    heap = tmp_path / "heap.snap"
    make = f"""
import mcp_v8, sys
mcp_v8.set_jitless({made_jitless})
out = mcp_v8.Engine().execute(
    "var counter = 41; function f(n) {{ let s = 0; for (let i = 0; i < n; i++) s += i; return s }}"
    " for (let i = 0; i < 50; i++) f(10000); counter",
    snapshot=True,
)
assert out.status == "completed", out.error
open(sys.argv[1], "wb").write(out.snapshot)
print("{{}}")
"""
    report(make, str(heap))
    resumed = report(
        f"""
import json, mcp_v8, sys
mcp_v8.set_jitless({not made_jitless})
out = mcp_v8.Engine().execute("counter += 1; [counter, f(100)]", heap=open(sys.argv[1], "rb").read())
print(json.dumps({{"status": out.status, "result": out.result, "error": out.error}}))
""",
        str(heap),
    )
    assert resumed == {"status": "completed", "result": "[42,4950]", "error": None}
