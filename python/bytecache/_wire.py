"""An entry as the remote tier stores it: a signed manifest, and the
entry's bytes in chunks that the manifest binds by their digests.

    manifest = MAGIC | public key (32) | signature (64) | signed
    signed   = body length (u32 LE) | body (JSON) | inline bytes

The signature is over DOMAIN, the namespace, the 16-byte key and `signed`,
so a manifest cannot be replayed under another key or namespace. The body
carries what `Store.put` takes besides the bytes (group, files, dirs,
record, compute seconds), the lengths of the payload and of each buffer,
and the digest of every chunk. A small entry's bytes are inline (one round
trip); a larger one's are in chunks of at most CHUNK bytes, each part
(payload, buffers) cut on its own. Nothing is parsed before the signature
is verified, and nothing is returned before every chunk matches its digest:
what the remote holds is never unpickled on its word.
"""

from __future__ import annotations

import json
import os
import struct

from bytecache import _bytecache

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from typing import Any

    from bytecache._trust import Trust

    # What `Store.put` takes after the key, as `Store.export` returns it:
    # (group, payload, buffers, files, dirs, record, compute_seconds).
    Entry = tuple[Any, ...]

MAGIC = b"BCREMOT1"
DOMAIN = b"bytecache remote entry v1\0"
_HEAD = len(MAGIC) + 32 + 64
INLINE = 256 << 10
CHUNK = 4 << 20


class Rejected(Exception):
    """A manifest or chunk that is not used: `kind` is "untrusted" (signed by
    a key not trusted; `signer` says which), "unsigned" (not a signed
    manifest of this format, or a bad signature) or "damaged" (signed, but
    its body or a chunk does not match) or "missing" (chunks gone: evicted
    by the server, or replaced by a newer upload)."""

    def __init__(self, kind: str, detail: str, signer: bytes = b"") -> None:
        super().__init__(detail)
        self.kind = kind
        self.signer = signer


class Header:
    """A verified manifest: what to fetch, and what to check it against."""

    __slots__ = ("group", "seconds", "files", "dirs", "record", "parts", "digests",
                 "upload", "inline")

    def __init__(self, body: dict[str, Any], inline: memoryview) -> None:
        self.group = bytes.fromhex(body["group"])
        self.seconds = float(body["seconds"])
        self.files = [(str(p), int(s), int(m), bytes.fromhex(d)) for p, s, m, d in body["files"]]
        self.dirs = [(str(p), bytes.fromhex(d)) for p, d in body["dirs"]]
        self.record = [(str(k), str(n), None if s is None else str(s), bytes.fromhex(d))
                       for k, n, s, d in body["record"]]
        self.parts = [int(n) for n in body["parts"]]
        self.digests = [bytes.fromhex(d) for d in body["digests"]]
        self.upload = str(body["upload"])
        self.inline = inline
        if len(self.group) != 16 or not self.parts or min(self.parts) < 0:
            raise ValueError("bad group or part lengths")
        expected = sum(-(-n // CHUNK) for n in self.parts) if self.digests else 0
        if len(self.digests) != expected or len(inline) != (0 if expected else sum(self.parts)):
            raise ValueError("chunks do not cover the parts")

    @property
    def chunks(self) -> int:
        return len(self.digests)


def _message(namespace: str, key: bytes, signed: bytes | memoryview) -> bytes:
    return b"".join((DOMAIN, namespace.encode(), b"\0", key, signed))


def pack(namespace: str, key: bytes, entry: Entry,
         trust: Trust) -> tuple[bytes, list[memoryview], str]:
    """(manifest, chunks, upload id) for an exported entry."""
    group, payload, buffers, files, dirs, record, seconds = entry
    parts = [memoryview(p).cast("B") for p in (payload, *buffers)]
    total = sum(p.nbytes for p in parts)
    chunks = [] if total <= INLINE else [
        p[i:i + CHUNK] for p in parts for i in range(0, p.nbytes, CHUNK)]
    upload = os.urandom(8).hex() if chunks else ""
    body = json.dumps({
        "group": bytes(group).hex(),
        "seconds": float(seconds),
        "files": [[p, s, m, bytes(d).hex()] for p, s, m, d in files],
        "dirs": [[p, bytes(d).hex()] for p, d in dirs],
        "record": [[k, n, s, bytes(d).hex()] for k, n, s, d in record],
        "parts": [p.nbytes for p in parts],
        "digests": [_bytecache.content_digest(c).hex() for c in chunks],
        "upload": upload,
    }, separators=(",", ":")).encode()
    inline = b"" if chunks else b"".join(parts)
    signed = struct.pack("<I", len(body)) + body + inline
    signature = trust.sign(_message(namespace, key, signed))
    return MAGIC + trust.public + signature + signed, chunks, upload


def unpack(namespace: str, key: bytes, manifest: bytes, trust: Trust) -> Header:
    """The verified header of `manifest` stored at `key`; Rejected otherwise."""
    view = memoryview(manifest)
    if len(view) < _HEAD + 4 or view[:len(MAGIC)] != MAGIC:
        raise Rejected("unsigned", "not a signed bytecache entry")
    public = bytes(view[len(MAGIC):len(MAGIC) + 32])
    if not trust.trusts(public):
        raise Rejected("untrusted", "signed by a key this user does not trust", public)
    signature = bytes(view[len(MAGIC) + 32:_HEAD])
    signed = view[_HEAD:]
    if not _bytecache.verify_signature(public, _message(namespace, key, signed), signature):
        raise Rejected("unsigned", "its signature does not match its content")
    try:
        (n,) = struct.unpack_from("<I", signed)
        body = json.loads(bytes(signed[4:4 + n]))
        return Header(body, signed[4 + n:])
    except (ValueError, TypeError, KeyError, struct.error) as e:
        raise Rejected("damaged", f"unreadable manifest ({e})") from None


def assemble(header: Header, chunks: Callable[[], Iterator[bytes]]) -> tuple[Any, list[Any]]:
    """(payload, buffers): from the inline bytes, or from `chunks()` (the
    chunks in order, each checked against its digest before it is used)."""
    if not header.chunks:
        out, at = [], 0
        for n in header.parts:
            out.append(header.inline[at:at + n])
            at += n
        return out[0], out[1:]
    parts = [bytearray(n) for n in header.parts]
    places = [(p, i) for p, n in zip(parts, header.parts, strict=True)
              for i in range(0, n, CHUNK)]
    received = 0
    for (part, at), digest, chunk in zip(places, header.digests, chunks(), strict=False):
        if len(chunk) != min(CHUNK, len(part) - at) or \
                _bytecache.content_digest(chunk) != digest:
            raise Rejected("damaged", f"chunk {received} does not match its signed digest")
        part[at:at + len(chunk)] = chunk
        received += 1
    if received != header.chunks:  # evicted, or replaced by a newer upload
        raise Rejected("missing", f"{header.chunks - received} chunks are gone")
    return parts[0], parts[1:]
