"""`python -m bytecache`: a listing that names functions, ids that `clear`
accepts, options anywhere, and read-only commands that create nothing."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from conftest import Runner

SCRIPT = """
import bytecache
import steps

@bytecache.memoize
def total(n):
    return sum(range(n))

class Model:
    def __reduce__(self):
        return (Model, ())

    @bytecache.memoize
    def fit(self, k):
        return [k] * k

print(total(10), total(20), total(10), steps.scale(3), Model().fit(2))
"""

STEPS = """
import bytecache

@bytecache.memoize
def scale(x):
    return x * 1.5
"""


def _cli(runner: Runner, *args: str, code: int = 0) -> str:
    proc = subprocess.run([sys.executable, "-m", "bytecache", *args], cwd=runner.work,
                          env=runner.env(), capture_output=True, text=True, timeout=60)
    assert proc.returncode == code, proc.stderr
    return proc.stdout + proc.stderr


def _filled(runner: Runner) -> Runner:
    runner.write("steps.py", STEPS)
    assert runner.out(SCRIPT) == ["45", "190", "45", "4.5", "[2,", "2]"]
    assert runner.out() == ["45", "190", "45", "4.5", "[2,", "2]"]  # one hit per entry
    return runner


def _rows(text: str) -> list[list[str]]:
    return [line.split() for line in text.strip().split("\n")]


def test_ls_names_functions_under_a_header(runner: Runner) -> None:
    rows = _rows(_cli(_filled(runner), "ls"))
    assert rows[0] == ["ID", "FUNCTION", "SIZE", "COMPUTE", "HITS", "AGE"]
    names = sorted(r[1] for r in rows[1:])
    assert names == ["__main__.Model.fit", "__main__.total", "__main__.total", "steps.scale"]
    assert [r[6] for r in rows[1:]] == ["1"] * 4  # hits
    records = [json.loads(line) for line in _cli(runner, "ls", "--json").split("\n") if line]
    assert sorted((r["function"], r["hits"]) for r in records) == [
        ("__main__.Model.fit", 1), ("__main__.total", 1), ("__main__.total", 1),
        ("steps.scale", 1)]


def test_listing_counts_no_hit(runner: Runner) -> None:
    _filled(runner)
    before = _cli(runner, "ls", "--json")
    _cli(runner, "ls")
    _cli(runner, "stats")
    assert _cli(runner, "ls", "--json") == before


def test_clear_takes_what_ls_shows(runner: Runner) -> None:
    _filled(runner)
    rows = _rows(_cli(runner, "ls"))[1:]
    fit_id = next(r[0] for r in rows if r[1] == "__main__.Model.fit")
    assert "removed 1 entries" in _cli(runner, "clear", fit_id)
    assert "removed 2 entries" in _cli(runner, "clear", "total")  # a qualname in __main__
    assert "removed 1 entries" in _cli(runner, "clear", "steps.scale")
    assert _rows(_cli(runner, "ls")) == [["ID", "FUNCTION", "SIZE", "COMPUTE", "HITS", "AGE"]]
    # Everything recomputes; what is left is served again.
    proc = runner.run()
    assert proc.stdout.split() == ["45", "190", "45", "4.5", "[2,", "2]"]


def test_clear_refuses_what_matches_nothing_or_several(runner: Runner) -> None:
    _filled(runner)
    assert "no stored function or entry matches 'nothing'" in _cli(runner, "clear", "nothing",
                                                                   code=2)
    assert "no stored" in _cli(runner, "clear", "total", "nothing", code=2)
    assert len(_rows(_cli(runner, "ls"))) == 5  # a typo removed nothing
    group = json.loads(_cli(runner, "ls", "--json", "steps.scale"))["group"]
    assert "removed 1 entries" in _cli(runner, "clear", "--group", group[:12])


def test_cache_dir_before_or_after_the_command(runner: Runner, tmp_path: Path) -> None:
    _filled(runner)
    elsewhere = str(runner.cache)
    env_less = {k: v for k, v in runner.env().items() if k != "BYTECACHE_DIR"}
    for args in (["--cache-dir", elsewhere, "stats"], ["stats", "--cache-dir", elsewhere]):
        proc = subprocess.run([sys.executable, "-m", "bytecache", *args], env=env_less,
                              capture_output=True, text=True, timeout=60)
        assert "entries:  4 (3 functions)" in proc.stdout, proc.stderr


def test_read_only_commands_create_nothing(runner: Runner, tmp_path: Path) -> None:
    missing = tmp_path / "missing"
    for cmd in ("stats", "ls", "verify", "gc", "clear"):
        out = _cli(runner, cmd, "--cache-dir", str(missing))
        assert not missing.exists(), cmd
        assert "Traceback" not in out
    assert "(does not exist)" in _cli(runner, "stats", "--cache-dir", str(missing))
