"""Checks of the public API's arguments, done once where a value enters.

A value outside its allowed range raises ValueError naming the range; a value
of the wrong type raises TypeError. Each check returns the normalized value.
"""

from __future__ import annotations

import math
import os

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable

# The store counts bytes in a u64.
_MAX_BYTES = 2**64 - 1


def seconds(name: str, value: object) -> float:
    """A duration: a finite real number >= 0."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number of seconds (>= 0), not {type(value).__name__}")
    if not (math.isfinite(value) and value >= 0):
        raise ValueError(f"{name} must be a finite number of seconds >= 0, got {value!r}")
    return float(value)


def byte_count(name: str, value: object) -> int | None:
    """None, or a size in bytes between 1 and 2**64 - 1."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(
            f"{name} must be an int (bytes, 1 .. 2**64 - 1), not {type(value).__name__}"
        )
    if not 1 <= value <= _MAX_BYTES:
        raise ValueError(f"{name} must be between 1 and 2**64 - 1 bytes, got {value}")
    return int(value)


def directory(name: str, value: object) -> str | None:
    """None, or a non-empty path (str or os.PathLike of str)."""
    if value is None:
        return None
    if not isinstance(value, (str, os.PathLike)):
        raise TypeError(f"{name} must be a path (str or os.PathLike), not {type(value).__name__}")
    path = os.fspath(value)
    if not isinstance(path, str):
        raise TypeError(f"{name} must be a str path, not {type(path).__name__}")
    if not path:
        raise ValueError(f"{name} must be a non-empty path")
    return path


def names(name: str, value: Iterable[str] | str | None, *, what: str) -> tuple[str, ...]:
    """A collection of strings (`what` says what they name); a single string
    is refused where it would silently be taken as its characters."""
    if value is None:
        return ()
    if isinstance(value, str):
        raise TypeError(f"{name} takes a tuple or list of {what}, not a string: use ({value!r},)")
    try:
        items = tuple(value)
    except TypeError:
        raise TypeError(
            f"{name} takes a tuple or list of {what}, not {type(value).__name__}"
        ) from None
    for item in items:
        if not isinstance(item, str):
            raise TypeError(f"{name} takes {what} as strings, got {type(item).__name__}")
        if not item:
            raise ValueError(f"{name} contains an empty name")
    return items


# The servers a remote tier can use (see `_remote`).
REMOTE_SCHEMES = ("redis://", "rediss://", "unix://")


def remote_url(name: str, value: object) -> str | None:
    """None, "" (no remote), or the URL of a server the remote tier supports."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a URL string, not {type(value).__name__}")
    url = value.strip()
    if url and not url.startswith(REMOTE_SCHEMES):
        raise ValueError(f"{name} must be a Redis URL (redis://host:6379/0, rediss://, "
                         f"unix://) or \"\" for none, got {value!r}")
    return url
