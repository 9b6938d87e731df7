"""Bad input never crashes and never returns a wrong result: the call runs
normally, and what was stored before is not lost."""

from __future__ import annotations

import os

import pytest

from conftest import Runner

SCRIPT = """
import bytecache

@bytecache.memoize
def f(x):
    ran()
    return [x, "value"]

@bytecache.memoize
def big(n):
    ran("big")
    return b"x" * n

print(f(1))
{extra}
"""


def _files(root) -> list:
    return [os.path.join(d, n) for d, _, names in os.walk(root) for n in names]


@pytest.mark.parametrize("damage", ["garbage", "truncate", "zero"])
def test_corrupt_store_files_mean_recompute(runner: Runner, damage: str) -> None:
    runner.run(SCRIPT.format(extra=""))
    files = [p for p in _files(runner.cache / "store") if "quarantine" not in p]
    assert files
    for p in files:
        size = os.path.getsize(p)
        with open(p, "r+b") as fh:
            if damage == "garbage":
                fh.write(os.urandom(max(size, 64)))
            elif damage == "truncate":
                fh.truncate(size // 2)
            else:
                fh.write(b"\0" * size)
    proc = runner.run(SCRIPT.format(extra=""))
    assert proc.stdout.split("\n")[-2] == "[1, 'value']"
    assert proc.stderr.count("BytecacheWarning") == 1, proc.stderr
    # Still working afterwards: the recomputed result is stored and served.
    assert runner.out(SCRIPT.format(extra="")) == ["[1,", "'value']"]


def test_foreign_file_in_place_of_the_index(runner: Runner) -> None:
    (runner.cache / "store").mkdir(parents=True, mode=0o700)
    os.chmod(runner.cache, 0o700)
    (runner.cache / "store" / "index").write_bytes(b"PK\x03\x04 not ours" * 100)
    proc = runner.run(SCRIPT.format(extra=""))
    assert proc.stdout.split() == ["RAN", "[1,", "'value']"]
    assert proc.stderr.count("BytecacheWarning") == 1 and "quarantine" in proc.stderr
    assert runner.out(SCRIPT.format(extra="")) == ["[1,", "'value']"]


@pytest.fixture
def tiny_fs(tmpfs):
    return tmpfs("512k")


def test_full_disk_runs_normally_and_keeps_what_was_stored(runner: Runner, tiny_fs) -> None:
    env = {"BYTECACHE_DIR": str(tiny_fs / "cache")}
    runner.run(SCRIPT.format(extra=""), **env)
    proc = runner.run(SCRIPT.format(extra="print(len(big(4_000_000)))"), **env)
    assert proc.stdout.split() == ["[1,", "'value']", "RAN", "big", "4000000"]
    assert proc.stderr.count("BytecacheWarning") == 1
    # The small entry stored before the disk filled up still hits.
    assert runner.out(SCRIPT.format(extra=""), **env) == ["[1,", "'value']"]
