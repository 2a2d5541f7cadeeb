"""Passwords kept out of what the server shows: logs, errors, ``--help`` defaults.

A database location is a libpq connection string: a URL (``postgresql://user:secret@host/db``,
with ``?password=secret`` as another way to give one) or key-value pairs (``host=h
password=secret``). :func:`redact_url` shows one with its passwords replaced by ``***``;
:func:`redact` does the same to any text (an error from the driver may quote part of the
connection string), given the connection strings whose passwords it must not contain; and
:func:`redact_logs` makes the log handlers of a process do it to every record.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from urllib.parse import unquote

__all__ = ["MASK", "passwords", "redact", "redact_logs", "redact_url"]

MASK = "***"

# user:password@ in a URL (libpq ends the user information at the first "@" or "/").
_USERINFO = re.compile(r"(?P<keep>[A-Za-z][A-Za-z0-9+.-]*://[^\s:@/?#]*:)(?P<secret>[^\s@/]*)(?=@)")
# password=... as a URL query parameter.
_QUERY = re.compile(r"(?P<keep>[?&]password=)(?P<secret>[^&#\s]*)", re.IGNORECASE)
# password=... as a key-value pair: a single-quoted value (with backslash escapes) or a bare one.
_KEY_VALUE = re.compile(
    r"(?P<keep>(?<![\w&?])password\s*=\s*)(?P<secret>'(?:[^'\\]|\\.)*'?|[^\s'&]+)", re.IGNORECASE
)


def _mask(pattern: re.Pattern[str], text: str) -> str:
    return pattern.sub(lambda m: m.group("keep") + MASK if m.group("secret") else m.group(0), text)


def redact_url(conninfo: str) -> str:
    """``conninfo`` (a URL or key-value connection string) with every password shown as ``***``."""
    return _mask(_KEY_VALUE, _mask(_QUERY, _mask(_USERINFO, conninfo)))


def passwords(conninfo: str) -> list[str]:
    """The passwords ``conninfo`` holds, as written and as libpq decodes them."""
    found: list[str] = []
    for pattern in (_USERINFO, _QUERY):
        for m in pattern.finditer(conninfo):
            found += [m.group("secret"), unquote(m.group("secret"))]
    for m in _KEY_VALUE.finditer(conninfo):
        value = m.group("secret")
        if value.startswith("'"):  # quoted: the text between the quotes, and with \ escapes undone
            value = value[1:-1] if len(value) > 1 and value.endswith("'") else value[1:]
            found.append(re.sub(r"\\(.)", r"\1", value))
        found.append(value)
    return sorted({p for p in found if p}, key=len, reverse=True)  # longest first: no partial masks


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """``text`` with each of ``secrets`` and every password of a connection string in it shown as
    ``***``. ``secrets`` are the literal strings to hide (see :func:`passwords`)."""
    for secret in sorted({s for s in secrets if s}, key=len, reverse=True):
        text = text.replace(secret, MASK)
    return redact_url(text)


class _RedactingFilter(logging.Filter):
    """Rewrites a record's message, traceback and stack with :func:`redact` before any handler
    formats it."""

    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__()
        self.secrets = tuple(secrets)

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = redact(record.getMessage(), self.secrets)
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text, self.secrets)
            record.exc_info = None  # formatted already: handlers print exc_text
        if record.stack_info:
            record.stack_info = redact(record.stack_info, self.secrets)
        return True


def redact_logs(secrets: Iterable[str], logger: logging.Logger | None = None) -> None:
    """Makes every handler of ``logger`` (the root logger by default) redact ``secrets``, and any
    connection string's password, from the records it emits (those of every library included)."""
    target = logging.getLogger() if logger is None else logger
    redacting = _RedactingFilter(secrets)
    for handler in target.handlers:
        for old in [f for f in handler.filters if isinstance(f, _RedactingFilter)]:
            handler.removeFilter(old)
        handler.addFilter(redacting)
