"""Heap snapshots as file descriptors: how the server and a worker hand each other a heap.

The server gives a worker the heap it restores as a read-only descriptor of a sealed ``memfd``
holding the bytes it verified (:func:`sealed_heap`): nobody, the worker included, can change
them after the check, and the worker opens no store. The worker gives back the heap it produced
the same way (:func:`heap_memfd`); the server trusts nothing of that descriptor
(:func:`read_heap`): it must be a regular file within the size cap, and it is read once into
memory, since the worker may keep writing to a descriptor it shares. The descriptors travel with
``SCM_RIGHTS`` on the channel (:mod:`.protocol`).
"""

from __future__ import annotations

import contextlib
import os
import stat

__all__ = ["HeapFdError", "heap_memfd", "heap_size_cap", "read_heap", "sealed_heap"]

_SEALS = (
    getattr(os, "F_SEAL_SEAL", 0x0001)
    | getattr(os, "F_SEAL_SHRINK", 0x0002)
    | getattr(os, "F_SEAL_GROW", 0x0004)
    | getattr(os, "F_SEAL_WRITE", 0x0008)
)
_F_ADD_SEALS = getattr(os, "F_ADD_SEALS", 1033)


class HeapFdError(ValueError):
    """A descriptor that is no heap the server takes; the message completes "worker sent ..."."""


def heap_size_cap(heap_limit_mb: int) -> int:
    """The largest heap a worker may send for an execution capped at ``heap_limit_mb``: a
    snapshot is compressed, so twice the cap and some room for code and the context's base is
    far above any real one."""
    return (2 * heap_limit_mb + 64) << 20


def _write_all(fd: int, data: bytes | memoryview) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def heap_memfd(data: bytes) -> int:
    """A new ``memfd`` holding ``data``, its offset at 0 (the caller closes it)."""
    fd = os.memfd_create("mcp-v8-heap", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
    try:
        _write_all(fd, data)
        os.lseek(fd, 0, os.SEEK_SET)
    except BaseException:
        os.close(fd)
        raise
    return fd


def sealed_heap(data: bytes) -> int:
    """A read-only descriptor of a sealed ``memfd`` holding ``data`` (the caller closes it): its
    bytes can no longer change, through this descriptor or any other."""
    fd = heap_memfd(data)
    try:
        import fcntl

        fcntl.fcntl(fd, _F_ADD_SEALS, _SEALS)
        # The same file read-only: no write through the descriptor a worker receives.
        return os.open(f"/proc/self/fd/{fd}", os.O_RDONLY | os.O_CLOEXEC)
    finally:
        os.close(fd)


def read_heap(fd: int, limit: int) -> bytes:
    """The bytes of the heap descriptor ``fd`` (a regular file of at most ``limit`` bytes), read
    once from offset 0; :class:`HeapFdError` otherwise. Never closes ``fd``."""
    try:
        st = os.fstat(fd)
    except OSError as e:
        raise HeapFdError(f"a heap descriptor that cannot be examined ({e.strerror})") from None
    if not stat.S_ISREG(st.st_mode):
        raise HeapFdError("a heap descriptor that is not a regular file")
    if st.st_size > limit:
        raise HeapFdError(f"a heap of {st.st_size} bytes, more than its limit of {limit}")
    parts, offset = [], 0
    while offset < st.st_size:  # what it holds now; a file that changes meanwhile fails its check
        try:
            chunk = os.pread(fd, min(st.st_size - offset, 1 << 20), offset)
        except OSError as e:
            raise HeapFdError(f"a heap descriptor that cannot be read ({e.strerror})") from None
        if not chunk:
            break
        parts.append(chunk)
        offset += len(chunk)
    return b"".join(parts)


def close_all(fds: list[int]) -> None:
    """Closes every descriptor of ``fds`` (and empties it)."""
    while fds:
        with contextlib.suppress(OSError):
            os.close(fds.pop())
