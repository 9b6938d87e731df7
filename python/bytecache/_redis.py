"""The Redis backend of the remote tier (the `redis` package; see
`_remote.Backend` for the interface).

Names, under the namespace `ns` (see `_remote.namespace`), keys in hex:

    {ns}:e:{key}          hash: `m` the signed manifest, `u` its upload id
    {ns}:c:{key}:{upload} hash: chunk number -> bytes; expires until published
    {ns}:g:{group}        set of the keys stored for a function group
    {ns}:l:{key}          a compute lock: a random token, with an expiry
    {ns}:hits             remote hits, all machines

An upload writes its chunks into a hash of its own that expires unless
published; publishing is one script (atomic on the server) that checks
every chunk is there, makes them permanent, points the manifest at them and
drops the chunks it replaces. A reader thus sees the old entry or the new,
never a part; an upload cut short (client or server killed) leaves chunks
that no manifest names and that expire.
"""

from __future__ import annotations

from functools import partial

import redis
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.retry import Retry

from bytecache._remote import RemoteError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator
    from typing import Any, TypeVar

    T = TypeVar("T")

# Chunks sent or fetched per round trip (each at most `_wire.CHUNK`).
WINDOW = 4
# An upload's chunks expire this long after its last write unless published.
PARTIAL_TTL_MS = 600_000

_PUBLISH = """
local n = tonumber(ARGV[3])
if n > 0 then
  if redis.call('HLEN', KEYS[2]) ~= n then return 0 end
  redis.call('PERSIST', KEYS[2])
end
local old = redis.call('HGET', KEYS[1], 'u')
redis.call('HSET', KEYS[1], 'm', ARGV[1], 'u', ARGV[2])
redis.call('SADD', KEYS[3], ARGV[4])
if old and old ~= '' and old ~= ARGV[2] then redis.call('DEL', ARGV[5] .. old) end
return 1
"""

# Removes an entry and its chunks; with ARGV[2], only if its upload id is that.
_REMOVE = """
local u = redis.call('HGET', KEYS[1], 'u')
if not u or (ARGV[2] ~= '' and u ~= ARGV[2]) then return 0 end
redis.call('DEL', KEYS[1])
if u ~= '' then redis.call('DEL', ARGV[1] .. u) end
return 1
"""

_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""

_UNLOCK = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


def _call(f: Callable[[], T]) -> T:
    """`f()` with the client's errors as `RemoteError`s: refused when the
    server answered no (full, read-only), unavailable otherwise."""
    try:
        return f()
    except ResponseError as e:
        raise RemoteError("refused", str(e)) from None
    except (RedisConnectionError, RedisTimeoutError, OSError) as e:
        raise RemoteError("unavailable", str(e) or type(e).__name__) from None
    except RedisError as e:
        raise RemoteError("unavailable", str(e) or type(e).__name__) from None


class RedisBackend:
    def __init__(self, url: str, namespace: str, timeout: float) -> None:
        # One attempt per command, each bounded: a slow or dead server costs
        # one timeout, then `_remote` stops asking for a while. No client
        # name sent on connecting (finding the client's version costs ~7 ms).
        self._r = redis.Redis.from_url(
            url, socket_timeout=timeout, socket_connect_timeout=timeout,
            retry=Retry(NoBackoff(), 0), retry_on_timeout=False, health_check_interval=0,
            lib_name=None, lib_version=None)
        self._ns = namespace
        self._publish = self._r.register_script(_PUBLISH)
        self._remove = self._r.register_script(_REMOVE)
        self._renew = self._r.register_script(_RENEW)
        self._unlock = self._r.register_script(_UNLOCK)

    def _name(self, kind: str, key: bytes) -> str:
        return f"{self._ns}:{kind}:{key.hex()}"

    def _chunks_of(self, key: bytes) -> str:
        return self._name("c", key) + ":"

    # --- entries ------------------------------------------------------------

    def manifest(self, key: bytes) -> bytes | None:
        found: Any = _call(lambda: self._r.hget(self._name("e", key), "m"))
        return found  # type: ignore[no-any-return]

    def chunks(self, key: bytes, upload: str, count: int) -> Iterator[bytes]:
        name = self._chunks_of(key) + upload
        for start in range(0, count, WINDOW):
            pipe = self._r.pipeline(transaction=False)
            for i in range(start, min(start + WINDOW, count)):
                pipe.hget(name, str(i))
            got: list[Any] = _call(pipe.execute)
            for chunk in got:
                if chunk is None:
                    return
                yield chunk

    def publish(self, key: bytes, group: bytes, upload: str, chunks: list[memoryview],
                manifest: bytes) -> bool:
        name = self._chunks_of(key) + upload
        for start in range(0, len(chunks), WINDOW):
            pipe = self._r.pipeline(transaction=False)
            for i in range(start, min(start + WINDOW, len(chunks))):
                pipe.hset(name, str(i), chunks[i])
            pipe.pexpire(name, PARTIAL_TTL_MS)
            _call(pipe.execute)
        keys = [self._name("e", key), name, self._name("g", group)]
        args: list[bytes | str | int] = [manifest, upload, len(chunks), key.hex(),
                                         self._chunks_of(key)]
        return bool(_call(lambda: self._publish(keys=keys, args=args)))

    def remove(self, key: bytes, upload: str = "") -> bool:
        keys = [self._name("e", key)]
        return bool(_call(lambda: self._remove(keys=keys, args=[self._chunks_of(key), upload])))

    def clear(self, group: bytes | None) -> int:
        if group is not None:
            members: Any = _call(lambda: self._r.smembers(self._name("g", group)))
            removed = sum(self.remove(bytes.fromhex(k.decode())) for k in members)
            _call(lambda: self._r.delete(self._name("g", group)))
            return removed
        names: list[bytes] = _call(lambda: list(self._r.scan_iter(f"{self._ns}:*", count=1000)))
        for i in range(0, len(names), 1000):
            _call(partial(self._r.unlink, *names[i:i + 1000]))
        return sum(n.startswith(f"{self._ns}:e:".encode()) for n in names)

    # --- compute locks ------------------------------------------------------

    def try_lock(self, key: bytes, token: str, ttl: float) -> str:
        """"acquired", "held" (by someone else), "ready" (the entry is
        there) or "foreign": held, but not as bytecache holds a lock (no
        expiry, or a longer one than `ttl`): not worth waiting for."""
        lock = self._name("l", key)
        pipe = self._r.pipeline(transaction=False)
        pipe.exists(self._name("e", key))
        pipe.set(lock, token, nx=True, px=int(ttl * 1000))
        pipe.pttl(lock)
        exists, acquired, left = _call(pipe.execute)
        if exists:
            if acquired:
                self.unlock(key, token)
            return "ready"
        if acquired:
            return "acquired"
        return "foreign" if left == -1 or left > ttl * 1000 else "held"

    def renew(self, locks: Iterable[tuple[bytes, str]], ttl: float) -> None:
        pipe = self._r.pipeline(transaction=False)
        for key, token in locks:
            self._renew(keys=[self._name("l", key)], args=[token, int(ttl * 1000)], client=pipe)
        _call(pipe.execute)

    def unlock(self, key: bytes, token: str) -> None:
        _call(lambda: self._unlock(keys=[self._name("l", key)], args=[token]))

    # --- counters -----------------------------------------------------------

    def count_hits(self, n: int) -> None:
        _call(lambda: self._r.incrby(f"{self._ns}:hits", n))

    def info(self) -> dict[str, Any]:
        """Entries and hits of this namespace, and the server's memory."""
        entries = sum(1 for _ in _call(
            lambda: list(self._r.scan_iter(f"{self._ns}:e:*", count=1000))))
        hits: Any = _call(lambda: self._r.get(f"{self._ns}:hits"))
        memory: Any = _call(lambda: self._r.info("memory"))
        return {"entries": entries, "hits": int(hits or 0),
                "used_memory": int(memory.get("used_memory", 0)),
                "max_memory": int(memory.get("maxmemory", 0))}
