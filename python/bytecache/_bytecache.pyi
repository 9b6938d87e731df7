"""Typed stubs for the Rust extension `bytecache._bytecache`."""

from collections.abc import Callable, Sequence
from os import PathLike
from pathlib import Path
from types import FunctionType, TracebackType
from typing import Any, TypedDict, final, type_check_only

from typing_extensions import Buffer

__version__: str
__all__ = [
    "BytecacheError",
    "Claim",
    "CorruptCacheError",
    "Identity",
    "Memo",
    "Memoized",
    "StorageError",
    "Store",
    "UnhashableError",
    "UnsafeCacheDirError",
    "__version__",
    "_cpython_layout",
    "call_key",
    "content_digest",
    "fast_totals",
    "forget_all",
    "forget_classifications",
    "hash_file",
    "hash_value",
    "hook_adopt",
    "hook_install",
    "hook_installed",
    "hook_mechanism",
    "hook_reset_marks",
    "hook_uninstall",
    "is_disabled",
    "config_changed",
    "MANIFEST_MAGIC",
    "memoized",
    "modules_under",
    "native_identity",
    "observe_install",
    "observe_internal",
    "observe_is_internal",
    "OBSERVE_NATIVE_GETENV",
    "observe_native_begin",
    "observe_native_end",
    "observe_rng_state",
    "observe_unwatch_all",
    "observe_watch",
    "set_disabled",
    "shared_object",
    "unregister_all",
    "verify_signature",
]

class BytecacheError(Exception): ...
class StorageError(BytecacheError): ...
class CorruptCacheError(StorageError): ...
class UnsafeCacheDirError(StorageError): ...
class UnhashableError(BytecacheError):
    """A value a call's key needs cannot be hashed by content; the call then
    runs without memoizing. `str(e)` is the human message ("argument `df` →
    attribute `conn`: sqlite3.Connection cannot be hashed by content (...)").
    """

    kind: str
    """What could not be hashed: "open_file", "lock", "generator", "socket",
    "native_code" (not from the standard library, an installed distribution
    or a loaded extension module), "ctypes_pointer" (a ctypes function
    pointer other than a library's function as a `ctypes.CDLL` hands it
    out), "too_deep" (nested past the walk's depth
    or stack limit), "no_reduce" (no state to hash), "raised" (an exception
    was raised while hashing), "assigns_global" (a function assigns a
    global: a hit would skip that effect) or "internal" (a bytecache bug)."""
    detail: str
    """The type, native function or exception type involved ("" if none)."""
    location: tuple[tuple[str, str], ...]
    """Where, outermost first, as (step, name) pairs. Steps: "argument"
    (parameter name), "function" (qualified name of a function being
    fingerprinted), "global" / "closure" (a name read by the function
    before it), "defaults" (its default arguments), "attribute" (of an
    instance, or of the function / class / module before it), "class",
    "module", "item" (position), "key" (repr of a dict key), "element" (of a
    set). E.g. (("argument", "cfg"), ("attribute", "files"), ("key", "'log'"))
    or (("function", "load"), ("global", "CONN"))."""

def hash_value(obj: object) -> bytes:
    """16-byte content hash; for a function, its fingerprint."""

def call_key(
    func: object, arguments: dict[str, object], ignore: Sequence[str], record: bool = False
) -> Any:
    """16-byte key of a call: function fingerprint plus bound-argument contents.
    With record=True, (key, [(kind, name, display, digest hex), ...])."""

def modules_under(homes: dict[str, str]) -> tuple[list[str], list[str]]:
    """The loaded modules of the top-level packages named in `homes`: those
    running from no file or from one inside their package's directory, and
    the others."""

def forget_classifications() -> None:
    """Forget every module classification (the modules marked as the user's
    changed)."""

def hash_file(path: str | PathLike[str]) -> bytes:
    """16-byte content hash of a file."""

def native_identity(func: object) -> str | None:
    """How a native callable of the user's own code is keyed: None when by its
    own machine code, else why by its whole loaded object."""

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
    def bind(
        self, args: tuple[object, ...], kwargs: dict[str, object] | None = None
    ) -> dict[str, object] | None:
        """The call's arguments by parameter name, defaults applied; None when
        the call would raise (the function reports it)."""
    def recall(self, key: bytes) -> tuple[object] | None: ...
    def remember(self, key: bytes, value: object, seconds: float) -> bool: ...
    def set_source(self, store: Store, environ: dict[str, str]) -> None: ...
    def refused(self) -> None: ...
    def reused(self) -> None: ...
    @property
    def backoff(self) -> tuple[int, int]: ...
    def forget(self) -> None: ...
    def register(self) -> None:
        """Let the hook answer calls of this function from kept results."""
    @property
    def func(self) -> Any:
        """The function (held weakly), or None once it was collected."""
    @property
    def names(self) -> tuple[str, ...]: ...
    @property
    def fast_hits(self) -> tuple[int, float]: ...
    def reach(self) -> tuple[list[str], bool]:
        """Top-level packages of the libraries the fingerprint reaches, and
        whether its code names `argv`."""

@final
class Memoized:
    """What `@bytecache.memoize` returns for a function that is not async: a
    callable that binds, keys and answers kept results in Rust."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any: ...
    def __get__(self, instance: object, owner: object = None, /) -> Any: ...
    def cache_info(self) -> Any:
        """Hits, misses and time saved for this function in this process."""
    def cache_clear(self) -> Any:
        """Drop this function's stored results (all versions); how many."""
    @property
    def __bytecache_target__(self) -> Any: ...

def memoized(func: object, target: object, begin: object, off: bool = False) -> Memoized:
    """The memoized `func`; calls that no kept or plain stored result
    answers go to `begin(arguments, key, absent)`."""

def unregister_all() -> None: ...
def forget_all() -> None: ...
def fast_totals() -> tuple[int, float]: ...
def set_disabled(on: bool) -> None: ...
def is_disabled() -> bool: ...
def config_changed() -> None: ...

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

@type_check_only
class EntryInfo(TypedDict):
    """One entry as `Store.entries` lists it (times in seconds since the epoch)."""

    key: str
    group: str
    size: int
    compute_seconds: float
    created: float
    last_used: float
    hits: int

@type_check_only
class StoreStats(TypedDict):
    path: Path
    entries: int
    bytes: int
    max_bytes: int
    hits: int

@type_check_only
class VerifyReport(TypedDict):
    checked: int
    bad: list[tuple[str, str]]

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
    def export(
        self, key: bytes
    ) -> (
        tuple[
            bytes,
            memoryview,
            list[memoryview],
            list[tuple[str, int, int, bytes]],
            list[tuple[str, bytes]],
            list[tuple[str, str, str | None, bytes]],
            float,
        ]
        | None
    ):
        """(group, payload, buffers, files, dirs, record, compute_seconds) as
        `put` took them, or None; counts no hit."""
    def remove(self, key: bytes) -> bool: ...
    def clear(self, group: bytes | None = None) -> int: ...
    def stats(self) -> StoreStats: ...
    def entries(self) -> list[EntryInfo]: ...
    def gc(self) -> int: ...
    def verify(self) -> VerifyReport: ...
    def claim(self, key: bytes, timeout: float) -> Claim: ...
    @property
    def reset_reason(self) -> str | None:
        """Why this process found the store emptied when it opened it, or None."""
    @staticmethod
    def quarantined() -> int: ...

# --- signatures of the remote tier's entries (src/py/sign.rs) --------------

@final
class Identity:
    def __new__(cls, cache_dir: str | PathLike[str] | None = None) -> Identity:
        """This user's signing key, made on first use; never inside `cache_dir`."""
    @property
    def public(self) -> bytes:
        """The 32-byte Ed25519 public key."""
    @property
    def path(self) -> Path: ...
    def sign(self, message: bytes) -> bytes:
        """The 64-byte signature of `message`."""
    def trusted(self) -> bytes:
        """The text of the trusted-keys file (empty when there is none)."""
    def set_trusted(self, text: bytes) -> None: ...

def verify_signature(public: bytes, message: bytes, signature: bytes) -> bool: ...
def content_digest(data: Buffer) -> bytes:
    """The 32-byte digest binding a chunk to a signed manifest."""

# --- call interception (src/py/hook.rs; used by bytecache._auto) -----------

def hook_install(
    should_mark: Callable[[FunctionType], object],
    on_call: Callable[[FunctionType, tuple[object, ...]], object],
    on_return: Callable[[object, list[object]], object],
) -> None:
    """Start intercepting calls with three callbacks (replaces earlier ones).

    `on_call` returns None (run normally), an exact 1-tuple `(value,)` (hit:
    return value without running the body) or a token (miss: run, then
    `on_return(token, box)` if the call returned, `box` a one-element list
    holding the hook's only reference to the result). Raises RuntimeError on
    interpreters where calls cannot be intercepted."""

def hook_uninstall() -> None:
    """Remove the callbacks: restore the previous eval function (3.11) or every
    replaced vectorcall (3.12+)."""

def hook_installed() -> bool:
    """True while callbacks are installed."""

def hook_reset_marks() -> None:
    """Forget cached per-code decisions; `should_mark` is asked again."""

def observe_install(var: object, handler: Callable[..., object]) -> None:
    """Set the context variable marking observed contexts and the handler
    `handler(recorders, tag, self, args, kwargs, result, error)`."""

def observe_watch(func: object, tag: object, before: bool = False) -> str | None:
    """Watch a builtin function or method descriptor; None when watched,
    else why not."""

def observe_unwatch_all() -> None: ...
def observe_internal(on: bool) -> None: ...
def observe_is_internal() -> bool: ...
OBSERVE_NATIVE_GETENV: int
MANIFEST_MAGIC: bytes
"""The flags of a getenv logged by `observe_native_end` (its path is the name)."""

def observe_native_begin() -> int:
    """Begins observing files native code opens; where its log starts."""

def observe_native_end(
    start: int,
) -> tuple[list[tuple[bytes, int, tuple[int, int, int] | None]], bool]:
    """What native code opened since `start`, and whether that is all."""

def observe_rng_state(obj: object, kind: str) -> bytes:
    """Raw state of a `_random.Random` ("random") or MT19937 ("mt19937")."""

def shared_object(
    boxed: list[object], opaque: tuple[type, ...], immutable: tuple[type, ...]
) -> tuple[object] | str | bool | None:
    """(obj,): an object in boxed[0]'s graph also referenced from outside it;
    a str: a string of the result showing a memory address; None: neither;
    False: too big to tell."""

def hook_mechanism() -> str:
    """"frame" (a PEP 523 hook; 3.11) or "vectorcall" (per-function; 3.12+)."""

def _cpython_layout() -> list[tuple[str, int]]:
    """Every private CPython offset this build assumes (for the layout test)."""

def hook_adopt(func: object) -> bool:
    """Intercept `func`, which existed before `hook_install`, when it is marked
    (vectorcall mechanism; always False with the frame hook)."""
