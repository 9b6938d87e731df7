"""Whose entries the remote tier uses: this user's Ed25519 signing key and
the public keys they trust.

The signing key is a per-user file outside the cache directory, made on
first use and located like the store's secret (`src/storage/userfile.rs`).
An entry fetched from a remote is used only when signed by a trusted key:
this user's own, one given to `configure(trusted_keys=...)` or in
``$BYTECACHE_TRUSTED_KEYS`` (separated by commas or spaces), or one listed
in the ``trusted-keys`` file beside the signing key (``python -m bytecache
trust KEY``). A key is written ``ed25519:`` followed by the 32 bytes in
base64.
"""

from __future__ import annotations

import base64
import binascii
import os

from bytecache import _bytecache

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable

PREFIX = "ed25519:"


def encode(public: bytes) -> str:
    return PREFIX + base64.b64encode(public).decode("ascii")


def decode(text: str) -> bytes:
    """The 32 bytes of a key written `ed25519:<base64>`; ValueError otherwise."""
    if not isinstance(text, str):
        raise TypeError(f"a public key is a string, not {type(text).__name__}")
    body = text.strip()
    if not body.startswith(PREFIX):
        raise ValueError(f"a public key looks like {PREFIX}<base64> "
                         f"(as `python -m bytecache keygen` prints it), got {text!r}")
    try:
        raw = base64.b64decode(body[len(PREFIX):], validate=True)
    except (binascii.Error, ValueError):
        raw = b""
    if len(raw) != 32:
        raise ValueError(f"{text!r} is not a 32-byte Ed25519 public key in base64")
    return raw


def decode_all(name: str, keys: Iterable[str] | str) -> tuple[bytes, ...]:
    """Keys given to `configure` or in the environment (`name` says which)."""
    items = keys.replace(",", " ").split() if isinstance(keys, str) else list(keys)
    try:
        return tuple(decode(k) for k in items)
    except ValueError as e:
        raise ValueError(f"{name}: {e}") from None


def listed(identity: _bytecache.Identity) -> list[tuple[bytes, str]]:
    """The keys of the trusted-keys file with their labels. A line is a key,
    optionally followed by a label; `#` starts a comment. A line that is not
    a key is skipped (it trusts nothing)."""
    out = []
    for line in identity.trusted().decode("utf-8", "replace").splitlines():
        words = line.split("#", 1)[0].split(None, 1)
        if not words:
            continue
        try:
            key = decode(words[0])
        except ValueError:
            continue
        out.append((key, words[1].strip() if len(words) > 1 else ""))
    return out


def set_listed(identity: _bytecache.Identity, keys: list[tuple[bytes, str]]) -> None:
    text = "".join(f"{encode(k)} {label}".rstrip() + "\n" for k, label in keys)
    identity.set_trusted(("# keys whose bytecache entries this user trusts\n" + text).encode())


class Trust:
    """The signing identity and the set of keys trusted, read once."""

    __slots__ = ("identity", "public", "keys")

    def __init__(self, identity: _bytecache.Identity, configured: Iterable[bytes]) -> None:
        self.identity = identity
        self.public = identity.public
        keys = {self.public, *configured, *(k for k, _ in listed(identity))}
        env = os.environ.get("BYTECACHE_TRUSTED_KEYS", "")
        if env.strip():
            keys.update(decode_all("BYTECACHE_TRUSTED_KEYS", env))
        self.keys = frozenset(keys)

    def sign(self, message: bytes) -> bytes:
        signature: bytes = self.identity.sign(message)
        return signature

    def trusts(self, public: bytes) -> bool:
        return public in self.keys
