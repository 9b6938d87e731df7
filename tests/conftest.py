"""Helpers that run real interpreters in fresh processes."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest


class Runner:
    """Writes `main.py` (and helper modules) into a work dir and runs it with a
    private cache dir, HOME and a random hash seed, as a user re-running a script."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.work = root / "work"
        self.work.mkdir(parents=True)
        self.cache = root / "cache"
        self.home = root / "home"
        self.home.mkdir()

    def write(self, name: str, text: str) -> Path:
        path = self.work / name
        path.parent.mkdir(parents=True, exist_ok=True)
        old = path.read_text() if path.exists() else None
        new = textwrap.dedent(text)
        if old != new:
            path.write_text(new)
            # A later mtime, as an editor would leave it (pyc and linecache see it).
            st = path.stat()
            os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 2_000_000_000))
        return path

    def env(self, **extra: str) -> dict[str, str]:
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("BYTECACHE", "PYTHONHASHSEED", "XDG_"))
        }
        support = str(Path(__file__).parent / "support")
        env.update(
            BYTECACHE_DIR=str(self.cache),
            HOME=str(self.home),
            PYTHONDONTWRITEBYTECODE="1",
            PYTHONUNBUFFERED="1",
            PYTHONPATH=os.pathsep.join(filter(None, [support, env.get("PYTHONPATH")])),
        )
        env.update(extra)
        return env

    def run(self, script: str | None = None, *, check: bool = True, **env: str
            ) -> subprocess.CompletedProcess[str]:
        if script is not None:
            self.write("main.py", script)
        proc = subprocess.run(
            [sys.executable, "main.py"],
            cwd=self.work,
            env=self.env(**env),
            capture_output=True,
            text=True,
            timeout=120,
        )
        if check and proc.returncode != 0:
            raise AssertionError(f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
        return proc

    def out(self, script: str | None = None, **env: str) -> list[str]:
        return self.run(script, **env).stdout.split()


@pytest.fixture
def runner(tmp_path: Path) -> Runner:
    return Runner(tmp_path)


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Callable[[str], Path]]:
    """`tmpfs(size)`: a fresh tmpfs of that size ("512k", "4m") mounted for
    this test (needs root, as in CI; skips otherwise), unmounted after it."""
    mounted: list[Path] = []

    def mount(size: str) -> Path:
        mnt = tmp_path / f"tmpfs{len(mounted)}"
        mnt.mkdir()
        opts = f"size={size},mode=0700"
        if subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(mnt)],
                          capture_output=True).returncode != 0:
            pytest.skip("cannot mount a small tmpfs here (needs root, as in CI)")
        mounted.append(mnt)
        return mnt

    yield mount
    for mnt in mounted:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


class RedisServer:
    """A `redis-server` of this test's own on a free loopback port, with its
    data in the test's directory; stopped when the test ends."""

    def __init__(self, root: Path, **config: str) -> None:
        self.dir = root / "redis"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.config = {"save": "", "appendonly": "no", **config}
        self.port = _free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen[bytes] | None = None
        self._client: Any = None

    def start(self) -> RedisServer:
        import time

        args = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
                "--dir", str(self.dir), "--logfile", str(self.dir / "log")]
        for k, v in self.config.items():
            args += [f"--{k}", v]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                if self.client().ping():
                    return self
            except Exception:  # noqa: BLE001 - not up yet
                self._disconnect()
                time.sleep(0.02)
        raise AssertionError("redis-server did not start: " + (self.dir / "log").read_text())

    def client(self) -> Any:
        """The test's own connection (one, closed when the server stops)."""
        import redis

        if self._client is None:
            self._client = redis.Redis(port=self.port, socket_timeout=10)
        return self._client

    def _disconnect(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def kill(self) -> None:
        """SIGKILL: the server dies as a crashed machine's would."""
        self._disconnect()
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None

    def stop(self) -> None:
        self._disconnect()
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()
            self.proc = None


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def needs_redis_server() -> None:
    """Skips without `redis-server` and the `redis` package, except in CI,
    which installs both (ci/lib.sh): there their absence fails."""
    import importlib.util
    import shutil

    if shutil.which("redis-server") and importlib.util.find_spec("redis"):
        return
    if os.environ.get("CI"):
        pytest.fail("CI must have redis-server and the redis package (see ci/lib.sh)")
    pytest.skip("needs redis-server (apt-get install redis-server) and the redis package")


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[Callable[..., RedisServer]]:
    """`redis_server(**config)`: a started server (config as redis.conf
    directives: appendonly="yes", maxmemory="1mb", ...)."""
    needs_redis_server()
    servers: list[RedisServer] = []

    def start(**config: str) -> RedisServer:
        server = RedisServer(tmp_path / f"r{len(servers)}", **config)
        servers.append(server)
        return server.start()

    yield start
    for s in servers:
        s.stop()
