"""The benchmark's raw-V8 yardstick (benches/ceiling.cc) builds against the libnode the
extension links and measures both figures the bench compares with."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_ceiling_program_builds_and_measures_both_figures() -> None:
    built = subprocess.run(
        ["bash", str(ROOT / "scripts" / "build-ceiling.sh")], capture_output=True, text=True, timeout=600
    )
    assert built.returncode == 0, built.stderr[-2000:]
    program = built.stdout.strip().splitlines()[-1]
    out = subprocess.run(
        [program, "1", "0.3"], capture_output=True, text=True, timeout=120, check=True
    ).stdout
    figures = [json.loads(line) for line in out.splitlines()]
    assert [f["kind"] for f in figures] == ["fresh-isolate", "snapshot-chain"]
    for figure in figures:
        assert "error" not in figure, figure
        assert figure["threads"] == 1 and figure["runs"] > 0 and figure["rate_per_s"] > 0
    for figure in figures:
        assert figure["cpu_ms_per_run"] > 0
    refused = subprocess.run([program, "0", "1"], capture_output=True, text=True, timeout=60)
    assert refused.returncode == 2 and "usage" in refused.stderr
    # Serve mode: measured slices on request, the chain carrying on between them.
    console_js = ROOT / "rust" / "engine" / "cpp" / "js" / "console.js"
    served = subprocess.run(
        [program, "serve", str(console_js)],
        input="snapshot-chain 3\nfresh-isolate 2\nnonsense 1\nsnapshot-chain 2\nconsole-chain 2\n",
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    answers = [json.loads(line) for line in served.splitlines()]
    kinds = [a.get("kind") for a in answers]
    assert kinds == ["snapshot-chain", "fresh-isolate", None, "snapshot-chain", "console-chain"]
    assert "error" in answers[2]
    for answer in answers[:2] + answers[3:]:
        assert "error" not in answer and answer["cpu_ms_per_run"] > 0
