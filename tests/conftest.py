"""Helpers that run real interpreters in fresh processes."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

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
