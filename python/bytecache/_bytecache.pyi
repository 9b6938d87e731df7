"""Typed stubs for the Rust extension `bytecache._bytecache`."""

from collections.abc import Callable, Sequence
from os import PathLike
from types import FunctionType, TracebackType
from typing import Any, final

from typing_extensions import Buffer

__version__: str
__all__ = [
    "BytecacheError",
    "Claim",
    "CorruptCacheError",
    "Memo",
    "StorageError",
    "Store",
    "UnhashableError",
    "UnsafeCacheDirError",
    "__version__",
    "call_key",
    "fast_totals",
    "forget_all",
    "hash_file",
    "hash_value",
    "hook_install",
    "hook_installed",
    "hook_reset_marks",
    "hook_uninstall",
    "is_disabled",
    "set_disabled",
    "unregister_all",
]

class BytecacheError(Exception): ...
class StorageError(BytecacheError): ...
class CorruptCacheError(StorageError): ...
class UnsafeCacheDirError(StorageError): ...
class UnhashableError(BytecacheError): ...

def hash_value(obj: object) -> bytes:
    """16-byte content hash; for a function, its fingerprint."""

def call_key(
    func: object, arguments: dict[str, object], ignore: Sequence[str], record: bool = False
) -> Any:
    """16-byte key of a call: function fingerprint plus bound-argument contents.
    With record=True, (key, [(kind, name, display, digest hex), ...])."""

def hash_file(path: str | PathLike[str]) -> bytes:
    """16-byte content hash of a file."""

@final
class Memo:
    """One memoized function: its cached fingerprint plan and the small
    immutable results kept in this process."""

    def __new__(cls, func: object, ignore: Sequence[str] = ...) -> Memo: ...
    def key(
        self, arguments: dict[str, object], record: bool = False, before: bytes | None = None
    ) -> Any:
        """Like `call_key`, from the cached plan; `before`: the key computed
        before the call, whose modules not loaded then are keyed as not loaded."""
    def quick(
        self, args: tuple[object, ...], kwargs: dict[str, object] | None = None
    ) -> tuple[object] | bytes | None:
        """(value,) when this call's result is kept in this process; else its
        key when it was computed (for `begin`); None: bind and key in full."""
    def recall(self, key: bytes) -> tuple[object] | None: ...
    def remember(self, key: bytes, value: object, seconds: float) -> bool: ...
    def forget(self) -> None: ...
    def register(self) -> None:
        """Let the frame hook answer calls of this function from kept results."""
    @property
    def names(self) -> tuple[str, ...]: ...
    @property
    def fast_hits(self) -> tuple[int, float]: ...

def unregister_all() -> None: ...
def forget_all() -> None: ...
def fast_totals() -> tuple[int, float]: ...
def set_disabled(on: bool) -> None: ...
def is_disabled() -> bool: ...

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
    def get(
        self, key: bytes
    ) -> (
        tuple[
            memoryview,
            list[memoryview],
            list[tuple[str, int, int, bytes]],
            list[tuple[str, bytes]],
            float,
        ]
        | None
    ):
        """(payload, buffers, files, dirs, compute_seconds) or None."""
    def record(self, key: bytes) -> list[tuple[str, str, str | None, str]] | None:
        """The dependency record stored with `key`."""
    def put(
        self,
        key: bytes,
        group: bytes,
        payload: Buffer,
        buffers: Sequence[Buffer],
        files: Sequence[tuple[str, int, int, bytes]],
        dirs: Sequence[tuple[str, bytes]],
        record: Sequence[tuple[str, str, str | None, bytes]],
        compute_seconds: float,
    ) -> bool:
        """False when the entry is larger than max_bytes (not stored)."""
    def remove(self, key: bytes) -> bool: ...
    def clear(self, group: bytes | None = None) -> int: ...
    def stats(self) -> dict[str, int]: ...
    def entries(self) -> list[dict[str, object]]: ...
    def gc(self) -> int: ...
    def verify(self) -> dict[str, object]: ...
    def claim(self, key: bytes, timeout: float) -> Claim: ...
    @staticmethod
    def quarantined() -> int: ...

# --- PEP 523 frame hook (src/py/hook.rs; used by bytecache._auto) ----------

def hook_install(
    should_mark: Callable[[FunctionType], object],
    on_call: Callable[[FunctionType, tuple[object, ...]], object],
    on_return: Callable[[object, object], object],
) -> None:
    """Install the frame hook with three callbacks (replaces earlier ones).

    `on_call` returns None (run normally), an exact 1-tuple `(value,)` (hit:
    return value without running the body) or a token (miss: run, then
    `on_return(token, result)` if the call returned). Raises RuntimeError on
    interpreters the hook does not support."""

def hook_uninstall() -> None:
    """Remove the callbacks and restore the previous eval function."""

def hook_installed() -> bool:
    """True while callbacks are installed."""

def hook_reset_marks() -> None:
    """Forget cached per-code decisions; `should_mark` is asked again."""
