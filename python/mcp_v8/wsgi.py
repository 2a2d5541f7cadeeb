"""WSGI entry point for other servers: ``gunicorn 'mcp_v8.wsgi:app'`` (settings from
``MCP_V8_*`` variables). Importing this module starts nothing: the service (its
database, its worker processes) is created on the first request, in the process that
serves it, so a server that imports the app before forking its own processes does not
share one set of workers between them."""

from __future__ import annotations

import threading
from collections.abc import Iterable
from typing import Any, Callable

from .app import App, create_app
from .config import from_env


class LazyApp:
    """A WSGI callable that builds the app from the environment when first called."""

    def __init__(self) -> None:
        self._app: App | None = None
        self._lock = threading.Lock()

    @property
    def app(self) -> App:
        if self._app is None:
            with self._lock:
                if self._app is None:
                    self._app = create_app(from_env())
        return self._app

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        return self.app(environ, start_response)


app = LazyApp()
