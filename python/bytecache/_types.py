"""Types of the public API, for type checkers only (never imported at run
time: `typing` costs milliseconds at start-up)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ParamSpec, Protocol, TypedDict, TypeVar, overload

P = ParamSpec("P")
R = TypeVar("R")
R_co = TypeVar("R_co", covariant=True)


class CacheInfo(TypedDict):
    """`f.cache_info()`: this function's counters in this process."""

    hits: int
    misses: int
    stored: int
    uncacheable: int
    saved_seconds: float


class Memoized(Protocol[P, R_co]):
    """What `@bytecache.memoize` returns: the function, plus its cache."""

    @property
    def __wrapped__(self) -> Callable[P, R_co]: ...
    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R_co: ...
    def cache_info(self) -> CacheInfo: ...
    def cache_clear(self) -> int: ...
    @overload
    def __get__(self, instance: None, owner: type[Any] | None = None) -> Memoized[P, R_co]: ...
    @overload
    def __get__(self, instance: object, owner: type[Any] | None = None) -> BoundMemoized[R_co]: ...


class BoundMemoized(Protocol[R_co]):
    """A memoized method bound to an instance (its first parameter is taken)."""

    def __call__(self, *args: Any, **kwargs: Any) -> R_co: ...
    def cache_info(self) -> CacheInfo: ...
    def cache_clear(self) -> int: ...
