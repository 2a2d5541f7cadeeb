"""Pages of an output log, whatever stores its chunks.

The output log (:class:`~.output_log.SQLOutputLog`, on SQLite or PostgreSQL) stores an
execution's console output as chunks, each valid UTF-8 on its own and carrying the byte
offset and line number it starts at. A page is assembled here from a :class:`ChunkSource` (the
log's indexed lookups): one lookup for the chunk holding the page's first byte or line, then
forward only over the chunks the page covers, so a page costs the same at line 10 as at line
10 million.
"""

from __future__ import annotations

import builtins
from collections.abc import Iterator
from typing import TYPE_CHECKING, NamedTuple, Protocol

if TYPE_CHECKING:
    from .output import OutputPage

__all__ = [
    "Chunk",
    "ChunkSource",
    "Extent",
    "boundary_at_or_before",
    "is_continuation",
    "lines_page",
    "bytes_page",
    "nth_newline",
]


def is_continuation(byte: int) -> bool:
    return byte & 0xC0 == 0x80


def boundary_at_or_before(data: bytes | bytearray, pos: int) -> int:
    """The largest UTF-8 character boundary ``<= pos`` in ``data`` (which starts on a boundary)."""
    while 0 < pos < len(data) and is_continuation(data[pos]):
        pos -= 1
    return pos


def nth_newline(data: bytes, n: int) -> int:
    """Index of the ``n``-th (0-based) newline in ``data``; the caller knows it exists."""
    pos = -1
    for _ in range(n + 1):
        pos = data.index(b"\n", pos + 1)
    return pos


class Chunk(NamedTuple):
    seq: int
    start_byte: int
    start_line: int  # newlines before the chunk's first byte: the line that byte belongs to
    n_lines: int  # newlines inside the chunk
    data: bytes


class Extent(NamedTuple):
    """One consistent reading of how far an execution's output goes: its totals, the part stored in
    chunks (below ``stored_bytes``) and, for a log that buffers, the rest as one more chunk
    (``pending``)."""

    total_bytes: int
    total_lines: int
    total_newlines: int
    truncated: bool
    stored_bytes: int
    pending: Chunk | None


class ChunkSource(Protocol):
    """The chunk lookups of one execution's log within one :class:`Extent`."""

    def chunk_at_byte(self, byte: int) -> Chunk:
        """The chunk holding byte ``byte`` (which exists)."""
        ...

    def chunk_with_newline(self, k: int) -> Chunk:
        """The chunk holding the ``k``-th newline (0-based, which exists)."""
        ...

    def chunks_from(self, first: Chunk, *, byte_end: int, line_end: int | None = None) -> Iterator[Chunk]:
        """``first`` and the chunks after it that start before byte ``byte_end`` (and, when given,
        on a line ``<= line_end``)."""
        ...


def _page(
    data: bytes, start_line: int, end_line: int, start_byte: int, end_byte: int, extent: Extent
) -> OutputPage:
    from .output import OutputPage

    return OutputPage(
        data=data.decode("utf-8", "replace"),
        start_line=start_line,
        end_line=end_line,
        start_byte=start_byte,
        end_byte=end_byte,
        next_line_offset=end_line,
        next_byte_offset=end_byte,
        has_more=end_byte < extent.total_bytes,
        total_lines=extent.total_lines,
        total_bytes=extent.total_bytes,
    )


def _collect(source: ChunkSource, first: Chunk, start: int, end: int) -> bytes:
    """Bytes ``[start, end)`` reading forward from ``first`` (which holds ``start``)."""
    parts: builtins.list[bytes] = []
    for chunk in source.chunks_from(first, byte_end=end):
        lo = max(start - chunk.start_byte, 0)
        hi = min(end - chunk.start_byte, len(chunk.data))
        if hi > lo:
            parts.append(chunk.data[lo:hi])
    return b"".join(parts)


def lines_page(source: ChunkSource, extent: Extent, line_offset: int, line_limit: int) -> OutputPage:
    """Up to ``line_limit`` whole lines from line ``line_offset`` (0-indexed). A line is text up to
    and including a newline; a final line without one counts too. An offset past the end gives an
    empty page at the end."""
    if line_offset < 0 or line_limit < 0:
        raise ValueError("line_offset and line_limit must be >= 0")
    total_bytes, total_lines = extent.total_bytes, extent.total_lines
    first_line = min(line_offset, total_lines)
    if first_line == total_lines:
        return _page(b"", total_lines, total_lines, total_bytes, total_bytes, extent)
    end_line = min(first_line + line_limit, total_lines)

    if first_line == 0:
        first = source.chunk_at_byte(0)
        start_byte = 0
    else:
        first = source.chunk_with_newline(first_line - 1)
        start_byte = first.start_byte + nth_newline(first.data, first_line - 1 - first.start_line) + 1
    if end_line == first_line:
        return _page(b"", first_line, first_line, start_byte, start_byte, extent)

    parts: builtins.list[bytes] = []
    end_byte = total_bytes
    last_newline = end_line - 1  # the newline that ends the page, unless it ends with the output
    bounded = end_line < total_lines
    chunks = source.chunks_from(first, byte_end=total_bytes, line_end=last_newline if bounded else None)
    for chunk in chunks:
        lo = max(start_byte - chunk.start_byte, 0)
        if bounded and chunk.start_line + chunk.n_lines > last_newline:
            hi = nth_newline(chunk.data, last_newline - chunk.start_line) + 1
            parts.append(chunk.data[lo:hi])
            end_byte = chunk.start_byte + hi
            break
        parts.append(chunk.data[lo:])
    return _page(b"".join(parts), first_line, end_line, start_byte, end_byte, extent)


def bytes_page(source: ChunkSource, extent: Extent, byte_offset: int, byte_limit: int) -> OutputPage:
    """Up to ``byte_limit`` bytes from ``byte_offset``, never splitting a UTF-8 character: an
    offset inside a character moves forward to the next one; a limit that would cut a character
    ends before it, except that a page with ``byte_limit >= 1`` always holds at least one whole
    character. ``start_line`` is the line holding the first byte, ``end_line`` the line holding
    the last byte plus one."""
    if byte_offset < 0 or byte_limit < 0:
        raise ValueError("byte_offset and byte_limit must be >= 0")
    total_bytes = extent.total_bytes
    if byte_offset >= total_bytes:
        line = extent.total_newlines
        return _page(b"", line, line, total_bytes, total_bytes, extent)

    first = source.chunk_at_byte(byte_offset)
    rel = byte_offset - first.start_byte
    while rel < len(first.data) and is_continuation(first.data[rel]):
        rel += 1  # chunks start and end on character boundaries, so this stays inside
    start_byte = first.start_byte + rel
    start_line = first.start_line + first.data.count(b"\n", 0, rel)
    if start_byte >= total_bytes:
        return _page(b"", start_line, start_line, total_bytes, total_bytes, extent)

    want_end = min(start_byte + byte_limit, total_bytes)
    fetch_end = min(want_end + 3, total_bytes)  # enough to see the boundary and finish one character
    buf = _collect(source, first, start_byte, fetch_end)
    end = want_end - start_byte
    if end < len(buf):
        end = boundary_at_or_before(buf, end)
        if end == 0 and byte_limit > 0:
            end = 1
            while end < len(buf) and is_continuation(buf[end]):
                end += 1
    data = buf[:end]
    end_line = start_line + data.count(b"\n", 0, end - 1) + 1 if end else start_line
    return _page(data, start_line, end_line, start_byte, start_byte + end, extent)
