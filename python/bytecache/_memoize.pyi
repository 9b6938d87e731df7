from collections.abc import Callable
from os import PathLike
from typing import Any, TypeVar, overload

F = TypeVar("F", bound=Callable[..., Any])

@overload
def memoize(func: F, /) -> F: ...
@overload
def memoize(
    *,
    cache_dir: str | PathLike[str] | None = None,
    ignore: tuple[str, ...] | list[str] = (),
    min_seconds: float = 0.0,
) -> Callable[[F], F]: ...
def clear(func: Callable[..., Any] | None = None, *,
          cache_dir: str | PathLike[str] | None = None) -> int: ...
