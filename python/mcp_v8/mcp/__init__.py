"""The MCP server: tools over the service's operations (:mod:`.tools`), one JSON-RPC dispatch
(:mod:`.protocol`), two transports: stdio (:mod:`.stdio`, ``mcp-v8 mcp``) and ``POST /mcp``
on the HTTP app (:mod:`.http`)."""

from .http import McpResource
from .protocol import SUPPORTED_VERSIONS, Server
from .stdio import claim_stdout, serve_stdio

__all__ = ["SUPPORTED_VERSIONS", "McpResource", "Server", "claim_stdout", "serve_stdio"]
