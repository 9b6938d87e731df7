"""Where the cache lives, the one store per directory, and the remote
tier behind it when one is configured (`_remote`)."""

from __future__ import annotations

import _thread
import os
import sys

from bytecache import _bytecache, _validate

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable
    from typing import Any, TypeAlias

    from bytecache._remote import Tiered

    Store: TypeAlias = "_bytecache.Store | Tiered"

_lock = _thread.allocate_lock()
_configured: dict[str, Any] = {}
_local: dict[str, _bytecache.Store] = {}
# What `store` returns per directory: the local store, or it with a remote.
_stores: dict[str, Store] = {}
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
              max_bytes: int | None = None, remote: str | None = None,
              trusted_keys: Iterable[str] | None = None) -> None:
    """Set the defaults of this process (None leaves a setting as it is).

      cache_dir:    where results live (see `cache_dir`).
      max_bytes:    the local store's size bound.
      remote:       a shared server behind the local store, as a URL
                    ("redis://host:6379/0"); "" turns it off. Default:
                    $BYTECACHE_REMOTE.
      trusted_keys: public keys ("ed25519:...", as `python -m bytecache
                    keygen` prints them) whose remote entries are used,
                    besides your own and those `python -m bytecache trust`
                    lists (replaces the keys given before).

    Raises ValueError (TypeError for a value of the wrong type) for an empty
    path, a `max_bytes` outside 1 .. 2**64 - 1, a URL of another kind or a
    malformed key; nothing is changed then."""
    directory = _validate.directory("cache_dir", cache_dir)
    limit = _validate.byte_count("max_bytes", max_bytes)
    url = _validate.remote_url("remote", remote)
    keys = None
    if trusted_keys is not None:
        from bytecache import _trust

        keys = _trust.decode_all("trusted_keys", _validate.names(
            "trusted_keys", trusted_keys, what="public keys"))
    with _lock:
        if directory is not None:
            _configured["cache_dir"] = directory
        if limit is not None:
            _configured["max_bytes"] = limit
        if url is not None:
            _configured["remote"] = url
        if keys is not None:
            _configured["trusted_keys"] = keys
        if url is not None or keys is not None:
            _stores.clear()  # the local stores stay open
        _bytecache.config_changed()  # memos resolve their store anew


def remote_url() -> str:
    """configure(remote=) > $BYTECACHE_REMOTE (read once); "" for none."""
    url = _configured.get("remote")
    if url is None:
        _bytecache.observe_internal(True)  # not a read of the call being observed
        try:
            env = os.environ.get("BYTECACHE_REMOTE", "")
        finally:
            _bytecache.observe_internal(False)
        try:
            url = _validate.remote_url("BYTECACHE_REMOTE", env) or ""
        except ValueError as e:
            warn_once(f"bytecache ignores {e}; results are stored locally only",
                      key="remote-env")
            url = ""
        _configured["remote"] = url
    return str(url)


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


def trusted(st: os.stat_result) -> bool:
    """Whether a cache directory with this `stat` is ours alone: owned by
    us and writable by no one else (another user could swap the store for
    one that runs code when unpickled)."""
    return st.st_uid == os.geteuid() and not st.st_mode & 0o022


def _check_dir(directory: str) -> None:
    """Create the cache directory 0700; refuse one that is not `trusted`."""
    try:
        st = os.stat(directory)  # it exists but the first time: no `mkdir` then
    except FileNotFoundError:
        os.makedirs(directory, mode=0o700, exist_ok=True)
        st = os.stat(directory)
    if not trusted(st):
        raise _bytecache.UnsafeCacheDirError(
            f"{directory} is writable by other users or not owned by you; "
            "fix with: chmod 700 " + directory
        )


def store(directory: str) -> Store:
    """The open store of a cache directory (opened once per process), with
    the remote tier behind it when one is configured; the local store lives
    in the directory's `store/` subdirectory."""
    s = _stores.get(directory)
    if s is not None:
        return s
    local = local_store(directory)
    url = remote_url()
    s = _with_remote(directory, local, url) if url else local
    _stores[directory] = s
    return s


def local_store(directory: str) -> _bytecache.Store:
    """The local store of a cache directory (opened once per process)."""
    s = _local.get(directory)
    if s is not None:
        return s
    reset = None
    with _lock:
        s = _local.get(directory)
        if s is None:
            _check_dir(directory)
            max_bytes = _configured.get("max_bytes")
            s = _bytecache.Store(os.path.join(directory, "store"), max_bytes=max_bytes)
            reset = s.reset_reason
            _local[directory] = s
            _noticed["damage"] = s.quarantined()  # what opening found is told below
    if reset:
        warn_once(f"bytecache {reset} (cache {directory}); starting an empty cache",
                  key="reset")
    return s


# Damaged records moved aside that a warning told of (see `notice_damage`).
_noticed = {"damage": 0}


def notice_damage(store: _bytecache.Store) -> None:
    """Warns (once) when a read found a record damaged, here or by a memo
    in Rust (`identity::source`): it was moved to quarantine/ and the call
    recomputes."""
    damaged = store.quarantined()
    if damaged != _noticed["damage"]:
        _noticed["damage"] = damaged
        warn_once(f"bytecache found damaged cache files in {store.stats()['path']} and moved "
                  "them to its quarantine/ directory; the affected calls are recomputed",
                  key="damaged")


def _with_remote(directory: str, local: _bytecache.Store, url: str) -> Store:
    """`local` with the remote at `url` behind it, or `local` alone (and one
    warning) when the remote cannot be used from here."""
    from bytecache import _remote

    try:
        remote = _remote.connect(url, directory, _configured.get("trusted_keys", ()))
    except ImportError:
        warn_once(f"bytecache needs the `redis` package for the remote cache {_remote.shown(url)} "
                  "(pip install 'bytecache[remote]'); results are stored locally only",
                  key="remote-import")
        return local
    except Exception as e:  # noqa: BLE001 - an unusable signing key or trust list
        warn_once(f"bytecache cannot use the remote cache {_remote.shown(url)} ({e}); "
                  "results are stored locally only", key=f"remote-open:{url}")
        return local
    return _remote.Tiered(local, remote)


def open_stores() -> list[object]:
    return list(_local.values())
