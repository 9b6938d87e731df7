"""Tests of bytecache._bytecache.Store through real interpreters (no mocks)."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from bytecache import _bytecache as bc

GROUP = b"g" * 16


def key(i: int) -> bytes:
    return i.to_bytes(16, "little")


@pytest.fixture
def paths(tmp_path: Path) -> tuple[str, str]:
    return str(tmp_path / "store"), str(tmp_path / "secret")


def run_py(code: str, *args: str, timeout: float = 120) -> str:
    out = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert out.returncode == 0, out.stderr
    return out.stdout


def put_obj(store: bc.Store, k: bytes, obj: object, seconds: float = 0.5) -> None:
    bufs: list[pickle.PickleBuffer] = []
    payload = pickle.dumps(obj, protocol=5, buffer_callback=bufs.append)
    store.put(k, GROUP, payload, [b.raw() for b in bufs], [], [], [], seconds)


def get_obj(store: bc.Store, k: bytes) -> object:
    got = store.get(k)
    assert got is not None
    payload, buffers, _files, _dirs, _secs = got
    return pickle.loads(payload, buffers=buffers)


def test_round_trip(paths: tuple[str, str]) -> None:
    s = bc.Store(paths[0], secret_path=paths[1])
    assert s.get(key(1)) is None
    files = [("/data/a.csv", 10, 123, b"d" * 16)]
    dirs = [("/data", b"e" * 16)]
    record = [("function", "m.f", "m.py", b"f" * 16), ("global", "m.K", None, b"k" * 16)]
    s.put(key(1), GROUP, b"payload", [], files, dirs, record, 1.25)
    payload, buffers, got_files, got_dirs, secs = s.get(key(1))
    assert bytes(payload) == b"payload" and payload.readonly
    assert buffers == [] and secs == 1.25
    assert got_files == files and got_dirs == dirs
    assert s.record(key(1)) == [(k, n, d, g.hex()) for k, n, d, g in record]
    assert s.record(key(99)) is None
    with pytest.raises(ValueError):
        s.put(key(4), GROUP, b"p", [], [("/x", 1, 1, b"short")], [], [], 0.0)
    put_obj(s, key(2), {"a": [1, 2, 3]})
    assert get_obj(s, key(2)) == {"a": [1, 2, 3]}
    s.put(key(3), b"h" * 16, memoryview(b"other group"), [bytearray(b"xy")], [], [], [], 0.0)
    assert [bytes(b) for b in s.get(key(3))[1]] == [b"xy"]
    st = s.stats()
    assert st["entries"] == 3 and st["hits"] >= 3 and st["max_bytes"] == 10 << 30
    ents = {e["key"]: e for e in s.entries()}
    assert ents[key(1).hex()]["compute_seconds"] == 1.25
    assert ents[key(1).hex()]["group"] == GROUP.hex()
    assert s.clear(b"h" * 16) == 1
    assert s.remove(key(1)) is True and s.remove(key(1)) is False
    assert s.verify() == {"checked": 1, "bad": []}
    assert s.clear() == 1 and s.stats()["entries"] == 0
    with pytest.raises(ValueError):
        s.get(b"short")


MiB = 1 << 20


def test_100mib_numpy_zero_copy_and_private(paths: tuple[str, str]) -> None:
    s = bc.Store(paths[0], secret_path=paths[1])
    arr = np.arange(100 * MiB // 8, dtype=np.float64)
    put_obj(s, key(7), arr, seconds=3.0)
    got = get_obj(s, key(7))
    assert isinstance(got, np.ndarray) and got.flags.writeable
    assert got.__array_interface__["data"][0] % 4096 == 0  # straight on the mapping
    assert got[12345] == 12345.0 and got[-1] == arr[-1]
    got[:1000] = -1.0
    again = get_obj(s, key(7))
    assert again[0] == 0.0 and again[999] == 999.0, "stored copy untouched"
    assert got[0] == -1.0
    s.remove(key(7))
    assert got[5000] == 5000.0 and again[-1] == arr[-1], "views outlive removal"

    put_obj(s, key(8), arr)
    out = run_py(
        """
        import json, pickle, sys, time
        import numpy  # the caller's process has numpy loaded; time only the cache
        from bytecache import _bytecache as bc
        s = bc.Store(sys.argv[1], secret_path=sys.argv[2])
        t0 = time.perf_counter()
        payload, buffers, files, dirs, secs = s.get((8).to_bytes(16, "little"))
        a = pickle.loads(payload, buffers=buffers)
        dt = time.perf_counter() - t0
        a[0] = 42.0
        fresh = s.get((8).to_bytes(16, "little"))
        b = pickle.loads(fresh[0], buffers=fresh[1])
        print(json.dumps({"ms": dt * 1e3, "n": a.size, "last": float(a[-1]),
                          "w": bool(a.flags.writeable), "fresh0": float(b[0])}))
        """,
        *paths,
    )
    r = json.loads(out)
    assert r["n"] == arr.size and r["last"] == arr[-1] and r["w"] and r["fresh0"] == 0.0
    # A copy of 100 MiB alone takes tens of ms; zero-copy takes well under.
    assert r["ms"] < 10, r


def test_corrupt_file_is_miss_and_quarantined(paths: tuple[str, str]) -> None:
    s = bc.Store(paths[0], secret_path=paths[1])
    s.put(key(1), GROUP, b"precious payload", [], [], [], [], 0.1)
    s.put(key(2), GROUP, b"other", [], [], [], [], 0.1)
    data = Path(paths[0]) / "data"
    for f in data.iterdir():
        raw = bytearray(f.read_bytes())
        i = raw.find(b"precious")
        if i >= 0:
            raw[i] ^= 0xFF
            f.write_bytes(raw)
    # Another opening verifies every record it reads. (This one made these
    # records, so it reads them as verified: see the store's security policy.)
    s = bc.Store(paths[0], secret_path=paths[1])
    assert s.get(key(1)) is None
    assert bytes(s.get(key(2))[0]) == b"other"
    q = list((Path(paths[0]) / "quarantine").iterdir())
    assert any(b"precious" in p.read_bytes().replace(bytes([ord("p") ^ 0xFF]), b"p") for p in q)
    assert s.stats()["entries"] == 1
    s.put(key(1), GROUP, b"precious payload", [], [], [], [], 0.1)
    assert bytes(s.get(key(1))[0]) == b"precious payload"


def test_other_writable_dir_refused(tmp_path: Path) -> None:
    d = tmp_path / "shared"
    d.mkdir()
    d.chmod(0o777)
    with pytest.raises(bc.UnsafeCacheDirError):
        bc.Store(str(d), secret_path=str(tmp_path / "secret"))
    assert issubclass(bc.UnsafeCacheDirError, bc.StorageError)
    d.chmod(0o700)
    bc.Store(str(d), secret_path=str(tmp_path / "secret"))
    assert (tmp_path / "secret").stat().st_mode & 0o777 == 0o600


WORKER = """
import json, sys, time
from bytecache import _bytecache as bc
store_path, secret, log = sys.argv[1:4]
s = bc.Store(store_path, secret_path=secret)
def value(i):
    return (b"value-%d-" % i) * 3
computed, wrong, timeouts = [], 0, 0
order = range(1000) if sys.argv[4] == "fwd" else range(999, -1, -1)
for rnd in range(2):
    for i in order:
        k = i.to_bytes(16, "little")
        got = s.get(k)
        if got is None:
            with s.claim(k, 30.0) as c:
                if c.compute:
                    computed.append(i)
                    time.sleep(0.0002)
                    s.put(k, b"g" * 16, value(i), [], [], [], [], 0.0002)
                elif c.state == "timeout":
                    timeouts += 1
            got = s.get(k)
        if got is None or bytes(got[0]) != value(i):
            wrong += 1
json.dump({"computed": computed, "wrong": wrong, "timeouts": timeouts}, open(log, "w"))
"""


def test_two_processes_contend_via_claim(paths: tuple[str, str], tmp_path: Path) -> None:
    bc.Store(paths[0], secret_path=paths[1])  # create dir and secret once
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, *paths, str(tmp_path / f"log{n}"), direction]
        )
        for n, direction in enumerate(["fwd", "fwd"])
    ]
    for p in procs:
        assert p.wait(timeout=300) == 0
    logs = [json.loads((tmp_path / f"log{n}").read_text()) for n in range(2)]
    computed = logs[0]["computed"] + logs[1]["computed"]
    assert sum(log["wrong"] for log in logs) == 0
    assert sum(log["timeouts"] for log in logs) == 0
    assert sorted(computed) == list(range(1000)), "each key computed exactly once"
    s = bc.Store(paths[0], secret_path=paths[1])
    for i in range(1000):
        assert bytes(s.get(key(i))[0]) == (b"value-%d-" % i) * 3
    assert s.verify()["bad"] == []


def test_cli(paths: tuple[str, str], tmp_path: Path) -> None:
    env = {**os.environ, "BYTECACHE_DIR": str(tmp_path / "c"), "XDG_CONFIG_HOME": str(tmp_path)}
    code = (
        "from bytecache import _bytecache as bc; import sys; "
        "bc.Store(sys.argv[1]).put(bytes(16), bytes(16), b'x', [], [], [], [], 1.0)"
    )
    subprocess.run([sys.executable, "-c", code, str(tmp_path / "c" / "store")], env=env, check=True)

    def cli(*a: str) -> str:
        r = subprocess.run(
            [sys.executable, "-m", "bytecache", *a], env=env, capture_output=True, text=True
        )
        assert r.returncode == 0, r.stderr
        return r.stdout

    assert "entries:  1" in cli("stats")
    assert "0" * 12 in cli("ls")
    assert "checked 1 entries, 0 bad" in cli("verify")
    assert "evicted 0" in cli("gc")
    assert "removed 1" in cli("clear", "--group", "0" * 32)


def test_large_buffer_corruption_found_by_verify(paths: tuple[str, str]) -> None:
    # verify() hashes every buffer, whatever marks its file carries (a get
    # trusts a mark; see src/storage/stamp.rs), and quarantines the entry.
    s = bc.Store(paths[0], secret_path=paths[1])
    put_obj(s, key(1), np.ones(2 * MiB // 8))
    big = max((Path(paths[0]) / "data").iterdir(), key=lambda p: p.stat().st_size)
    raw = bytearray(big.read_bytes())
    raw[-10] ^= 0xFF
    big.write_bytes(raw)
    report = s.verify()
    assert report["checked"] == 1 and [k for k, _ in report["bad"]] == [key(1).hex()]
    assert s.get(key(1)) is None


def test_max_bytes_enforced(paths: tuple[str, str]) -> None:
    s = bc.Store(paths[0], max_bytes=100_000, secret_path=paths[1])
    for i in range(300):
        s.put(key(i), GROUP, bytes([i % 256]) * 1000, [], [], [], [], 0.01 * (i % 7))
    st = s.stats()
    assert st["bytes"] <= 100_000 and st["max_bytes"] == 100_000
    assert 50 < st["entries"] < 100
    for e in s.entries():
        i = int.from_bytes(bytes.fromhex(e["key"]), "little")
        assert bytes(s.get(key(i))[0]) == bytes([i % 256]) * 1000


def test_writers_stay_exclusive_across_fork(paths: tuple[str, str]) -> None:
    # flock locks belong to the open file description, which fork() shares:
    # the child must take its own or both would "hold" the writer lock.
    out = run_py(
        """
        import os, sys
        from bytecache import _bytecache as bc
        s = bc.Store(sys.argv[1], secret_path=sys.argv[2])
        s.put(bytes(16), bytes(16), b"before fork", [], [], [], [], 0.0)
        base = 1 if os.fork() == 0 else 100_000
        for i in range(base, base + 3000):
            s.put(i.to_bytes(16, "little"), bytes(16), b"v%d" % i, [], [], [], [], 0.0)
        if base == 1:
            os._exit(0)
        os.wait()
        bad = [
            i
            for b in (1, 100_000)
            for i in range(b, b + 3000)
            if (g := s.get(i.to_bytes(16, "little"))) is None or bytes(g[0]) != b"v%d" % i
        ]
        print(len(bad), s.stats()["entries"])
        """,
        *paths,
    )
    assert out.split() == ["0", "6001"]


@pytest.mark.parametrize("timeout", [1e300, float("inf"), float("nan"), -5.0, 0.0])
def test_claim_with_any_timeout(paths: tuple[str, str], timeout: float) -> None:
    # Never a Rust panic (a PanicException, which `except Exception` misses).
    s = bc.Store(paths[0], secret_path=paths[1])
    with s.claim(key(1), timeout) as c:
        assert c.compute


def test_claims_across_fork_and_death(paths: tuple[str, str]) -> None:
    # A forked child shares its parent's descriptors: releasing its copy of
    # the parent's claim must not free it, and the child's own claim on the
    # same key must wait. A process that dies holding a claim frees it.
    out = run_py(
        """
        import os, sys
        from bytecache import _bytecache as bc
        s = bc.Store(sys.argv[1], secret_path=sys.argv[2])
        k = bytes(range(16))
        c = s.claim(k, 0.0)
        assert c.compute
        pid = os.fork()
        if pid == 0:
            c.release()
            other = s.claim(k, 0.0)
            os._exit(0 if other.state == "timeout" else 1)
        _, status = os.waitpid(pid, 0)
        print("child", os.waitstatus_to_exitcode(status))
        pid = os.fork()
        if pid == 0:
            os._exit(0 if s.claim(k, 0.0).state == "timeout" else 1)
        _, status = os.waitpid(pid, 0)
        print("still", os.waitstatus_to_exitcode(status))
        os._exit(0)  # dies holding the claim
        """,
        *paths,
    )
    assert out.split() == ["child", "0", "still", "0"]
    s = bc.Store(paths[0], secret_path=paths[1])
    with s.claim(bytes(range(16)), 0.0) as c:
        assert c.compute
