"""Signed heaps: the deployment's proof that it made a heap snapshot, checked before a worker
receives one.

A heap's key is the SHA-256 of its payload, which anyone who can write the store can satisfy,
and a V8 snapshot holds compiled code: a crafted blob is code execution. So the server (never a
worker, which could then forge) signs every heap it publishes with an HMAC-SHA256 under the
deployment's key, and refuses a heap whose signature does not verify before a worker sees a byte
of it (:class:`~.errors.HeapNotSigned`).

What is signed (:func:`signed_message`): a domain-separation prefix, the envelope's header (all
it holds before the payload's digest: magic, format, compression, the engine fingerprint, which
names the natives and external references a snapshot refers to, the dictionary, the V8 version,
the raw length) and the payload's SHA-256, the key. So the signature covers every byte of the
envelope and the engine build that made it, but no V8 flag: a heap made with ``--jitless``
restores without it and the other way round. A blob that is not an envelope (a store's own tests)
has no header: the message is then the prefix and the digest of the whole blob.

The signature lives in the heap index (``heaps.signature``), beside the key, not in the blob: the
index is the deployment's registry, the blob store the part others may write; and a trailer
would change the bytes every earlier release and every other store reads as the envelope.

Keys: a list, the first signs, every one verifies (rotation: put the new key first; a heap that a
later key signed is signed again with the first when it is next resumed; drop the old key once the
heaps that matter were). A signature is ``hs1:`` and 64 hex digits.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import hmac
import os
import secrets
from collections.abc import Sequence
from pathlib import Path

from ..config import MIN_SIGNING_KEY_BYTES as MIN_KEY_BYTES
from ..config import parse_signing_keys as parse_keys

__all__ = [
    "DOMAIN",
    "KEY_FILENAME",
    "MIN_KEY_BYTES",
    "HeapSigner",
    "envelope_header",
    "generated_key",
    "parse_keys",
    "signed_message",
]

DOMAIN = b"mcp-v8 heap signature v1\x00"
_PREFIX = "hs1:"
KEY_FILENAME = "heap-signing.key"


def envelope_header(key: str, blob: bytes | memoryview) -> bytes | None:
    """The bytes of ``blob`` before its payload's digest when ``blob`` is what ``key`` names (the
    digest, then a payload whose SHA-256 it is; or, for a blob that is no envelope, the SHA-256
    of all of it: then b""); None when ``blob`` is not what ``key`` names."""
    digest = bytes.fromhex(key)
    view = memoryview(blob)
    at = bytes(view[:4096]).find(digest)  # an envelope's header is a few dozen bytes
    while at != -1:
        if hashlib.sha256(view[at + 32 :]).digest() == digest:
            return bytes(view[:at])
        at = bytes(view[:4096]).find(digest, at + 1)
    return b"" if hashlib.sha256(view).digest() == digest else None


def signed_message(key: str, header: bytes) -> bytes:
    """What a heap's HMAC is computed over: the prefix, the header's length and bytes, the digest."""
    return DOMAIN + len(header).to_bytes(4, "big") + header + bytes.fromhex(key)


class HeapSigner:
    """Signs and verifies heaps with ``keys`` (the first signs, any verifies). ``trust_unsigned``:
    a heap indexed without a signature (written before heaps were signed) is trusted and signed on
    its first use; only for a single node, whose data directory is its own."""

    def __init__(self, keys: Sequence[bytes], *, trust_unsigned: bool) -> None:
        if not keys:
            raise ValueError("a heap signer needs at least one key")
        for k in keys:
            if len(k) < MIN_KEY_BYTES:
                raise ValueError(f"a heap signing key must have at least {MIN_KEY_BYTES} bytes")
        self._keys = tuple(bytes(k) for k in keys)
        self.trust_unsigned = trust_unsigned

    def __repr__(self) -> str:  # never the keys
        return f"HeapSigner({len(self._keys)} keys, trust_unsigned={self.trust_unsigned})"

    def sign(self, key: str, header: bytes) -> str:
        return _PREFIX + hmac.new(self._keys[0], signed_message(key, header), hashlib.sha256).hexdigest()

    def verify(self, key: str, header: bytes, signature: str | None) -> bool:
        """Whether ``signature`` is one of this deployment's keys' over the heap."""
        return self.signed_by(key, header, signature) is not None

    def signed_by(self, key: str, header: bytes, signature: str | None) -> int | None:
        """Which of the keys made ``signature`` over the heap (0: the one that signs now); None
        when none did."""
        if signature is None or not signature.startswith(_PREFIX) or len(signature) != len(_PREFIX) + 64:
            return None
        message = signed_message(key, header)
        given = signature[len(_PREFIX) :].encode("ascii", "replace")
        found = None
        for i, k in enumerate(self._keys):  # every key, whichever matches: no timing says which
            if hmac.compare_digest(hmac.new(k, message, hashlib.sha256).hexdigest().encode(), given):
                found = i if found is None else found
        return found


def generated_key(data_dir: Path) -> bytes:
    """The key generated for a single node: ``<data_dir>/heap-signing.key``, made once (mode 0600,
    published whole with a hard link, so two processes starting at once agree on one) and read
    back on every later start."""
    path = data_dir / KEY_FILENAME
    if not path.exists():
        data_dir.mkdir(parents=True, exist_ok=True)
        tmp = data_dir / f".{KEY_FILENAME}.{secrets.token_hex(8)}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        try:
            with os.fdopen(fd, "w") as f:
                f.write(secrets.token_hex(32) + "\n")
                f.flush()
                os.fsync(f.fileno())
            try:
                os.link(tmp, path)
            except FileExistsError:
                pass  # another process made it first: its key is the key
            except OSError as e:  # no hard links here: a rename, unless a key appeared meanwhile
                if e.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.EXDEV):
                    raise
                if not path.exists():
                    os.rename(tmp, path)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
    st = os.stat(path, follow_symlinks=False)
    if st.st_mode & 0o077:
        raise ValueError(f"{path} is readable by others (mode {st.st_mode & 0o777:o}); chmod 600 it")
    keys = parse_keys(path.read_text("utf-8"), file=True)
    if not keys:
        raise ValueError(f"{path} holds no key")
    return keys[0]
