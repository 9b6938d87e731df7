"""The remote tier on a real `redis-server`: machines are fresh processes
with their own cache directory and home (so their own signing key), and
the code at another path."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import Runner

TASKS = """
import bytecache, numpy as np

@bytecache.memoize
def table(n):
    ran("table", n)
    print("table of", n)
    return np.arange(n, dtype=np.float64) * 2

@bytecache.memoize
def small(x):
    ran("small", x)
    return {"x": x, "square": x * x}
"""

MAIN = """
import json, os, bytecache
from tasks import table, small
t = table(int(os.environ.get("N", "1000")))
print("SUM", float(t.sum()), "SMALL", small(int(os.environ.get("X", "3")))["square"])
s = bytecache.stats()
print("STATS", json.dumps({k: s.get(k) for k in
      ("hits", "misses", "stored", "remote", "remote_hits", "remote_uploads")}))
"""


class Machine(Runner):
    """A user on another machine: own cache, home (signing key) and paths."""

    def __init__(self, root: Path, remote: str, tasks: str = TASKS) -> None:
        super().__init__(root)
        self.remote = remote
        self.write("tasks.py", tasks)
        self.write("main.py", MAIN)

    def env(self, **extra: str) -> dict[str, str]:
        return super().env(**{"BYTECACHE_REMOTE": self.remote, **extra})

    def go(self, **env: str) -> tuple[list[str], dict[str, object], str]:
        """(what ran, the stats, stderr) of one run of main.py."""
        proc = self.run(**env)
        ran = [" ".join(line.split()[1:]) for line in proc.stdout.splitlines()
               if line.startswith("RAN ")]
        stats = json.loads(next(line[6:] for line in proc.stdout.splitlines()
                                if line.startswith("STATS ")))
        assert "SUM" in proc.stdout
        return ran, stats, proc.stderr

    def key(self) -> str:
        proc = subprocess.run([sys.executable, "-m", "bytecache", "keygen"], env=self.env(),
                              capture_output=True, text=True, check=True)
        return proc.stdout.strip()


def entries(server: object, kind: str = "e") -> list[bytes]:
    return sorted(server.client().scan_iter(f"bytecache:*:{kind}:*"))  # type: ignore[attr-defined]


def test_another_machine_hits_what_the_first_computed(tmp_path: Path, redis_server) -> None:
    server = redis_server()
    a = Machine(tmp_path / "a", server.url)
    b = Machine(tmp_path / "b", server.url)
    b.home = a.home  # one user on two machines: the same key
    ran, stats, err = a.go()
    assert ran == ["table 1000", "small 3"] and stats["stored"] == 2
    assert a.work != b.work  # the code's path is not in the keys
    ran, stats, err = b.go()
    assert ran == [] and stats["misses"] == 0 and stats["hits"] == 2
    assert stats["remote_hits"] == 2 and stats["remote"] == server.url
    assert "BytecacheWarning" not in err
    # The hit replays what the call printed, and is now local.
    assert "table of 1000" in b.run().stdout
    ran, stats, _ = b.go()
    assert ran == [] and stats["hits"] == 2 and stats["remote_hits"] == 0
    html = b.run("import bytecache\nprint(bytecache.stats()._repr_html_())").stdout
    assert f"0 entries fetched from <code>{server.url}</code>, 0 uploaded" in html


def test_a_data_file_read_is_checked_on_the_machine_that_reads(
        tmp_path: Path, redis_server) -> None:
    server = redis_server()
    data = tmp_path / "shared" / "data.csv"  # a shared file system: one path
    data.parent.mkdir()
    data.write_text("1,2,3\n")
    tasks = TASKS + f"""
@bytecache.memoize
def total():
    ran("total")
    with open({str(data)!r}) as f:
        return sum(int(x) for x in f.read().split(","))
"""
    main = "from tasks import total\nprint('TOTAL', total())\n"
    a, b, c = (Machine(tmp_path / m, server.url, tasks) for m in "abc")
    b.home = c.home = a.home
    assert "RAN total" in a.run(main).stdout
    out = b.run(main).stdout
    assert "RAN" not in out and "TOTAL 6" in out
    data.write_text("1,2,4\n")
    out = c.run(main).stdout
    assert "RAN total" in out and "TOTAL 7" in out


def test_a_large_result_is_chunked_and_what_was_stored_is_uploaded(
        tmp_path: Path, redis_server) -> None:
    """40 MiB in chunks; the caller overwrites its result right after the
    call, and the other machine still gets what the call returned."""
    server = redis_server()
    a = Machine(tmp_path / "a", server.url)
    b = Machine(tmp_path / "b", server.url)
    b.home = a.home
    a.write("main.py", MAIN.replace('print("SUM"', 't[:] = -1\nprint("SUM"'))
    n = str(5 << 20)
    ran, _, _ = a.go(N=n)
    assert ran == [f"table {n}", "small 3"]
    assert len(entries(server, "c")) == 1  # the chunks of the large one
    out = b.run(N=n).stdout
    assert "RAN" not in out
    assert f"SUM {float(sum(range(5 << 20)) * 2)}" in out


def test_an_entry_signed_by_an_untrusted_key_is_not_used(tmp_path: Path, redis_server) -> None:
    server = redis_server()
    a = Machine(tmp_path / "a", server.url)
    b = Machine(tmp_path / "b", server.url)  # another user: another key
    a.go()
    ran, stats, err = b.go()
    assert ran == ["table 1000", "small 3"] and stats["remote_hits"] == 0
    assert err.count("a key you do not trust") == 1, err
    assert f"python -m bytecache trust {a.key()}" in err
    # Once b trusts a's key, a's entries are used.
    subprocess.run([sys.executable, "-m", "bytecache", "trust", a.key(), "alice"],
                   env=b.env(), check=True)
    a.go(X="4")
    b2 = Machine(tmp_path / "b2", server.url)
    b2.home = b.home
    ran, stats, err = b2.go(X="4")
    assert ran == [] and stats["remote_hits"] == 2, err


def test_keys_given_in_the_environment_are_trusted(tmp_path: Path, redis_server) -> None:
    server = redis_server()
    a = Machine(tmp_path / "a", server.url)
    b = Machine(tmp_path / "b", server.url)
    a.go()
    ran, stats, err = b.go(BYTECACHE_TRUSTED_KEYS=f"{b.key()}, {a.key()}")
    assert ran == [] and stats["remote_hits"] == 2, err


def test_tampered_or_unsigned_entries_are_misses_with_one_warning(
        tmp_path: Path, redis_server) -> None:
    server = redis_server()
    a = Machine(tmp_path / "a", server.url)
    a.go(N=str(1 << 20))
    r = server.client()
    small, large = sorted(entries(server), key=lambda k: len(r.hget(k, "m")))
    # A byte of the small entry's signed content, a byte of a chunk of the
    # large one: both are still signed by a trusted key (a's own).
    manifest = bytearray(r.hget(small, "m"))
    manifest[-1] ^= 1
    r.hset(small, "m", bytes(manifest))
    (chunks,) = entries(server, "c")
    chunk = bytearray(r.hget(chunks, "0"))
    chunk[100] ^= 1
    r.hset(chunks, "0", bytes(chunk))
    b = Machine(tmp_path / "b", server.url)
    b.home = a.home
    ran, stats, err = b.go(N=str(1 << 20))
    assert ran == [f"table {1 << 20}", "small 3"] and stats["remote_hits"] == 0
    assert err.count("signature does not match its content") == 1, err
    assert err.count("does not match its signed digest") == 1, err
    # Garbage where an entry should be: a miss, one warning.
    for k in entries(server):
        r.hset(k, "m", b"not an entry")
    c = Machine(tmp_path / "c", server.url)
    c.home = a.home
    ran, _, err = c.go(N=str(1 << 20))
    assert len(ran) == 2 and err.count("not a signed bytecache entry") == 1, err


def _upload_in_flight(server, proc: subprocess.Popen[str]) -> None:
    """Waits until an upload's first chunks are on the server (the manifest,
    written last, not yet)."""
    r = server.client()
    deadline = time.monotonic() + 60
    while not entries(server, "c"):
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.001)
    assert not [k for k in entries(server) if r.hexists(k, "u") and r.hget(k, "u")]


@pytest.mark.parametrize("killed", ["server", "client", "chunks"])
def test_killed_mid_upload_leaves_nothing_partial(tmp_path: Path, redis_server,
                                                 killed: str) -> None:
    """The server or the uploading process killed mid-upload, or the chunks
    sent so far evicted: no manifest names a partial upload."""
    server = redis_server(appendonly="yes", appendfsync="always")
    a = Machine(tmp_path / "a", server.url)
    n = str(8 << 20)  # 64 MiB: 16 chunks
    proc = subprocess.Popen([sys.executable, "main.py"], cwd=a.work, env=a.env(N=n),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _upload_in_flight(server, proc)
    if killed == "server":
        server.kill()
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0 and f"SUM {float(sum(range(8 << 20)) * 2)}" in out
        assert "is unavailable" in err
        server.start()  # from its append-only file: the chunks written so far
    elif killed == "client":
        proc.send_signal(signal.SIGKILL)
        proc.communicate()
    else:
        (partial,) = entries(server, "c")
        server.client().delete(partial)
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0 and "chunks expired before it was published" in err, err
        assert server.client().pttl(partial) > 0  # the rest was sent, and expires
    assert entries(server, "c") and not [k for k in entries(server)
                                         if server.client().hget(k, "u")]
    # a's compute locks outlive it until they expire (30 s): let them
    # expire in a second; b waits for that, then computes.
    for lock in entries(server, "l"):
        assert server.client().pexpire(lock, 1000)
    b = Machine(tmp_path / "b", server.url)
    b.home = a.home
    ran, stats, _ = b.go(N=n)
    assert ran[0] == f"table {n}" and stats["remote_hits"] <= 1  # the small one, at most
    # b's upload completes, and replaces nothing: the partial one expires.
    assert [k for k in entries(server) if server.client().hget(k, "u")]


def _blackhole() -> socket.socket:
    """A loopback port that accepts connections and never answers."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(16)
    return s


@pytest.mark.parametrize("remote", ["refused", "silent"])
def test_a_remote_that_is_down_changes_nothing_locally(tmp_path: Path, remote: str) -> None:
    hole = _blackhole()
    port = hole.getsockname()[1]
    if remote == "refused":
        hole.close()
    try:
        local = Machine(tmp_path / "local", "")
        down = Machine(tmp_path / "down", f"redis://127.0.0.1:{port}/0")
        expected = local.go()
        ran, stats, err = down.go()
        assert ran == expected[0] and stats["hits"] == 0 and stats["stored"] == 2
        assert err.count("BytecacheWarning") == 1 and "is unavailable" in err, err
        ran, stats, _ = down.go()  # stored locally: local hits
        assert ran == [] and stats["hits"] == 2
    finally:
        hole.close()


def test_a_full_remote_refuses_the_upload_and_nothing_is_lost(
        tmp_path: Path, redis_server) -> None:
    server = redis_server(maxmemory="2mb", **{"maxmemory-policy": "noeviction"})
    a = Machine(tmp_path / "a", server.url)
    n = str(2 << 20)  # 16 MiB
    ran, stats, err = a.go(N=n)
    assert stats["stored"] == 2 and "refused a write" in err and err.count("Warning") == 1
    assert not [k for k in entries(server) if server.client().hget(k, "u")]
    ran, stats, _ = a.go(N=n)
    assert ran == [] and stats["hits"] == 2


def test_two_machines_missing_together_compute_once(tmp_path: Path, redis_server) -> None:
    server = redis_server()
    slow = TASKS.replace('ran("table", n)', 'ran("table", n); __import__("time").sleep(2)')
    machines = [Machine(tmp_path / m, server.url, slow) for m in "ab"]
    machines[1].home = machines[0].home
    procs = [subprocess.Popen([sys.executable, "main.py"], cwd=m.work, env=m.env(),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for m in machines]
    outs = [p.communicate(timeout=120)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs)
    assert sum(o.count("RAN table") for o in outs) == 1, outs
    waited = next(o for o in outs if "RAN table" not in o)
    stats = json.loads(waited.split("STATS ", 1)[1])
    assert stats["remote_hits"] >= 1 and stats["hits"] >= 1


def test_a_lock_without_an_expiry_is_not_waited_for(tmp_path: Path, redis_server) -> None:
    """A lock bytecache did not take (no expiry: restored from a dump, set
    by hand) would make every machine wait for the whole claim timeout."""
    server = redis_server()
    a = Machine(tmp_path / "a", server.url)
    a.go()
    r = server.client()
    locks = [k.replace(b":e:", b":l:") for k in entries(server)]
    r.flushall()
    for lock in locks:
        r.set(lock, b"stray")
    b = Machine(tmp_path / "b", server.url)
    proc = subprocess.run([sys.executable, "main.py"], cwd=b.work, env=b.env(),
                          capture_output=True, text=True, timeout=60)
    assert proc.stdout.count("RAN") == 2, proc.stdout + proc.stderr


def test_without_the_redis_package_results_are_stored_locally(tmp_path: Path) -> None:
    m = Machine(tmp_path / "m", "redis://127.0.0.1:1/0")
    m.write("main.py", "import sys\nsys.modules['redis'] = None\n" + MAIN)
    ran, stats, err = m.go()
    assert len(ran) == 2 and stats["stored"] == 2
    assert "needs the `redis` package" in err and err.count("Warning") == 1


def test_cli_keys_stats_and_clear(tmp_path: Path, redis_server) -> None:
    server = redis_server()
    a = Machine(tmp_path / "a", server.url)
    b = Machine(tmp_path / "b", server.url)

    def cli(m: Machine, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "bytecache", *args], env=m.env(),
                              capture_output=True, text=True, check=check)

    key = a.key()
    assert key.startswith("ed25519:") and a.key() == key != b.key()
    assert "signing key is" in cli(a, "keygen").stderr
    assert str(a.home) in cli(a, "keygen").stderr  # outside the cache directory
    cli(b, "trust", key, "alice")
    listed = cli(b, "trust").stdout.splitlines()
    assert listed == [f"{b.key()}  (yours)", f"{key}  alice"]
    assert cli(b, "trust", "ed25519:nope", check=False).returncode == 2
    assert cli(b, "untrust", key).returncode == 0
    assert cli(b, "trust").stdout.splitlines() == [f"{b.key()}  (yours)"]
    assert cli(b, "untrust", key, check=False).returncode == 2
    a.go()
    out = cli(b, "stats").stdout
    assert f"remote:   {server.url}" in out and "2 entries" in out
    b.go(BYTECACHE_TRUSTED_KEYS=key)
    assert "2 remote hits (all machines)" in cli(b, "stats").stdout
    out = cli(a, "clear", "small").stdout
    assert "removed 1 entries\nremoved 1 entries from the remote cache" in out
    assert len(entries(server)) == 1
    assert "removed 1 entries from the remote cache" in cli(a, "clear").stdout
    assert entries(server) == []


@pytest.mark.parametrize(("env", "says"), [
    ({"BYTECACHE_REMOTE": "http://cache:80/"}, "ignores BYTECACHE_REMOTE must be a Redis URL"),
    ({"BYTECACHE_TRUSTED_KEYS": "ed25519:nope"}, "BYTECACHE_TRUSTED_KEYS: 'ed25519:nope' is not"),
])
def test_a_bad_setting_in_the_environment_means_local_only(
        tmp_path: Path, redis_server, env: dict[str, str], says: str) -> None:
    server = redis_server()
    m = Machine(tmp_path / "m", server.url)
    ran, stats, err = m.go(**env)
    assert len(ran) == 2 and stats["stored"] == 2 and not stats["remote_uploads"]
    assert says in err and err.count("Warning") == 1, err
    assert entries(server) == []


def test_a_password_never_shows(tmp_path: Path) -> None:
    m = Machine(tmp_path / "m", "redis://:s3cret@127.0.0.1:1/0")
    ran, stats, err = m.go()
    assert "s3cret" not in err + json.dumps(stats) and stats["remote"] == \
        "redis://***@127.0.0.1:1/0"


def test_the_signing_key_is_never_inside_the_cache_dir(tmp_path: Path, redis_server) -> None:
    server = redis_server()
    m = Machine(tmp_path / "m", server.url)
    m.go(XDG_CONFIG_HOME=str(m.cache / "config"))
    assert not list(m.cache.rglob("signing-key"))
    assert (m.home / ".config" / "bytecache" / "signing-key").stat().st_mode & 0o077 == 0
    assert os.stat(m.home / ".config" / "bytecache").st_mode & 0o077 == 0
