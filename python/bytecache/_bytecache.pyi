"""Typed stubs for the Rust extension `bytecache._bytecache`."""

from collections.abc import Sequence
from os import PathLike
from types import TracebackType
from typing import final

from typing_extensions import Buffer

__version__: str
__all__ = [
    "BytecacheError",
    "Claim",
    "CorruptCacheError",
    "StorageError",
    "Store",
    "UnhashableError",
    "UnsafeCacheDirError",
    "__version__",
    "call_key",
    "hash_file",
    "hash_value",
]

class BytecacheError(Exception): ...
class StorageError(BytecacheError): ...
class CorruptCacheError(StorageError): ...
class UnsafeCacheDirError(StorageError): ...
class UnhashableError(BytecacheError): ...

def hash_value(obj: object) -> bytes:
    """16-byte content hash; for a function, its fingerprint."""

def call_key(func: object, arguments: dict[str, object], ignore: Sequence[str]) -> bytes:
    """16-byte key of a call: function fingerprint plus bound-argument contents."""

def hash_file(path: str | PathLike[str]) -> bytes:
    """16-byte content hash of a file."""

@final
class Claim:
    @property
    def compute(self) -> bool: ...
    @property
    def state(self) -> str: ...
    def release(self) -> None: ...
    def __enter__(self) -> Claim: ...
    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool: ...

@final
class Store:
    def __new__(
        cls,
        path: str | PathLike[str],
        max_bytes: int | None = None,
        secret_path: str | PathLike[str] | None = None,
    ) -> Store: ...
    def get(self, key: bytes) -> tuple[memoryview, list[memoryview], bytes, float] | None: ...
    def put(
        self,
        key: bytes,
        group: bytes,
        payload: Buffer,
        buffers: Sequence[Buffer],
        deps: bytes,
        compute_seconds: float,
    ) -> None: ...
    def remove(self, key: bytes) -> bool: ...
    def clear(self, group: bytes | None = None) -> int: ...
    def stats(self) -> dict[str, int]: ...
    def entries(self) -> list[dict[str, object]]: ...
    def gc(self) -> int: ...
    def verify(self) -> dict[str, object]: ...
    def claim(self, key: bytes, timeout: float) -> Claim: ...
