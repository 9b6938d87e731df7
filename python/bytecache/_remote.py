"""The remote tier: a server a team or a cluster shares, behind the local
store, below the call protocol (`_core` sees one store; what a payload
means is none of this module's business).

* `get`: the local store, then the remote. A remote entry is used only when
  signed by a trusted key (`_trust`) and every chunk matches its signed
  digest (`_wire`); it is then written into the local store and served
  from there, so the next hit is local and zero-copy.
* `put`: stores locally, then queues the key for upload (a bounded queue,
  one background thread). The upload reads the entry back from the local
  store: what is sent is what was stored, whatever the caller does to its
  result afterwards. The queue is flushed at exit for at most
  FLUSH_SECONDS.
* `claim`: the local claim, then a lock on the remote with an expiry
  (renewed while held), so two machines missing on one call compute it
  once: the other waits, bounded by the same timeout, until the entry is
  there or the lock is gone (then it looks again: a result may live under
  a key derived from the call's). The lock is released after the entry's
  upload (same queue, in order).
* A remote that is down, slow or full changes nothing locally: every
  command is bounded by TIMEOUT, a failure warns once and the remote is
  left alone for COOLDOWN seconds; calls run and are stored locally.

Entries live in a namespace of the bytecache version, the interpreter and
the platform: keys are content-derived, so only results computed by the
same kind of interpreter on the same kind of platform are shared.
"""

from __future__ import annotations

import _thread
import os
import sys
import threading
import time

from bytecache import _bytecache, _wire
from bytecache._config import warn_once

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator
    from typing import Any, Protocol

    from bytecache._trust import Trust

    class Backend(Protocol):
        """What the remote tier needs from a server. Another backend (an
        S3-compatible object store: objects for manifests and chunks,
        conditional writes for locks) implements the same."""

        def manifest(self, key: bytes) -> bytes | None: ...
        def chunks(self, key: bytes, upload: str, count: int) -> Iterator[bytes]: ...
        def publish(self, key: bytes, group: bytes, upload: str, chunks: list[memoryview],
                    manifest: bytes) -> bool: ...
        def remove(self, key: bytes, upload: str = "") -> bool: ...
        def clear(self, group: bytes | None) -> int: ...
        def try_lock(self, key: bytes, token: str, ttl: float) -> str: ...
        def renew(self, locks: Iterable[tuple[bytes, str]], ttl: float) -> None: ...
        def unlock(self, key: bytes, token: str) -> None: ...
        def count_hits(self, n: int) -> None: ...
        def info(self) -> dict[str, Any]: ...

# Every command's bound, and how long a failed remote is left alone.
TIMEOUT = 3.0
COOLDOWN = 30.0
# Compute locks expire this long after their last renewal.
LOCK_TTL = 30.0
# Uploads waiting at most; more are dropped (they stay in the local store).
QUEUE_MAX = 256
# How long the exit waits for uploads still queued.
FLUSH_SECONDS = 10.0


class RemoteError(Exception):
    """A remote command failed: `kind` is "unavailable" (down, slow, not
    answering) or "refused" (it answered no: full, read-only)."""

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(detail)
        self.kind = kind
        self.detail = detail


def namespace() -> str:
    impl = sys.implementation.cache_tag or sys.implementation.name
    return f"bytecache:{_bytecache.__version__}:{impl}-{sys.platform}-{os.uname().machine}"


def shown(url: str) -> str:
    """`url` without its password."""
    scheme, sep, rest = url.partition("://")
    if "@" in rest.split("/", 1)[0]:
        rest = "***@" + rest.split("@", 1)[1]
    return scheme + sep + rest


class _Quiet:
    """Remote work is bytecache's own: not what a call being observed reads
    (`observe_internal` counts: True, then False, nests)."""

    __slots__ = ()

    def __enter__(self) -> None:
        _bytecache.observe_internal(True)

    def __exit__(self, *exc: object) -> None:
        _bytecache.observe_internal(False)


class Remote:
    """One remote server, shared by every cache directory of the process."""

    def __init__(self, url: str, backend: Backend, trust: Trust) -> None:
        self.url = url
        self.shown = shown(url)
        self.backend = backend
        self.trust = trust
        self.namespace = namespace()
        self.hits = self.misses = self.uploads = self.dropped = 0
        self._puts = 0  # uploads queued
        self._unsent_hits = 0  # remote hits not yet added to the server's count
        self._down_until = 0.0
        self._full_until = 0.0  # no uploads until then: the remote refused one
        self._cv = threading.Condition()  # reentrant
        self._queue: list[tuple[Any, ...]] = []
        self._busy = False
        self._worker: Any = None
        self._locks: dict[bytes, str] = {}
        self._keeper: Any = None
        self._later: list[tuple[str, str]] = []  # warnings from the background

    # --- failures -------------------------------------------------------------

    def _up(self) -> bool:
        return time.monotonic() >= self._down_until

    def usable(self) -> bool:
        """Whether to ask the remote now; warns what the background found."""
        while self._later:
            message, key = self._later.pop(0)
            warn_once(message, key=key)
        return self._up()

    def _failed(self, e: RemoteError, *, background: bool = False) -> None:
        if e.kind == "unavailable":
            self._down_until = time.monotonic() + COOLDOWN
            what = f"is unavailable ({e.detail}); calls run and are stored locally"
        else:
            self._full_until = time.monotonic() + COOLDOWN
            what = f"refused a write ({e.detail}); results are stored locally only"
        message = f"bytecache's remote cache {self.shown} {what}"
        key = f"remote:{e.kind}:{self.url}"
        if background:
            self._later.append((message, key))
        else:
            warn_once(message, key=key)

    def _rejected(self, e: _wire.Rejected) -> None:
        from bytecache import _trust

        if e.kind == "missing":
            return
        if e.kind == "untrusted":
            signer = _trust.encode(e.signer)
            warn_once(f"bytecache did not use an entry of the remote cache {self.shown} signed "
                      f"by {signer}, a key you do not trust; the call runs. To use that key's "
                      f"entries: python -m bytecache trust {signer}", key=f"untrusted:{signer}")
        else:
            warn_once(f"bytecache did not use an entry of the remote cache {self.shown}: "
                      f"{e}; the call runs", key=f"remote-{e.kind}:{self.url}")

    # --- reads ------------------------------------------------------------------

    def fetch(self, key: bytes) -> tuple[Any, ...] | None:
        """The verified entry at `key` as `Store.put` takes it, or None."""
        if not self.usable():
            return None
        header = None
        try:
            manifest = self.backend.manifest(key)
            if manifest is None:
                self.misses += 1
                return None
            header = _wire.unpack(self.namespace, key, manifest, self.trust)
            upload, count = header.upload, header.chunks
            payload, buffers = _wire.assemble(
                header, lambda: self.backend.chunks(key, upload, count))
        except RemoteError as e:
            self._failed(e)
            return None
        except _wire.Rejected as e:
            self.misses += 1
            self._rejected(e)
            if e.kind == "missing" and header is not None:
                self._enqueue(("drop", key, header.upload))
            return None
        except Exception as e:  # noqa: BLE001 - whatever the remote holds, the call runs
            self.misses += 1
            warn_once(f"bytecache could not read an entry of the remote cache {self.shown} "
                      f"({type(e).__name__}: {e}); the call runs", key=f"remote-read:{self.url}")
            return None
        with self._cv:
            self.hits += 1
            self._unsent_hits += 1  # sent with the next upload, or at exit
        return (header.group, payload, buffers, header.files, header.dirs, header.record,
                header.seconds)

    # --- compute locks ------------------------------------------------------------

    def lock(self, key: bytes, timeout: float) -> tuple[str, str]:
        """("acquired", token), or ("ready" | "timeout" | "off", ""): the
        entry appeared, another machine still computes it, or no remote."""
        if not self.usable():
            return "off", ""
        token = os.urandom(16).hex()
        deadline = time.monotonic() + max(0.0, timeout)
        nap = 0.005
        waited = False
        while True:
            try:
                state = self.backend.try_lock(key, token, LOCK_TTL)
                if state == "acquired" and waited:
                    # The other machine is done. Its result may be stored
                    # under a key derived from this one: look again (and
                    # compute, unclaimed, if it is not there).
                    self.backend.unlock(key, token)
                    return "ready", ""
            except RemoteError as e:
                self._failed(e)
                return "off", ""
            if state == "acquired":
                with self._cv:
                    self._locks[key] = token
                    self._start()
                return "acquired", token
            if state == "ready":
                return "ready", ""
            if state == "foreign":  # a stray lock would make every machine wait
                return "off", ""
            waited = True
            if time.monotonic() + nap > deadline:
                return "timeout", ""
            time.sleep(nap)
            nap = min(nap * 2, 0.2)

    def unlock_later(self, key: bytes, token: str) -> None:
        """Releases the lock once the uploads queued before it are done."""
        self._enqueue(("unlock", key, token))

    # --- the background thread ------------------------------------------------------

    def upload_later(self, local: _bytecache.Store, key: bytes) -> None:
        with self._cv:
            full = self._puts >= QUEUE_MAX
            if not full:
                self._puts += 1
                self._enqueue(("put", local, key))
        if full:
            self.dropped += 1
            warn_once(f"bytecache's uploads to {self.shown} fall behind; results beyond "
                      f"{QUEUE_MAX} waiting uploads are stored locally only",
                      key=f"remote-queue:{self.url}")

    def _enqueue(self, item: tuple[Any, ...]) -> None:
        with self._cv:
            self._queue.append(item)
            self._start()
            self._cv.notify_all()

    def _start(self) -> None:
        """Starts the worker (and the lock keeper) if not running (with `_cv`
        held); outside any call's observation, which threads inherit."""
        import contextvars

        if self._worker is None or not self._worker.is_alive():
            self._worker = threading.Thread(target=self._work, name="bytecache-upload",
                                            daemon=True)
            contextvars.Context().run(self._worker.start)
        if self._locks and self._keeper is None:
            self._keeper = threading.Thread(target=self._keep, name="bytecache-locks",
                                            daemon=True)
            contextvars.Context().run(self._keeper.start)

    def _work(self) -> None:
        _bytecache.observe_internal(True)
        while True:
            with self._cv:
                while not self._queue:
                    self._cv.wait()
                item = self._queue.pop(0)
                self._puts -= item[0] == "put"
                self._busy = True
            try:
                self._do(item)
            except RemoteError as e:
                self._failed(e, background=True)
            except Exception as e:  # noqa: BLE001 - the worker must outlive any entry
                self._later.append((f"bytecache could not upload a result to {self.shown} "
                                    f"({type(e).__name__}: {e})", f"remote-upload:{self.url}"))
            finally:
                with self._cv:
                    self._busy = False
                    self._cv.notify_all()

    def _do(self, item: tuple[Any, ...]) -> None:
        kind = item[0]
        self._send_hits()
        if kind == "unlock":
            with self._cv:
                if self._locks.get(item[1]) == item[2]:
                    del self._locks[item[1]]
            if self._up():
                self.backend.unlock(item[1], item[2])
        elif not self._up():
            return  # down: entries stay local, hits are not counted
        elif kind == "put":
            if time.monotonic() < self._full_until:
                return
            entry = item[1].export(item[2])
            if entry is None:  # evicted or removed meanwhile
                return
            manifest, chunks, upload = _wire.pack(self.namespace, item[2], entry, self.trust)
            if self.backend.publish(item[2], entry[0], upload, chunks, manifest):
                self.uploads += 1
            else:
                raise RemoteError("refused", "an upload's chunks expired before it was published")
        elif kind == "drop":
            self.backend.remove(item[1], item[2])

    def _send_hits(self) -> None:
        with self._cv:
            n, self._unsent_hits = self._unsent_hits, 0
        if n and self._up():
            self.backend.count_hits(n)

    def _keep(self) -> None:
        """Renews the locks held every third of their lifetime."""
        _bytecache.observe_internal(True)
        while True:
            time.sleep(LOCK_TTL / 3)
            with self._cv:
                held = list(self._locks.items())
                if not held:  # with the lock: `_start` sees None, or us renewing
                    self._keeper = None
                    return
            if self._up():
                try:
                    self.backend.renew(held, LOCK_TTL)
                except RemoteError as e:
                    self._failed(e, background=True)

    def flush(self, timeout: float) -> bool:
        """Waits up to `timeout` for the queue to empty; True when it did."""
        deadline = time.monotonic() + timeout
        with self._cv:
            while self._queue or self._busy:
                left = deadline - time.monotonic()
                if left <= 0 or self._worker is None or not self._worker.is_alive():
                    return False
                self._cv.wait(left)
        try:
            with _Quiet():
                self._send_hits()
        except RemoteError as e:
            self._failed(e, background=True)
        return True

    def after_fork(self) -> None:
        """In a forked child: the parent's threads and locks are not ours."""
        self._cv = threading.Condition()
        self._queue = []
        self._puts = 0
        self._busy = False
        self._worker = self._keeper = None
        self._locks = {}

    def stats(self) -> dict[str, Any]:
        return {"remote": self.shown, "remote_hits": self.hits, "remote_misses": self.misses,
                "remote_uploads": self.uploads}


class Claim:
    """`Store.claim`'s answer when a remote takes part (same interface)."""

    __slots__ = ("state", "_local", "_remote", "_key", "_token")

    def __init__(self, state: str, local: Any = None, remote: Remote | None = None,
                 key: bytes = b"", token: str = "") -> None:
        self.state = state
        self._local = local
        self._remote = remote
        self._key = key
        self._token = token

    @property
    def compute(self) -> bool:
        return self.state == "compute"

    def release(self) -> None:
        local, self._local = self._local, None
        if local is not None:
            local.release()
        remote, self._remote = self._remote, None
        if remote is not None and self._token:
            remote.unlock_later(self._key, self._token)

    def __enter__(self) -> Claim:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


class Tiered:
    """The local store with a remote behind it; the interface of `Store`
    (maintenance goes to the local store; `remove` and `clear` to both)."""

    def __init__(self, local: _bytecache.Store, remote: Remote) -> None:
        self.local = local
        self.remote = remote

    def get(self, key: bytes) -> Any:
        entry = self.local.get(key)
        if entry is not None:
            return entry
        with _Quiet():
            fetched = self.remote.fetch(key)
        if fetched is None:
            return None
        group, payload, buffers, files, dirs, record, seconds = fetched
        try:
            if self.local.put(key, group, payload, buffers, files, dirs, record, seconds):
                stored = self.local.get(key)
                if stored is not None:
                    return stored
        except Exception as e:  # noqa: BLE001 - a full disk: serve it from memory
            warn_once(f"bytecache could not store a remote result locally ({e})",
                      key=f"remote-local:{type(e).__name__}")
        return payload, buffers, files, dirs, seconds

    def put(self, key: bytes, group: bytes, payload: Any, buffers: Any, files: Any, dirs: Any,
            record: Any, compute_seconds: float) -> bool:
        stored = self.local.put(key, group, payload, buffers, files, dirs, record,
                                compute_seconds)
        if stored:
            with _Quiet():
                self.remote.upload_later(self.local, key)
        return stored

    def claim(self, key: bytes, timeout: float) -> Any:
        started = time.monotonic()
        local = self.local.claim(key, timeout)
        if not local.compute:
            return local
        with _Quiet():
            state, token = self.remote.lock(key, timeout - (time.monotonic() - started))
        if state in ("acquired", "off"):
            return Claim("compute", local, self.remote, key, token)
        local.release()
        return Claim(state)

    def remove(self, key: bytes) -> bool:
        removed = self.local.remove(key)
        with _Quiet():
            try:
                removed = self.remote.backend.remove(key) or removed
            except RemoteError as e:
                self.remote._failed(e)
        return removed

    def clear(self, group: bytes | None = None) -> int:
        """Entries removed from the local store; the remote's go too."""
        removed = self.local.clear(group)
        self.clear_remote(group)
        return removed

    def clear_remote(self, group: bytes | None) -> int | None:
        """Entries removed from the remote, None when it is unavailable."""
        with _Quiet():
            try:
                return self.remote.backend.clear(group)
            except RemoteError as e:
                self.remote._failed(e)
                return None

    def __getattr__(self, name: str) -> Any:
        # record, stats, entries, gc, verify, quarantined, reset_reason: local.
        return getattr(self.local, name)


# --- one Remote per URL per process ---------------------------------------------

_remotes: dict[tuple[str, tuple[bytes, ...]], Remote] = {}
_lock = _thread.allocate_lock()


def connect(url: str, cache_dir: str, trusted: tuple[bytes, ...]) -> Remote:
    """The process's Remote for `url` and the keys configured (made once).
    Raises ImportError without the `redis` package, StorageError when the
    signing key is unusable, ValueError for a malformed trusted key in the
    environment."""
    with _lock:
        remote = _remotes.get((url, trusted))
        if remote is not None:
            return remote
        from bytecache import _redis, _trust

        with _Quiet():
            trust = _trust.Trust(_bytecache.Identity(cache_dir), trusted)
        remote = Remote(url, _redis.RedisBackend(url, namespace(), TIMEOUT), trust)
        if not _remotes:
            _at_exit()
        _remotes[(url, trusted)] = remote
        return remote


def _at_exit() -> None:
    """Flush at exit: `atexit`, and multiprocessing's exit hooks (its child
    processes, Dask's workers among them, leave through `os._exit`)."""
    import atexit

    atexit.register(flush_all)
    if "multiprocessing" in sys.modules:
        from multiprocessing import util

        util.Finalize(None, flush_all, exitpriority=100)
    os.register_at_fork(after_in_child=_forked)


def flush_all(timeout: float = FLUSH_SECONDS) -> bool:
    """Waits (at most `timeout` in all) for every remote's queued uploads."""
    deadline = time.monotonic() + timeout
    done = True
    for remote in list(_remotes.values()):
        if not remote.flush(max(0.0, deadline - time.monotonic())):
            done = False
            warn_once(f"bytecache stopped waiting for uploads to {remote.shown} "
                      f"after {timeout:g} s; those results are stored locally only",
                      key=f"remote-flush:{remote.url}")
        remote.usable()  # what the background found
    return done


def _forked() -> None:
    global _lock
    _lock = _thread.allocate_lock()  # another thread of the parent may have held it
    for remote in _remotes.values():
        remote.after_fork()


def stats(url: str) -> dict[str, Any]:
    """This process's counters for the remote at `url`."""
    out: dict[str, Any] = {"remote": shown(url), "remote_hits": 0, "remote_misses": 0,
                           "remote_uploads": 0}
    for (u, _), remote in list(_remotes.items()):
        if u == url:
            for k, v in remote.stats().items():
                if not isinstance(v, str):
                    out[k] += v
    return out
