"""Frames over the socket between the server and one worker (:mod:`.protocol` says what a frame
holds and how it is checked): a frame whose bytes stop coming within its deadline is a
:class:`~.protocol.ProtocolError`, a send that cannot complete within its deadline a
``TimeoutError``, and a heap descriptor rides with ``SCM_RIGHTS`` on the first byte of the
frame of a message that carries one. Every frame is read with ``recvmsg`` and room for one
descriptor; what arrives is attributed to the frame being read, and a descriptor where none
belongs (or more than one, or a truncated control message) is a ProtocolError, every descriptor
received closed on every path but the one that hands it to the caller."""

from __future__ import annotations

import array
import dataclasses
import select
import socket
import threading
import time

from .heap_fds import close_all
from .protocol import FRAME_HEADER, KINDS, MAX_FRAME, Message, ProtocolError, decode, encode, heap_fd

__all__ = ["Channel"]

# Room for one descriptor: a second one that fits beside it is counted, a third sets MSG_CTRUNC.
_ANCILLARY = socket.CMSG_SPACE(array.array("i").itemsize)
_CMSG_CLOEXEC = getattr(socket, "MSG_CMSG_CLOEXEC", 0)


class Channel:
    """Frames over a stream socket (a socketpair between the server and one worker).

    ``peer`` is the side messages come from (``"worker"`` on the server's end). With
    ``frame_seconds`` (the server's end), a frame whose bytes stop coming is a
    :class:`ProtocolError` after that long; with ``send_seconds``, a send that cannot complete
    within that long (a worker that stopped reading) raises ``TimeoutError``, the frame part sent. ``recv`` raises
    ``EOFError`` when the peer closed the connection at a frame boundary or within one."""

    def __init__(
        self,
        sock: socket.socket,
        *,
        peer: str,
        frame_seconds: float | None = None,
        send_seconds: float | None = None,
    ) -> None:
        self._sock = sock  # blocking: the deadlines below use MSG_DONTWAIT and select
        self._peer = peer
        self._max_frame = MAX_FRAME[peer]
        self._frame_seconds = frame_seconds
        self._send_seconds = send_seconds
        self._send_lock = threading.Lock()

    @classmethod
    def from_fd(cls, fd: int, *, peer: str) -> Channel:
        return cls(socket.socket(fileno=fd), peer=peer)

    def fileno(self) -> int:
        return self._sock.fileno()

    def send(self, message: Message) -> None:
        """Sends ``message`` (with its ``heap_fd``, which stays the caller's); :class:`Undeliverable`
        (nothing sent) when it cannot be encoded, or its descriptor is not the one its kind needs."""
        self.send_frame(encode(message), heap_fd(message))

    def send_frame(self, frame: bytes, fd: int | None = None) -> None:
        """Sends ``frame``, with the descriptor ``fd`` on its first byte when given."""
        with self._send_lock:
            view = memoryview(frame)
            deadline = None if self._send_seconds is None else time.monotonic() + self._send_seconds
            if fd is not None:
                rights = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [fd]))]
                while True:
                    try:
                        flags = 0 if deadline is None else socket.MSG_DONTWAIT
                        view = view[self._sock.sendmsg([view[:1]], rights, flags) :]
                        break
                    except BlockingIOError:
                        self._wait_writable(deadline)
            if deadline is None:
                self._sock.sendall(view)
                return
            while view:
                try:
                    view = view[self._sock.send(view, socket.MSG_DONTWAIT) :]
                except BlockingIOError:
                    self._wait_writable(deadline)

    def _wait_writable(self, deadline: float | None) -> None:
        left = 0.0 if deadline is None else deadline - time.monotonic()
        if left <= 0 or not select.select([], [self._sock], [], left)[1]:
            raise TimeoutError(f"the worker took no message for {self._send_seconds:g} s") from None

    def _recv(self, size: int, flags: int, fds: list[int]) -> bytes:
        """``recv`` that takes the descriptors arriving with the bytes into ``fds``."""
        data, ancillary, msg_flags, _ = self._sock.recvmsg(size, _ANCILLARY, flags | _CMSG_CLOEXEC)
        for level, kind, payload in ancillary:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                received = array.array("i")
                received.frombytes(payload[: len(payload) - len(payload) % received.itemsize])
                fds.extend(received)
        if msg_flags & socket.MSG_CTRUNC:
            raise ProtocolError("more file descriptors than a message may carry")
        return data

    def _read(self, n: int, deadline: float | None, frame: int, fds: list[int]) -> bytes:
        parts, left = [], n
        while left:
            if deadline is None:
                chunk = self._recv(min(left, 1 << 20), 0, fds)
            else:
                try:
                    chunk = self._recv(min(left, 1 << 20), socket.MSG_DONTWAIT, fds)
                except BlockingIOError:
                    readable, _, _ = select.select(
                        [self._sock], [], [], max(0.0, deadline - time.monotonic())
                    )
                    if not readable:
                        got = n - left
                        raise ProtocolError(
                            f"a truncated message ({got} of {frame} bytes in {self._frame_seconds:g} s)"
                        ) from None
                    continue
            if not chunk:
                raise EOFError("channel closed")
            parts.append(chunk)
            left -= len(chunk)
        return b"".join(parts)

    def recv(self) -> Message:
        """The next message; a heap kind's descriptor comes as its ``heap_fd``, which the caller
        then owns (and closes). Every other descriptor received is closed here."""
        deadline = None if self._frame_seconds is None else time.monotonic() + self._frame_seconds
        fds: list[int] = []
        try:
            (size,) = FRAME_HEADER.unpack(self._read(FRAME_HEADER.size, deadline, FRAME_HEADER.size, fds))
            if size > self._max_frame:
                raise ProtocolError(
                    f"a frame of {size} bytes, more than the {self._max_frame} any message may have"
                )
            message = decode(self._read(size, deadline, size, fds), self._peer)
            kind = KINDS[message.KIND]
            wanted = 1 if kind.heap is not None and kind.heap(message) else 0
            if len(fds) != wanted:
                what = "no heap" if not wanted else "a heap"
                raise ProtocolError(f"a {kind.name!r} message with {what} and {len(fds)} file descriptors")
            if wanted:
                message = dataclasses.replace(message, heap_fd=fds.pop())  # type: ignore[arg-type]
            return message
        finally:
            close_all(fds)

    def poll(self, timeout: float) -> bool:
        readable, _, _ = select.select([self._sock], [], [], timeout)
        return bool(readable)

    def close(self) -> None:
        self._sock.close()
