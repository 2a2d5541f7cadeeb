"""WSGI entry point for other servers: ``gunicorn 'mcp_v8.wsgi:app'`` (settings from
``MCP_V8_*`` variables). Each server process starts its own worker processes."""

from .app import create_app
from .config import from_env

app = create_app(from_env())
