"""GET /api/version, GET /api/openapi.json, GET /api/stats, GET /api/cli, GET /api/cli/{platform}."""

from __future__ import annotations

from pathlib import Path

import falcon

from .. import __version__
from ..contract import contract, contract_bytes
from ..engine import v8_version
from ..operations import Operations
from .tenancy import ops_for

# The platforms the contract names for /api/cli/{platform}.
PLATFORMS: tuple[str, ...] = tuple(
    next(
        p["schema"]["enum"]
        for p in contract()["paths"]["/api/cli/{platform}"]["get"]["parameters"]
        if p["name"] == "platform"
    )
)
# Binaries embedded at build time: mcp_v8/cli_bin/mcp-v8-cli-<platform>
CLI_DIR = Path(__file__).resolve().parent.parent / "cli_bin"


def cli_binary(platform: str) -> Path | None:
    path = CLI_DIR / f"mcp-v8-cli-{platform}"
    return path if path.is_file() else None


class VersionResource:
    """The package's and V8's versions, and whether the workers run V8 without its JIT
    compilers (``--jitless``)."""

    def __init__(self, jitless: bool = False) -> None:
        self._jitless = jitless

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = {"version": __version__, "v8": v8_version(), "jitless": self._jitless}


class OpenApiResource:
    """The contract, byte for byte the document the validators were built from."""

    def __init__(self) -> None:
        self._document = contract_bytes()

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.content_type = falcon.MEDIA_JSON
        resp.data = self._document


class StatsResource:
    """Counters of the running server for operators: worker crashes and restarts since
    it started, busy workers, queued executions; a crash's details only for whom may read its
    execution (:meth:`~mcp_v8.operations.Operations.stats`)."""

    def __init__(self, ops: Operations) -> None:
        self._ops = ops

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = ops_for(self._ops, req).stats()


class CliIndexResource:
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = {
            "version": __version__,
            "assets": [
                {
                    "platform": p,
                    "available": cli_binary(p) is not None,
                    "url": f"{req.prefix}/api/cli/{p}",
                }
                for p in PLATFORMS
            ],
        }


class CliDownloadResource:
    def on_get(self, req: falcon.Request, resp: falcon.Response, platform: str) -> None:
        if platform not in PLATFORMS:
            raise falcon.HTTPNotFound(
                description=f"unknown platform {platform[:40]!r}; known: {', '.join(PLATFORMS)}"
            )
        path = cli_binary(platform)
        if path is None:
            raise falcon.HTTPNotFound(description=f"no CLI binary for {platform} is embedded in this build")
        resp.content_type = "application/octet-stream"
        resp.downloadable_as = f"mcp-v8-cli-{__version__}-{platform}"
        resp.data = path.read_bytes()
