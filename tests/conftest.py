from __future__ import annotations

import pytest

from mcp_v8 import Engine


@pytest.fixture(scope="session")
def engine() -> Engine:
    return Engine()
