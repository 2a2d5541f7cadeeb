"""The floors of the Python package (.importlinter, ARCHITECTURE.md) hold: no module imports one
on a floor above it, and no module imports, even indirectly, a sibling that imports it. The same
check `make lint` runs, here so that every test run keeps it."""

from __future__ import annotations

from pathlib import Path

import pytest

CONFIG = Path(__file__).resolve().parent.parent / ".importlinter"


def test_the_import_contracts_are_kept(capsys: pytest.CaptureFixture[str]) -> None:
    from importlinter import cli

    status = cli.lint_imports(config_filename=str(CONFIG), no_cache=True)
    assert status == 0, capsys.readouterr().out


def test_the_contracts_name_every_top_level_module() -> None:
    """A module added at the top of the package must be given its floor: a module no layer
    names is checked by no layer."""
    import grimp

    graph = grimp.build_graph("mcp_v8")
    top = {m for m in graph.modules if m.count(".") == 1 and m != "mcp_v8._engine"}
    named = {
        word.strip() for word in CONFIG.read_text().replace("|", "\n").split() if word.startswith("mcp_v8.")
    }
    assert top <= named, sorted(top - named)
