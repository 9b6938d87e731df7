"""Where the cache lives and the one store per directory."""

from __future__ import annotations

import _thread
import os
import sys

from bytecache import _bytecache, _validate

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

_lock = _thread.allocate_lock()
_configured: dict[str, Any] = {}
_stores: dict[str, _bytecache.Store] = {}
_warned: set[str] = set()


class BytecacheWarning(RuntimeWarning):
    """Memoization was skipped for a call; the call ran normally."""


# Frames in this package are never the "where" of a warning: the user's line is.
_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep


def warn_once(message: str, *, key: str | None = None) -> None:
    """One warning per distinct problem, never on the hit path, attributed to
    the first frame outside bytecache (the user's call or definition)."""
    k = key if key is not None else message
    with _lock:
        if k in _warned:
            return
        _warned.add(k)
    import warnings

    if sys.version_info >= (3, 12):
        warnings.warn(message, BytecacheWarning, skip_file_prefixes=(_PACKAGE_DIR,))
    else:
        warnings.warn(message, BytecacheWarning, stacklevel=_user_stacklevel())


def _user_stacklevel() -> int:
    """The `stacklevel` of the first frame outside this package, as seen from
    the function calling `warnings.warn` (which is level 1)."""
    frame = sys._getframe(1)
    level = 1
    while frame is not None and frame.f_code.co_filename.startswith(_PACKAGE_DIR):
        frame = frame.f_back  # type: ignore[assignment]
        level += 1
    return level


def configure(*, cache_dir: str | os.PathLike[str] | None = None,
              max_bytes: int | None = None) -> None:
    """Set the default cache directory and size bound for this process.

    Raises ValueError (TypeError for a value of the wrong type) for an empty
    path or a `max_bytes` outside 1 .. 2**64 - 1; nothing is changed then."""
    directory = _validate.directory("cache_dir", cache_dir)
    limit = _validate.byte_count("max_bytes", max_bytes)
    with _lock:
        if directory is not None:
            _configured["cache_dir"] = directory
        if limit is not None:
            _configured["max_bytes"] = limit


def cache_dir(explicit: str | os.PathLike[str] | None = None) -> str:
    """explicit > configure(cache_dir=) > $BYTECACHE_DIR > $XDG_CACHE_HOME/bytecache
    > ~/.cache/bytecache."""
    if explicit is not None:
        return os.fspath(explicit)
    configured = _configured.get("cache_dir")
    if configured is not None:
        return str(configured)
    env = os.environ.get("BYTECACHE_DIR")
    if env:
        return env
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = xdg if xdg else os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "bytecache")


def _check_dir(directory: str) -> None:
    """Create the cache directory 0700; refuse one another user could write
    (they could swap the store for one that runs code when unpickled)."""
    os.makedirs(directory, mode=0o700, exist_ok=True)
    st = os.stat(directory)
    if st.st_uid != os.geteuid() or st.st_mode & 0o022:
        raise _bytecache.UnsafeCacheDirError(
            f"{directory} is writable by other users or not owned by you; "
            "fix with: chmod 700 " + directory
        )


def store(directory: str) -> _bytecache.Store:
    """The open store of a cache directory (opened once per process); the
    store itself lives in its `store/` subdirectory."""
    key = directory
    s = _stores.get(key)
    if s is not None:
        return s
    reset = None
    with _lock:
        s = _stores.get(key)
        if s is None:
            _check_dir(directory)
            max_bytes = _configured.get("max_bytes")
            s = _bytecache.Store(os.path.join(directory, "store"), max_bytes=max_bytes)
            reset = s.reset_reason
            _stores[key] = s
    if reset:
        warn_once(f"bytecache {reset} (cache {directory}); starting an empty cache",
                  key="reset")
    return s


def open_stores() -> list[object]:
    return list(_stores.values())
